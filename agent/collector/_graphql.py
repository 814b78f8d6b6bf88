"""GraphQL execution of the collector: request decoding, parsed-document cache, fast paths.

``GraphQLService.handle(body, ...)`` is blocking and runs in a worker thread. Documents are
parsed and validated once and kept in a size-bounded LRU keyed by their text. A document with
the shape of the SDK's ``send_steps`` (``AddStep``: N aliased ``ingestStep`` fields fed only by
variables) or ``create_scores`` (``CreateScores``) gets a *plan*; requests with a plan are
resolved straight from the variables and written in one transaction. Whenever a variable does
not have the exact shape the plan expects, the request falls back to graphql-core execution,
which produces the standard error messages; per-step validation is shared with the resolver
(:mod:`agent.collector._ingest`), so both paths answer the same.
"""

from __future__ import annotations

import math
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
    GraphQLError,
    GraphQLInputType,
    GraphQLSchema,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    build_schema,
    coerce_input_value,
    execute,
    parse,
    type_from_ast,
    validate,
    value_from_ast_untyped,
)
from graphql.language import ValueNode

from agent.collector._ingest import ingest_batch
from agent.collector._resolvers import RequestContext, bind
from agent.collector._schema import SDL
from agent.collector._storage import Record, Storage, Write
from agent.collector._timefmt import now_iso

log = structlog.get_logger(__name__)

#: Total size (characters of document text) kept in the parsed-document cache.
DEFAULT_CACHE_CHARS = 64 * 1024 * 1024
#: Most documents kept in the cache.
MAX_CACHED_DOCUMENTS = 512
_EMPTY_DOCUMENT = re.compile(r"^\s*mutation\s+\w*\s*(\(\s*\))?\s*\{\s*\}\s*$")

_ABSENT: Any = object()
_FALLBACK: Any = object()


class _Request(msgspec.Struct):
    query: str
    variables: dict[str, Any] | None = None
    operationName: str | None = None


_request_decoder = msgspec.json.Decoder(_Request)
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


# -- fast-path plans -------------------------------------------------------------------

# A checker returns the coerced value, _ABSENT (argument omitted) or _FALLBACK.
Checker = Callable[[Any], Any]


def _check_str(value: Any) -> Any:
    return value if isinstance(value, str) else _FALLBACK


def _check_any(value: Any) -> Any:
    return value


def _check_str_list(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return _FALLBACK


def _check_float(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _FALLBACK
    result = float(value)
    return result if math.isfinite(result) else _FALLBACK


def _check_score_type(value: Any) -> Any:
    return value if value in ("HUMAN", "CODE", "AI") else _FALLBACK


def _input_checker(type_: GraphQLInputType) -> Checker:
    def check(value: Any) -> Any:
        if isinstance(value, list) and not value:
            return value
        try:
            return coerce_input_value(value, type_)
        except GraphQLError:
            return _FALLBACK

    return check


@dataclass(slots=True)
class _Field:
    key: str  # response key (alias)
    args: list[tuple[str, str, Checker]]  # (argument, variable, checker)
    selected: list[str]


@dataclass(slots=True)
class Plan:
    """A recognised batch document: its root fields, each fed only by variables."""

    root: str  # "ingestStep" or "createScore"
    fields: list[_Field]
    required: frozenset[str]  # variables declared non-null


@dataclass(slots=True)
class Prepared:
    """A parsed and validated document (or its errors), with its fast-path plan if any."""

    document: DocumentNode | None
    errors: list[GraphQLError] = field(default_factory=list)
    plan: Plan | None = None
    size: int = 0


_SCORE_FIELDS = frozenset(
    {
        "id",
        "name",
        "type",
        "value",
        "label",
        "comment",
        "scorer",
        "tags",
        "stepId",
        "datasetExperimentItemId",
        "createdAt",
        "updatedAt",
    }
)


def _make_plan(schema: GraphQLSchema, document: DocumentNode) -> Plan | None:
    if len(document.definitions) != 1:
        return None
    op = document.definitions[0]
    if not isinstance(op, OperationDefinitionNode) or op.operation != OperationType.MUTATION:
        return None
    if op.directives:
        return None
    var_types: dict[str, GraphQLInputType] = {}
    required: set[str] = set()
    for definition in op.variable_definitions or ():
        if definition.default_value is not None or definition.directives:
            return None
        name = definition.variable.name.value
        var_type = type_from_ast(schema, definition.type)
        if var_type is None:
            return None
        var_types[name] = var_type  # type: ignore[assignment]
        if isinstance(definition.type, NonNullTypeNode):
            required.add(name)
    root_name: str | None = None
    fields: list[_Field] = []
    mutation = schema.mutation_type
    assert mutation is not None
    for selection in op.selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return None
        name = selection.name.value
        if name not in ("ingestStep", "createScore") or (root_name and name != root_name):
            return None
        root_name = name
        arg_defs = mutation.fields[name].args
        args: list[tuple[str, str, Checker]] = []
        for arg in selection.arguments or ():
            if not isinstance(arg.value, VariableNode):
                return None
            var_name = arg.value.name.value
            checker = _checker_for(name, arg.name.value, arg_defs[arg.name.value].type)
            args.append((arg.name.value, var_name, checker))
        selected: list[str] = []
        allowed = {"ok", "message"} if name == "ingestStep" else _SCORE_FIELDS
        for sub in selection.selection_set.selections if selection.selection_set else ():
            if (
                not isinstance(sub, FieldNode)
                or sub.alias
                or sub.arguments
                or sub.directives
                or sub.selection_set
                or sub.name.value not in allowed
            ):
                return None
            selected.append(sub.name.value)
        key = selection.alias.value if selection.alias else name
        fields.append(_Field(key, args, selected))
    if root_name is None:
        return None
    return Plan(root_name, fields, frozenset(required))


def _checker_for(root: str, arg: str, type_: Any) -> Checker:
    named = type_.of_type if hasattr(type_, "of_type") else type_
    if arg in ("input", "output", "metadata"):
        return _check_any
    if arg == "tags":
        return _check_str_list
    if root == "createScore":
        if arg == "value":
            return _check_float
        if arg == "type":
            return _check_score_type
        return _check_str
    if arg in ("generation", "scores", "attachments"):
        return _input_checker(type_)
    if getattr(named, "name", "") in ("String", "DateTime", "StepType"):
        return _check_str
    return _input_checker(type_)


# -- the service -------------------------------------------------------------------------


class _DocumentCache:
    """LRU of :class:`Prepared` documents, bounded by count and by total text size."""

    def __init__(self, max_chars: int, max_items: int = MAX_CACHED_DOCUMENTS) -> None:
        self._items: OrderedDict[str, Prepared] = OrderedDict()
        self._chars = 0
        self._max_chars = max_chars
        self._max_items = max_items
        self._lock = threading.Lock()

    def get(self, text: str) -> Prepared | None:
        with self._lock:
            prepared = self._items.get(text)
            if prepared is not None:
                self._items.move_to_end(text)
            return prepared

    def put(self, text: str, prepared: Prepared) -> None:
        if prepared.size > self._max_chars // 4:
            return
        with self._lock:
            if text in self._items:
                return
            self._items[text] = prepared
            self._chars += prepared.size
            while self._chars > self._max_chars or len(self._items) > self._max_items:
                _, old = self._items.popitem(last=False)
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
        """Parse, validate and plan ``text`` (cached)."""
        prepared = self._cache.get(text)
        if prepared is not None:
            return prepared
        try:
            document = parse(text, no_location=False, max_tokens=2_000_000)
        except GraphQLError as exc:
            prepared = Prepared(None, [exc], size=len(text))
        else:
            errors = validate(self.schema, document)
            plan = None if errors else _make_plan(self.schema, document)
            prepared = Prepared(document, list(errors), plan, size=len(text))
        self._cache.put(text, prepared)
        return prepared

    def handle(self, body: bytes, ctx: RequestContext) -> bytes:
        """Answer one HTTP body; raises :class:`BadRequestError` for a non-GraphQL body."""
        try:
            request = _request_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequestError(f"Malformed GraphQL request body: {exc}") from None
        return _encoder.encode(
            self.run(request.query, request.variables or {}, ctx, request.operationName)
        )

    def run(
        self,
        query: str,
        variables: dict[str, Any],
        ctx: RequestContext,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """Execute one document; returns the GraphQL response object."""
        if _EMPTY_DOCUMENT.match(query):
            return {"data": {}}
        prepared = self.prepare(query)
        if prepared.errors or prepared.document is None:
            return {"errors": [e.formatted for e in prepared.errors]}
        if prepared.plan is not None and self.fast_paths:
            fast = self._run_plan(prepared.plan, variables, ctx)
            if fast is not None:
                return fast
        result = execute(
            self.schema,
            prepared.document,
            context_value=ctx,
            variable_values=variables,
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

    # -- fast paths ----------------------------------------------------------------------

    def _arguments(self, plan: Plan, variables: dict[str, Any]) -> list[dict[str, Any]] | None:
        for name in plan.required:
            if variables.get(name) is None:
                return None
        rows: list[dict[str, Any]] = []
        get = variables.get
        for fld in plan.fields:
            args: dict[str, Any] = {}
            for arg, var, check in fld.args:
                value = get(var, _ABSENT)
                if value is _ABSENT:
                    continue
                if value is not None:
                    value = check(value)
                    if value is _FALLBACK:
                        return None
                args[arg] = value
            rows.append(args)
        return rows

    def _run_plan(
        self, plan: Plan, variables: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any] | None:
        rows = self._arguments(plan, variables)
        if rows is None:
            return None
        if plan.root == "ingestStep":
            return self._ingest(plan, rows, ctx)
        return self._scores(plan, rows, ctx)

    def _ingest(
        self, plan: Plan, rows: list[dict[str, Any]], ctx: RequestContext
    ) -> dict[str, Any]:
        batch = ingest_batch(rows, ctx.environment)
        ctx.storage.write(batch.writes())
        data: dict[str, Any] = {}
        for fld, error in zip(plan.fields, batch.errors, strict=True):
            result = {"ok": error is None, "message": error}
            data[fld.key] = {k: result[k] for k in fld.selected}
        return {"data": data}

    def _scores(
        self, plan: Plan, rows: list[dict[str, Any]], ctx: RequestContext
    ) -> dict[str, Any]:
        import uuid

        now = now_iso()
        records: list[Record] = [
            {**args, "id": str(uuid.uuid4()), "createdAt": now, "updatedAt": now} for args in rows
        ]
        ctx.storage.write([Write("score", records)])
        data: dict[str, Any] = {}
        for fld, record in zip(plan.fields, records, strict=True):
            data[fld.key] = {k: record.get(k) for k in fld.selected}
        return {"data": data}
