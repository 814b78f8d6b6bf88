"""GraphQL execution of the collector: request decoding, parsed-document cache, fast paths.

``GraphQLService.handle(body, ...)`` is blocking and runs in a worker thread. Documents are
parsed and validated once and kept in a size-bounded LRU of their (JSON-encoded) text, so a
hit costs a short key's hash and one comparison of the text. Variables are decoded lazily: a
document with a fast-path plan (:mod:`agent.collector._fastpath`, the SDK's ``send_steps`` /
``create_scores``) reads them raw; every other document gets them decoded and goes through
graphql-core.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute,
    parse,
    validate,
    value_from_ast_untyped,
)
from graphql.language import ValueNode

from agent.collector._fastpath import (
    Plan,
    RawVariables,
    Submit,
    decode_variables,
    defer_batch,
    make_plan,
    run_plan,
)
from agent.collector._resolvers import RequestContext, bind
from agent.collector._schema import SDL
from agent.collector._storage import Storage

log = structlog.get_logger(__name__)

#: Total size (characters of document text) kept in the parsed-document cache.
DEFAULT_CACHE_CHARS = 64 * 1024 * 1024
#: Deepest selection nesting accepted (the SDK's deepest document has 7 levels).
MAX_QUERY_DEPTH = 12
#: Most documents kept in the cache.
MAX_CACHED_DOCUMENTS = 512
_EMPTY_DOCUMENT = re.compile(r"^\s*mutation\s+\w*\s*(\(\s*\))?\s*\{\s*\}\s*$")


class _Request(msgspec.Struct):
    """The HTTP body; the query and the variable values stay undecoded JSON until needed."""

    query: msgspec.Raw
    variables: dict[str, msgspec.Raw] | None = None
    operationName: str | None = None


_request_decoder = msgspec.json.Decoder(_Request)


class _Batch(msgspec.Struct):
    """The HTTP body with the variables left as one undecoded JSON value (see
    :func:`defer_batch`)."""

    query: msgspec.Raw
    variables: msgspec.Raw = msgspec.Raw(b"null")
    operationName: str | None = None


_batch_decoder = msgspec.json.Decoder(_Batch)
_query_decoder = msgspec.json.Decoder(str)
_encoder = msgspec.json.Encoder()


class BadRequestError(Exception):
    """The HTTP body is not a GraphQL request (answered with status 400)."""


# -- schema ----------------------------------------------------------------------------


def _parse_string(name: str) -> Callable[[Any], str]:
    def parse_value(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{name} cannot represent a non-string value: {value!r}")
        return value

    return parse_value


def _parse_string_literal(name: str) -> Callable[..., str]:
    def parse_literal(node: ValueNode, _variables: Any = None) -> str:
        value = value_from_ast_untyped(node, _variables)
        if not isinstance(value, str):
            raise TypeError(f"{name} cannot represent a non-string value")
        return value

    return parse_literal


def build_collector_schema() -> GraphQLSchema:
    """The executable schema: SDL, custom scalars and resolvers."""
    schema = build_schema(SDL)
    json_type = schema.get_type("Json")
    json_type.serialize = lambda v: v  # type: ignore[union-attr]
    json_type.parse_value = lambda v: v  # type: ignore[union-attr]
    json_type.parse_literal = value_from_ast_untyped  # type: ignore[union-attr]
    for name in ("DateTime", "StepType"):
        scalar = schema.get_type(name)
        scalar.serialize = lambda v: v  # type: ignore[union-attr]
        scalar.parse_value = _parse_string(name)  # type: ignore[union-attr]
        scalar.parse_literal = _parse_string_literal(name)  # type: ignore[union-attr]
    bind(schema)
    return schema


def _depth(selection_set: SelectionSetNode | None, fragments: dict[str, Any], seen: int) -> int:
    if selection_set is None or seen > MAX_QUERY_DEPTH:
        return 0
    deepest = 0
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            deepest = max(deepest, 1 + _depth(node.selection_set, fragments, seen + 1))
        elif isinstance(node, InlineFragmentNode):
            deepest = max(deepest, _depth(node.selection_set, fragments, seen))
        elif isinstance(node, FragmentSpreadNode) and node.name.value in fragments:
            fragment = fragments.pop(node.name.value)  # each fragment expanded once
            deepest = max(deepest, _depth(fragment.selection_set, fragments, seen))
    return deepest


def _depth_errors(document: DocumentNode) -> list[GraphQLError]:
    """Reject selections nested deeper than :data:`MAX_QUERY_DEPTH` (each level costs queries)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    for definition in document.definitions:
        if (
            isinstance(definition, OperationDefinitionNode)
            and _depth(definition.selection_set, dict(fragments), 0) > MAX_QUERY_DEPTH
        ):
            return [GraphQLError(f"Query is nested deeper than {MAX_QUERY_DEPTH} levels")]
    return []


@dataclass(slots=True)
class Prepared:
    """A parsed and validated document (or its errors), with its fast-path plan if any."""

    document: DocumentNode | None
    errors: list[GraphQLError] = field(default_factory=list)
    plan: Plan | None = None
    size: int = 0
    empty: bool = False  # ``mutation CreateScores() { }``: answered {"data": {}}


# -- the service -------------------------------------------------------------------------


def _short_key(text: bytes) -> bytes:
    """A cheap dictionary key for a document text: its length and three slices of it
    (hashing the whole text of an ``AddStep`` batch, ~1 KB per step, would cost more)."""
    size = len(text)
    if size <= 1024:
        return text
    middle = size // 2
    return b"%d:" % size + text[:256] + text[middle - 128 : middle + 128] + text[-256:]


class _DocumentCache:
    """LRU of :class:`Prepared` documents, bounded by count and by total text size.

    Entries are found by :func:`_short_key` and told apart by a full comparison of the text
    (``memcmp``, much cheaper than hashing it)."""

    def __init__(self, max_chars: int, max_items: int = MAX_CACHED_DOCUMENTS) -> None:
        self._items: OrderedDict[bytes, list[tuple[bytes, Prepared]]] = OrderedDict()
        self._count = 0
        self._chars = 0
        self._max_chars = max_chars
        self._max_items = max_items
        self._lock = threading.Lock()

    def get(self, text: bytes) -> Prepared | None:
        short = _short_key(text)
        with self._lock:
            bucket = self._items.get(short)
            if bucket is None:
                return None
            for known, prepared in bucket:
                if known == text:
                    self._items.move_to_end(short)
                    return prepared
            return None

    def put(self, text: bytes, prepared: Prepared) -> None:
        if prepared.size > self._max_chars // 4:
            return
        short = _short_key(text)
        with self._lock:
            bucket = self._items.setdefault(short, [])
            if any(known == text for known, _ in bucket):
                return
            bucket.append((text, prepared))
            self._count += 1
            self._chars += prepared.size
            while self._chars > self._max_chars or self._count > self._max_items:
                oldest_key, oldest = next(iter(self._items.items()))
                _, old = oldest.pop(0)  # the least recently used key's oldest text
                if not oldest:
                    del self._items[oldest_key]
                self._count -= 1
                self._chars -= old.size


class GraphQLService:
    """Answers GraphQL requests against one storage (thread-safe, blocking)."""

    def __init__(
        self, storage: Storage, *, cache_chars: int = DEFAULT_CACHE_CHARS, fast_paths: bool = True
    ) -> None:
        self.storage = storage
        self.fast_paths = fast_paths
        self.schema = build_collector_schema()
        self._cache = _DocumentCache(cache_chars)

    def prepare(self, text: str) -> Prepared:
        """Parse, validate and plan ``text`` (cached by its JSON encoding)."""
        return self._prepare(_encoder.encode(text), text)

    def _prepare(self, key: bytes, text: str | None = None) -> Prepared:
        prepared = self._cache.get(key)
        if prepared is not None:
            return prepared
        if text is None:
            try:
                text = _query_decoder.decode(key)
            except msgspec.DecodeError:
                message = "Malformed GraphQL request body: query must be a string"
                raise BadRequestError(message) from None
        if _EMPTY_DOCUMENT.match(text):
            prepared = Prepared(None, empty=True, size=len(key))
            self._cache.put(key, prepared)
            return prepared
        try:
            document = parse(text, no_location=False, max_tokens=2_000_000)
        except GraphQLError as exc:
            prepared = Prepared(None, [exc], size=len(key))
        else:
            errors = list(validate(self.schema, document)) or _depth_errors(document)
            plan = None if errors else make_plan(self.schema, document)
            prepared = Prepared(document, errors, plan, size=len(key))
        self._cache.put(key, prepared)
        return prepared

    def handle(self, body: bytes, ctx: RequestContext) -> bytes:
        """Answer one HTTP body; raises :class:`BadRequestError` for a non-GraphQL body."""
        try:
            request = _request_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequestError(f"Malformed GraphQL request body: {exc}") from None
        prepared = self._prepare(bytes(request.query))
        return _encoder.encode(
            self._execute(prepared, request.variables or {}, ctx, request.operationName)
        )

    def handle_deferred(self, body: bytes, ctx: RequestContext) -> tuple[bytes, Submit] | None:
        """For the event loop, which must not block: the answer to a ``send_steps`` batch
        whose document is already prepared and whose steps all pass, with the function that
        queues its write (answer only once that write is committed). ``None``: answer with
        :meth:`handle` on a thread (any other request, a document seen for the first time, a
        step that fails a check, a storage that cannot queue writes).
        """
        if not self.fast_paths or not hasattr(ctx.storage, "submit_columns"):
            return None  # checked first: decoding the body here would be wasted
        try:
            request = _batch_decoder.decode(body)
        except msgspec.DecodeError:
            return None  # handle() produces the message
        prepared = self._cache.get(bytes(request.query))
        if prepared is None or prepared.plan is None:
            return None
        deferred = defer_batch(prepared.plan, request.variables, ctx)
        if deferred is None:
            return None
        answer, submit = deferred
        return _encoder.encode(answer), submit

    def run(
        self,
        query: str,
        variables: dict[str, Any],
        ctx: RequestContext,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """Execute one document with decoded variables; returns the GraphQL response object."""
        raw = {name: msgspec.Raw(_encoder.encode(value)) for name, value in variables.items()}
        return self._execute(self.prepare(query), raw, ctx, operation_name)

    def _execute(
        self,
        prepared: Prepared,
        raw_variables: RawVariables,
        ctx: RequestContext,
        operation_name: str | None,
    ) -> dict[str, Any]:
        if prepared.empty:
            return {"data": {}}
        if prepared.errors or prepared.document is None:
            return {"errors": [e.formatted for e in prepared.errors]}
        if prepared.plan is not None and self.fast_paths:
            fast = run_plan(prepared.plan, raw_variables, ctx)
            if fast is not None:
                return fast
        result = execute(
            self.schema,
            prepared.document,
            context_value=ctx,
            variable_values=decode_variables(raw_variables),
            operation_name=operation_name,
        )
        if not isinstance(result, ExecutionResult):  # pragma: no cover - resolvers are sync
            raise TypeError("asynchronous GraphQL result")
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        if result.data is not None or not result.errors:
            out["data"] = result.data
        return out
