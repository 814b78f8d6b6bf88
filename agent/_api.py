"""LiteralAPI and AsyncLiteralAPI: thin I/O over the operations of ``agent._operations``.

``_BaseLiteralAPI`` holds the shared policy: configuration (arguments, then
``LITERAL_API_KEY`` / ``LITERAL_API_URL``), headers, request encoding (msgspec JSON; values
JSON cannot carry become strings) and the mapping of answers to results or typed errors
(``agent._exceptions``). Each twin owns one pooled httpx client (keep-alive), one
``_execute`` for single operations and one ``_run`` driving multi-request flows; every
public method is one line. Both twins expose the same methods with the same signatures as
the reference SDK's ``LiteralAPI`` (``literalai`` 0.1.300).

Deliberate differences from the reference, all in the direction of fewer surprises:

* ``create_scores`` returns ``Score`` objects in both twins (the sync reference returns
  raw dicts; ``Score`` also answers ``score["id"]``-style lookups).
* ``Dataset`` / ``DatasetExperiment`` helpers go through the API object that returned them.
  With ``AsyncLiteralAPI`` they return coroutines (``await dataset.create_item(...)``); the
  async reference hands them a blocking sync client instead.
* ``environment`` is kept per API object (sent as ``x-env``); the reference writes it into
  the process-wide ``LITERAL_ENV``. Without it, ``LITERAL_ENV`` is read at each request.
* Bad input (``get_user()`` without id/identifier, NaN scores, unknown step types...) raises
  ``ValueError``/``TypeError`` before any request; failures raise ``LiteralError``
  subclasses whose messages never contain the API key.
* ``create_experiment_item`` sends no ``CreateScores`` request when there are no scores,
  and checks score values in both twins.
* ``get_dataset_item`` returns None for an unknown id (the reference crashes); a ``null``
  prompt from ``get_prompt`` raises ``LiteralError`` ("Prompt not found", before the cache
  fallback) instead of ``AttributeError``; answers of the wrong shape raise ``LiteralError``.
* ``upload_file`` sends ``threadId`` only when given, in both twins (the async reference
  always sends it, possibly ``null``).
* ``make_gql_call`` / ``gql_helper``: ``timeout=None`` means the client's configured timeout
  (the reference's sync twin waits forever).
"""

# ruff: noqa: PLR0917, ASYNC109  (positional parameters and `timeout` arguments mirror the reference API)

from __future__ import annotations

import os
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import httpx
import msgspec

from agent import __version__
from agent import _operations as ops
from agent._context import get_current_step, get_current_thread
from agent._exceptions import (
    ClientClosedError,
    GraphQLError,
    LiteralError,
    ServerError,
    TransportError,
    error_for_status,
    register_secret,
)
from agent._models import (
    Attachment,
    AttachmentUpload,
    Dataset,
    DatasetExperiment,
    DatasetExperimentItem,
    DatasetItem,
    DatasetType,
    Filter,
    Generation,
    GenerationMessage,
    OrderBy,
    PaginatedResponse,
    Prompt,
    PromptRollout,
    ProviderSettings,
    Score,
    ScoreDict,
    ScoreType,
    ScoreUpdate,
    Step,
    StepDict,
    StepType,
    Thread,
    User,
)

__all__ = ["AsyncLiteralAPI", "LiteralAPI"]

T = TypeVar("T")
R = TypeVar("R")

API_KEY_ENV = "LITERAL_API_KEY"
API_URL_ENV = "LITERAL_API_URL"
ENVIRONMENT_ENV = "LITERAL_ENV"
CLIENT_NAME = "literal-agent"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 10

#: The environment of the innermost active ``client.environment(...)`` /
#: ``client.experiment_item_run()`` block: process-wide (the reference rewrites
#: ``LITERAL_ENV`` instead), it wins over ``environment=`` and ``LITERAL_ENV`` while the block
#: runs, for every request of every API client (the pipeline's included).
active_environment: str | None = None

_encoder = msgspec.json.Encoder(enc_hook=ops.enc_hook)
_decoder = msgspec.json.Decoder()


def _warn_generation_id(generation_id: str | None) -> None:
    if generation_id:
        from agent._logging import get_logger

        get_logger(__name__).warning(
            "create_score: generation_id is deprecated and ignored; use step_id instead"
        )


def _deprecated(name: str, replacement: str) -> None:
    warnings.warn(
        f"{name} is deprecated; use {replacement} instead", DeprecationWarning, stacklevel=3
    )


def _active_ids(thread_id: str | None, step_id: str | None) -> tuple[str | None, str | None]:
    """Fill the thread and step ids of ``create_attachment`` from the active hook context
    (the innermost open step, the active thread), as the reference does."""
    if not thread_id and (thread := get_current_thread()) is not None:
        thread_id = thread.id
    if not step_id and (step := get_current_step()) is not None:
        step_id = step.id
    return thread_id, step_id


class _BaseLiteralAPI:
    """What both twins share: configuration, headers, encoding and answer checking."""

    def __init__(
        self,
        api_key: str | None = None,
        url: str | None = None,
        environment: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        api_key = api_key or os.environ.get(API_KEY_ENV)
        url = url or os.environ.get(API_URL_ENV)
        if not api_key:
            raise ValueError(
                f"No Literal API key: pass api_key=... or set {API_KEY_ENV} in the environment"
            )
        if not url:
            raise ValueError(
                f"No Literal API URL: pass url=... or set {API_URL_ENV} (for example "
                "https://cloud.getliteral.ai, or the URL of a local collector)"
            )
        if url.endswith("/"):
            url = url[:-1]
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        register_secret(api_key)
        try:
            from agent._logging import register_secret as register_log_secret
        except ImportError:  # pragma: no cover - logging module is part of the package
            pass
        else:
            register_log_secret(api_key)
        self.api_key = api_key
        self.url = url
        self.environment = environment
        self.timeout = timeout
        self.graphql_endpoint = url + "/api/graphql"
        self.rest_endpoint = url + "/api"
        self.cache = ops.PROMPT_CACHE
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    @property
    def headers(self) -> dict[str, str]:
        """Headers of every API request (``x-env``: the active ``client.environment(...)``
        block's, else ``environment``, else ``LITERAL_ENV``)."""
        headers = {
            "Content-Type": "application/json",
            "x-api-key": self.api_key,
            "x-client-name": CLIENT_NAME,
            "x-client-version": __version__,
        }
        if env := active_environment or self.environment or os.environ.get(ENVIRONMENT_ENV):
            headers["x-env"] = env
        return headers

    def _encode(self, operation: ops.Operation[Any]) -> tuple[str, bytes, float]:
        """URL, JSON body and timeout of an operation."""
        timeout = operation.timeout if operation.timeout is not None else self.timeout
        if operation.query is not None:
            variables = (
                operation.variables if operation.prepared else ops.jsonable(operation.variables)
            )
            body = _encoder.encode({"query": operation.query, "variables": variables})
            return self.graphql_endpoint, body, timeout
        assert operation.path is not None
        return self.rest_endpoint + operation.path, _encoder.encode(operation.body or {}), timeout

    def _closed_error(self, what: str) -> ClientClosedError:
        return ClientClosedError(
            f"Cannot {what}: this {type(self).__name__} was closed (close()/aclose() or the end "
            f"of its with block released its connections); create a new {type(self).__name__}"
        )

    def _transport_error(self, what: str, exc: httpx.TransportError) -> TransportError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return TransportError(
            f"Failed to {what}: the request to {self.url} {kind} "
            f"({type(exc).__name__}: {exc}); check that the server is running and reachable "
            f"and that {API_URL_ENV} is right"
        )

    def _result(
        self, operation: ops.Operation[T], status: int, content: bytes, headers: Mapping[str, str]
    ) -> T:
        """Check an answer (status, JSON, GraphQL errors, ``ok: false``) and decode it."""
        what = operation.description
        if status >= 400:
            text = content.decode("utf-8", "replace")
            raise error_for_status(status, text, what=what, retry_after=headers.get("retry-after"))
        try:
            payload = _decoder.decode(content)
        except msgspec.DecodeError:
            raise ServerError(
                f"Failed to {what}: HTTP {status} with a body that is not JSON; check that "
                f"{API_URL_ENV} points to a Literal API server",
                status=status,
                body=content[:500].decode("utf-8", "replace"),
            ) from None
        if operation.query is not None:
            _check_graphql(what, payload)
        try:
            return self._bind(operation.decode(payload))
        except LiteralError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, msgspec.ValidationError) as exc:
            raise LiteralError(
                f"Failed to {what}: unexpected answer shape ({type(exc).__name__}: {exc}); "
                "check that the server speaks the Literal API"
            ) from exc

    def _bind(self, value: T) -> T:
        """Attach this API object to the results whose helper methods call it."""
        if isinstance(value, Dataset | DatasetExperiment | Prompt):
            setattr(value, "api", self)  # noqa: B010 - helper-method binding, not a field
        return value


def _check_graphql(what: str, payload: Any) -> None:
    if not isinstance(payload, dict):
        raise GraphQLError(f"Failed to {what}: the answer is not a JSON object", data=None)
    data = payload.get("data")
    errors = payload.get("errors")
    if errors:
        error_list = errors if isinstance(errors, list) else [errors]
        messages = "; ".join(
            str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in error_list[:5]
        )
        raise GraphQLError(
            f"Failed to {what}: {messages} (the server rejected the request; see .errors)",
            errors=[e if isinstance(e, dict) else {"message": str(e)} for e in error_list],
            data=data if isinstance(data, dict) else None,
        )
    if isinstance(data, dict):
        failures = {
            alias: str(value.get("message"))
            for alias, value in data.items()
            if isinstance(value, dict) and value.get("ok") is False
        }
        if failures:
            shown = "; ".join(
                f"{alias}: {message}" for alias, message in list(failures.items())[:5]
            )
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise GraphQLError(
                f"Failed to {what}: {len(failures)} of {len(data)} refused: {shown}{more}; "
                "fix or drop those items (see .failures) and send the rest again",
                failures=failures,
                data=data,
            )


class LiteralAPI(_BaseLiteralAPI):
    """Synchronous Literal API client: every method of the reference ``LiteralAPI``.

    One pooled HTTP client per object; close it with :meth:`close` or a ``with`` block.
    """

    def __init__(
        self,
        api_key: str | None = None,
        url: str | None = None,
        environment: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(
            api_key, url, environment, timeout=timeout, max_connections=max_connections
        )
        self._http = httpx.Client(follow_redirects=True, limits=self._limits)

    def close(self) -> None:
        """Close the pooled connections (the object cannot be used afterwards)."""
        self._http.close()

    def __enter__(self) -> LiteralAPI:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def _execute(self, operation: ops.Operation[T]) -> T:
        url, body, timeout = self._encode(operation)
        try:
            response = self._http.post(url, content=body, headers=self.headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise self._transport_error(operation.description, exc) from exc
        except RuntimeError as exc:  # httpx: "Cannot send a request, as the client has been closed"
            if not self._http.is_closed:
                raise
            raise self._closed_error(operation.description) from exc
        return self._result(operation, response.status_code, response.content, response.headers)

    def _upload(self, upload: ops.Upload) -> None:
        try:
            response = self._http.request(
                upload.method,
                upload.url,
                headers=dict(upload.headers),
                content=upload.content,
                files=upload.files,
                timeout=self.timeout,
            )
        except httpx.TransportError as exc:
            raise self._transport_error("upload file", exc) from exc
        except RuntimeError as exc:  # httpx: "Cannot send a request, as the client has been closed"
            if not self._http.is_closed:
                raise
            raise self._closed_error("upload file") from exc
        if response.status_code >= 400:
            raise error_for_status(response.status_code, response.text, what="upload file")

    def _run(self, flow: ops.Flow[T]) -> T:
        """Drive a multi-request flow: send what it yields, feed back results or errors."""
        try:
            request = next(flow)
            while True:
                try:
                    if isinstance(request, ops.Upload):
                        self._upload(request)
                        result: Any = None
                    else:
                        result = self._execute(request)
                except LiteralError as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(result)
        except StopIteration as stop:
            return cast(T, self._bind(stop.value))

    # ------------------------------------------------------------------ plumbing (parity)

    def make_gql_call(
        self,
        description: str,
        query: str,
        variables: dict[str, Any],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one GraphQL document; the checked JSON answer (``timeout`` None = default)."""
        return self._execute(ops.raw_graphql(description, query, variables, timeout))

    def make_rest_call(self, subpath: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``{url}/api{subpath}``; the JSON answer."""
        return self._execute(ops.raw_rest(subpath, body))

    def gql_helper(
        self,
        query: str,
        description: str,
        variables: dict[str, Any],
        process_response: Callable[[dict[str, Any]], R],
        timeout: float | None = None,
    ) -> R:
        """``process_response(make_gql_call(...))``, as the reference's helper layer does."""
        return self._execute(
            ops.raw_graphql(description, query, variables, timeout, process_response)
        )

    # ------------------------------------------------------------------ users

    def get_users(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
    ) -> PaginatedResponse[User]:
        """One page of users (participants)."""
        return self._execute(ops.get_users(first, after, before, filters))

    def get_user(self, id: str | None = None, identifier: str | None = None) -> User | None:
        """The user with this id or identifier (exactly one of them), or None."""
        return self._execute(ops.get_user(id, identifier))

    def create_user(self, identifier: str, metadata: dict[str, Any] | None = None) -> User:
        """Create a user."""
        return self._execute(ops.create_user(identifier, metadata))

    def update_user(
        self, id: str, identifier: str | None = None, metadata: dict[str, Any] | None = None
    ) -> User:
        """Update the given fields of a user (None = keep)."""
        return self._execute(ops.update_user(id, identifier, metadata))

    def delete_user(self, id: str) -> str:
        """Delete a user; returns its id."""
        return self._execute(ops.delete_user(id))

    def get_or_create_user(self, identifier: str, metadata: dict[str, Any] | None = None) -> User:
        """The user with this identifier (metadata untouched), created if missing."""
        return self._run(ops.get_or_create_user(identifier, metadata))

    # ------------------------------------------------------------------ threads

    def get_threads(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
        step_types_to_keep: list[StepType] | None = None,
    ) -> PaginatedResponse[Thread]:
        """One page of threads, with their steps."""
        return self._execute(
            ops.get_threads(first, after, before, filters, order_by, step_types_to_keep)
        )

    def list_threads(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Thread]:
        """One page of threads, without their steps."""
        return self._execute(ops.list_threads(first, after, before, filters, order_by))

    def get_thread(self, id: str) -> Thread | None:
        """A thread with its steps, or None."""
        return self._execute(ops.get_thread(id))

    def create_thread(
        self,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        participant_id: str | None = None,
        tags: list[str] | None = None,
    ) -> Thread:
        """Create a thread (the server picks the id)."""
        return self._execute(ops.create_thread(name, metadata, participant_id, tags))

    def upsert_thread(
        self,
        id: str,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        participant_id: str | None = None,
        tags: list[str] | None = None,
    ) -> Thread:
        """Create the thread ``id`` or update the given fields (None = keep)."""
        return self._execute(ops.upsert_thread(id, name, metadata, participant_id, tags))

    def update_thread(
        self,
        id: str,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        participant_id: str | None = None,
        tags: list[str] | None = None,
    ) -> Thread:
        """Update the given fields of a thread (None = keep)."""
        return self._execute(ops.update_thread(id, name, metadata, participant_id, tags))

    def delete_thread(self, id: str) -> bool:
        """Delete a thread; True when it existed."""
        return self._execute(ops.delete_thread(id))

    # ------------------------------------------------------------------ scores

    def get_scores(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Score]:
        """One page of scores."""
        return self._execute(ops.get_scores(first, after, before, filters, order_by))

    def create_scores(self, scores: list[ScoreDict]) -> list[Score]:
        """Create many scores in one request (values must be finite numbers)."""
        return self._execute(ops.create_scores(scores))

    def create_score(
        self,
        name: str,
        value: float,
        type: ScoreType | str,
        step_id: str | None = None,
        generation_id: str | None = None,
        dataset_experiment_item_id: str | None = None,
        comment: str | None = None,
        tags: list[str] | None = None,
    ) -> Score:
        """Create a score (``generation_id`` is deprecated and ignored, as in the reference)."""
        _warn_generation_id(generation_id)
        return self._execute(
            ops.create_score(name, value, type, step_id, dataset_experiment_item_id, comment, tags)
        )

    def update_score(self, id: str, update_params: ScoreUpdate) -> Score:
        """Update a score's ``value`` and/or ``comment``."""
        return self._execute(ops.update_score(id, update_params))

    def delete_score(self, id: str) -> dict[str, Any]:
        """Delete a score; the raw ``{"id": ...}`` answer."""
        return self._execute(ops.delete_score(id))

    # ------------------------------------------------------------------ attachments

    def upload_file(
        self,
        content: bytes | str,
        thread_id: str | None = None,
        mime: str | None = "application/octet-stream",
    ) -> dict[str, Any]:
        """Upload bytes; ``{"object_key", "url"}`` (both None when the server refused)."""
        return self._run(ops.upload_file(content, thread_id, mime))

    def create_attachment(
        self,
        thread_id: str | None = None,
        step_id: str | None = None,
        id: str | None = None,
        metadata: dict[str, Any] | None = None,
        mime: str | None = None,
        name: str | None = None,
        object_key: str | None = None,
        url: str | None = None,
        content: bytes | str | None = None,
        path: str | None = None,
    ) -> Attachment:
        """Attach a file (content, path or url) to a step, uploading it first if needed."""
        thread_id, step_id = _active_ids(thread_id, step_id)
        return self._run(
            ops.create_attachment(
                thread_id, step_id, id, metadata, mime, name, object_key, url, content, path
            )
        )

    def update_attachment(self, id: str, update_params: AttachmentUpload) -> Attachment:
        """Update the given fields of an attachment (absent = keep)."""
        return self._execute(ops.update_attachment(id, update_params))

    def get_attachment(self, id: str) -> Attachment | None:
        """An attachment, or None."""
        return self._execute(ops.get_attachment(id))

    def delete_attachment(self, id: str) -> dict[str, Any]:
        """Delete an attachment; the raw ``{"id": ...}`` answer."""
        return self._execute(ops.delete_attachment(id))

    # ------------------------------------------------------------------ steps

    def create_step(
        self,
        thread_id: str | None = None,
        type: StepType | str | None = "undefined",
        start_time: str | None = None,
        end_time: str | None = None,
        input: dict[str, Any] | None = None,
        output: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        parent_id: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        root_run_id: str | None = None,
    ) -> Step:
        """Create a step (the server picks the id; prefer ``send_steps`` for ingestion)."""
        return self._execute(
            ops.create_step(
                thread_id,
                type,
                start_time,
                end_time,
                input,
                output,
                metadata,
                parent_id,
                name,
                tags,
                root_run_id,
            )
        )

    def update_step(
        self,
        id: str,
        type: StepType | str | None = None,
        input: Any = None,
        output: Any = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        parent_id: str | None = None,
    ) -> Step:
        """Update a step."""
        return self._execute(
            ops.update_step(
                id, type, input, output, metadata, name, tags, start_time, end_time, parent_id
            )
        )

    def get_steps(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Step]:
        """One page of steps."""
        return self._execute(ops.get_steps(first, after, before, filters, order_by))

    def get_step(self, id: str) -> Step | None:
        """A step, or None."""
        return self._execute(ops.get_step(id))

    def delete_step(self, id: str) -> bool:
        """Delete a step; True when it existed."""
        return self._execute(ops.delete_step(id))

    def send_steps(self, steps: Sequence[Step | StepDict | dict[str, Any]]) -> dict[str, Any]:
        """Ingest (upsert by id) a batch of steps; the raw ``{"data": {"step0": ...}}`` answer.

        Raises :class:`GraphQLError` with ``failures`` (alias -> message) if some were refused.
        """
        return self._execute(ops.send_steps(steps))

    # ------------------------------------------------------------------ generations

    def get_generations(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Generation]:
        """One page of generations."""
        return self._execute(ops.get_generations(first, after, before, filters, order_by))

    def create_generation(self, generation: Generation) -> Generation:
        """Create a stand-alone generation (only ``id`` and type come back)."""
        return self._execute(ops.create_generation(generation))

    # ------------------------------------------------------------------ datasets

    def create_dataset(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        type: DatasetType | str = "key_value",
    ) -> Dataset:
        """Create a dataset."""
        return self._execute(ops.create_dataset(name, description, metadata, type))

    def get_dataset(self, id: str | None = None, name: str | None = None) -> Dataset | None:
        """A dataset with its items, by id or name, or None."""
        return self._execute(ops.get_dataset(id, name))

    def update_dataset(
        self,
        id: str,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Dataset:
        """Update the given fields of a dataset (None = keep)."""
        return self._execute(ops.update_dataset(id, name, description, metadata))

    def delete_dataset(self, id: str) -> Dataset:
        """Delete a dataset; the deleted dataset."""
        return self._execute(ops.delete_dataset(id))

    # ------------------------------------------------------------------ experiments

    def create_experiment(
        self,
        name: str,
        dataset_id: str | None = None,
        prompt_variant_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> DatasetExperiment:
        """Create a dataset experiment."""
        return self._execute(ops.create_experiment(name, dataset_id, prompt_variant_id, params))

    def create_experiment_item(
        self, experiment_item: DatasetExperimentItem
    ) -> DatasetExperimentItem:
        """Log an experiment item and its scores (score values must be finite)."""
        return self._run(ops.create_experiment_item(experiment_item))

    # ------------------------------------------------------------------ dataset items

    def create_dataset_item(
        self,
        dataset_id: str,
        input: dict[str, Any],
        expected_output: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> DatasetItem:
        """Create a dataset item."""
        return self._execute(ops.create_dataset_item(dataset_id, input, expected_output, metadata))

    def get_dataset_item(self, id: str) -> DatasetItem | None:
        """A dataset item, or None."""
        return self._execute(ops.get_dataset_item(id))

    def delete_dataset_item(self, id: str) -> DatasetItem:
        """Delete a dataset item; the deleted item."""
        return self._execute(ops.delete_dataset_item(id))

    def add_step_to_dataset(
        self, dataset_id: str, step_id: str, metadata: dict[str, Any] | None = None
    ) -> DatasetItem:
        """Add a dataset item made from a step (input -> input, output -> expected output)."""
        return self._execute(ops.add_step_to_dataset(dataset_id, step_id, metadata))

    def add_generation_to_dataset(
        self, dataset_id: str, generation_id: str, metadata: dict[str, Any] | None = None
    ) -> DatasetItem:
        """Add a dataset item made from a generation."""
        return self._execute(ops.add_generation_to_dataset(dataset_id, generation_id, metadata))

    # ------------------------------------------------------------------ prompts

    def get_or_create_prompt_lineage(
        self, name: str, description: str | None = None
    ) -> dict[str, Any]:
        """The prompt lineage ``name`` (raw ``{id, name, deletedAt}``), created if missing."""
        return self._execute(ops.get_or_create_prompt_lineage(name, description))

    def create_prompt_lineage(self, name: str, description: str | None = None) -> dict[str, Any]:
        """Deprecated alias of :meth:`get_or_create_prompt_lineage`."""
        _deprecated("create_prompt_lineage", "get_or_create_prompt_lineage")
        return self._execute(ops.get_or_create_prompt_lineage(name, description))

    def get_or_create_prompt(
        self,
        name: str,
        template_messages: list[GenerationMessage],
        settings: ProviderSettings | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Prompt:
        """The version of prompt ``name`` with these messages/settings/tools, created if new."""
        return self._run(ops.get_or_create_prompt(name, template_messages, settings, tools))

    def create_prompt(
        self,
        name: str,
        template_messages: list[GenerationMessage],
        settings: ProviderSettings | None = None,
    ) -> Prompt:
        """Deprecated alias of :meth:`get_or_create_prompt` (without tools)."""
        _deprecated("create_prompt", "get_or_create_prompt")
        return self._run(ops.get_or_create_prompt(name, template_messages, settings, None))

    def get_prompt(
        self, id: str | None = None, name: str | None = None, version: int | None = None
    ) -> Prompt:
        """A prompt version by id, or by name (and version); the cached copy if the call fails."""
        return self._run(ops.get_prompt(id, name, version))

    def create_prompt_variant(
        self,
        name: str,
        template_messages: list[GenerationMessage],
        settings: ProviderSettings | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> str | None:
        """Create a prompt variant from the lineage ``name``; its id."""
        return self._run(ops.create_prompt_variant(name, template_messages, settings, tools))

    def get_prompt_ab_testing(self, name: str) -> list[PromptRollout]:
        """The A/B rollout of the lineage ``name`` (``[{"version", "rollout"}]``)."""
        return self._execute(ops.get_prompt_ab_testing(name))

    def update_prompt_ab_testing(self, name: str, rollouts: list[PromptRollout]) -> dict[str, Any]:
        """Replace the A/B rollout of the lineage ``name``."""
        return self._execute(ops.update_prompt_ab_testing(name, rollouts))

    # ------------------------------------------------------------------ misc

    def get_my_project_id(self) -> str:
        """The id of the project the API key belongs to."""
        return self._execute(ops.get_my_project_id())


class AsyncLiteralAPI(_BaseLiteralAPI):
    """Asynchronous Literal API client: every method of the reference ``AsyncLiteralAPI``.

    One pooled HTTP client per object; close it with :meth:`aclose` or ``async with``.
    ``Dataset``/``DatasetExperiment`` helpers of the objects it returns are coroutines.
    """

    def __init__(
        self,
        api_key: str | None = None,
        url: str | None = None,
        environment: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(
            api_key, url, environment, timeout=timeout, max_connections=max_connections
        )
        self._http = httpx.AsyncClient(follow_redirects=True, limits=self._limits)

    async def aclose(self) -> None:
        """Close the pooled connections (the object cannot be used afterwards)."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLiteralAPI:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _execute(self, operation: ops.Operation[T]) -> T:
        url, body, timeout = self._encode(operation)
        try:
            response = await self._http.post(
                url, content=body, headers=self.headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise self._transport_error(operation.description, exc) from exc
        except RuntimeError as exc:  # httpx: "Cannot send a request, as the client has been closed"
            if not self._http.is_closed:
                raise
            raise self._closed_error(operation.description) from exc
        return self._result(operation, response.status_code, response.content, response.headers)

    async def _upload(self, upload: ops.Upload) -> None:
        try:
            response = await self._http.request(
                upload.method,
                upload.url,
                headers=dict(upload.headers),
                content=upload.content,
                files=upload.files,
                timeout=self.timeout,
            )
        except httpx.TransportError as exc:
            raise self._transport_error("upload file", exc) from exc
        except RuntimeError as exc:  # httpx: "Cannot send a request, as the client has been closed"
            if not self._http.is_closed:
                raise
            raise self._closed_error("upload file") from exc
        if response.status_code >= 400:
            raise error_for_status(response.status_code, response.text, what="upload file")

    async def _run(self, flow: ops.Flow[T]) -> T:
        """Drive a multi-request flow: send what it yields, feed back results or errors."""
        try:
            request = next(flow)
            while True:
                try:
                    if isinstance(request, ops.Upload):
                        await self._upload(request)
                        result: Any = None
                    else:
                        result = await self._execute(request)
                except LiteralError as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(result)
        except StopIteration as stop:
            return cast(T, self._bind(stop.value))

    # ------------------------------------------------------------------ plumbing (parity)

    async def make_gql_call(
        self,
        description: str,
        query: str,
        variables: dict[str, Any],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one GraphQL document; the checked JSON answer (``timeout`` None = default)."""
        return await self._execute(ops.raw_graphql(description, query, variables, timeout))

    async def make_rest_call(self, subpath: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``{url}/api{subpath}``; the JSON answer."""
        return await self._execute(ops.raw_rest(subpath, body))

    async def gql_helper(
        self,
        query: str,
        description: str,
        variables: dict[str, Any],
        process_response: Callable[[dict[str, Any]], R],
        timeout: float | None = None,
    ) -> R:
        """``process_response(make_gql_call(...))``, as the reference's helper layer does."""
        return await self._execute(
            ops.raw_graphql(description, query, variables, timeout, process_response)
        )

    # ------------------------------------------------------------------ users

    async def get_users(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
    ) -> PaginatedResponse[User]:
        """One page of users (participants)."""
        return await self._execute(ops.get_users(first, after, before, filters))

    async def get_user(self, id: str | None = None, identifier: str | None = None) -> User | None:
        """The user with this id or identifier (exactly one of them), or None."""
        return await self._execute(ops.get_user(id, identifier))

    async def create_user(self, identifier: str, metadata: dict[str, Any] | None = None) -> User:
        """Create a user."""
        return await self._execute(ops.create_user(identifier, metadata))

    async def update_user(
        self, id: str, identifier: str | None = None, metadata: dict[str, Any] | None = None
    ) -> User:
        """Update the given fields of a user (None = keep)."""
        return await self._execute(ops.update_user(id, identifier, metadata))

    async def delete_user(self, id: str) -> str:
        """Delete a user; returns its id."""
        return await self._execute(ops.delete_user(id))

    async def get_or_create_user(
        self, identifier: str, metadata: dict[str, Any] | None = None
    ) -> User:
        """The user with this identifier (metadata untouched), created if missing."""
        return await self._run(ops.get_or_create_user(identifier, metadata))

    # ------------------------------------------------------------------ threads

    async def get_threads(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
        step_types_to_keep: list[StepType] | None = None,
    ) -> PaginatedResponse[Thread]:
        """One page of threads, with their steps."""
        return await self._execute(
            ops.get_threads(first, after, before, filters, order_by, step_types_to_keep)
        )

    async def list_threads(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Thread]:
        """One page of threads, without their steps."""
        return await self._execute(ops.list_threads(first, after, before, filters, order_by))

    async def get_thread(self, id: str) -> Thread | None:
        """A thread with its steps, or None."""
        return await self._execute(ops.get_thread(id))

    async def create_thread(
        self,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        participant_id: str | None = None,
        tags: list[str] | None = None,
    ) -> Thread:
        """Create a thread (the server picks the id)."""
        return await self._execute(ops.create_thread(name, metadata, participant_id, tags))

    async def upsert_thread(
        self,
        id: str,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        participant_id: str | None = None,
        tags: list[str] | None = None,
    ) -> Thread:
        """Create the thread ``id`` or update the given fields (None = keep)."""
        return await self._execute(ops.upsert_thread(id, name, metadata, participant_id, tags))

    async def update_thread(
        self,
        id: str,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        participant_id: str | None = None,
        tags: list[str] | None = None,
    ) -> Thread:
        """Update the given fields of a thread (None = keep)."""
        return await self._execute(ops.update_thread(id, name, metadata, participant_id, tags))

    async def delete_thread(self, id: str) -> bool:
        """Delete a thread; True when it existed."""
        return await self._execute(ops.delete_thread(id))

    # ------------------------------------------------------------------ scores

    async def get_scores(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Score]:
        """One page of scores."""
        return await self._execute(ops.get_scores(first, after, before, filters, order_by))

    async def create_scores(self, scores: list[ScoreDict]) -> list[Score]:
        """Create many scores in one request (values must be finite numbers)."""
        return await self._execute(ops.create_scores(scores))

    async def create_score(
        self,
        name: str,
        value: float,
        type: ScoreType | str,
        step_id: str | None = None,
        generation_id: str | None = None,
        dataset_experiment_item_id: str | None = None,
        comment: str | None = None,
        tags: list[str] | None = None,
    ) -> Score:
        """Create a score (``generation_id`` is deprecated and ignored, as in the reference)."""
        _warn_generation_id(generation_id)
        return await self._execute(
            ops.create_score(name, value, type, step_id, dataset_experiment_item_id, comment, tags)
        )

    async def update_score(self, id: str, update_params: ScoreUpdate) -> Score:
        """Update a score's ``value`` and/or ``comment``."""
        return await self._execute(ops.update_score(id, update_params))

    async def delete_score(self, id: str) -> dict[str, Any]:
        """Delete a score; the raw ``{"id": ...}`` answer."""
        return await self._execute(ops.delete_score(id))

    # ------------------------------------------------------------------ attachments

    async def upload_file(
        self,
        content: bytes | str,
        thread_id: str | None = None,
        mime: str | None = "application/octet-stream",
    ) -> dict[str, Any]:
        """Upload bytes; ``{"object_key", "url"}`` (both None when the server refused)."""
        return await self._run(ops.upload_file(content, thread_id, mime))

    async def create_attachment(
        self,
        thread_id: str | None = None,
        step_id: str | None = None,
        id: str | None = None,
        metadata: dict[str, Any] | None = None,
        mime: str | None = None,
        name: str | None = None,
        object_key: str | None = None,
        url: str | None = None,
        content: bytes | str | None = None,
        path: str | None = None,
    ) -> Attachment:
        """Attach a file (content, path or url) to a step, uploading it first if needed."""
        thread_id, step_id = _active_ids(thread_id, step_id)
        return await self._run(
            ops.create_attachment(
                thread_id, step_id, id, metadata, mime, name, object_key, url, content, path
            )
        )

    async def update_attachment(self, id: str, update_params: AttachmentUpload) -> Attachment:
        """Update the given fields of an attachment (absent = keep)."""
        return await self._execute(ops.update_attachment(id, update_params))

    async def get_attachment(self, id: str) -> Attachment | None:
        """An attachment, or None."""
        return await self._execute(ops.get_attachment(id))

    async def delete_attachment(self, id: str) -> dict[str, Any]:
        """Delete an attachment; the raw ``{"id": ...}`` answer."""
        return await self._execute(ops.delete_attachment(id))

    # ------------------------------------------------------------------ steps

    async def create_step(
        self,
        thread_id: str | None = None,
        type: StepType | str | None = "undefined",
        start_time: str | None = None,
        end_time: str | None = None,
        input: dict[str, Any] | None = None,
        output: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        parent_id: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        root_run_id: str | None = None,
    ) -> Step:
        """Create a step (the server picks the id; prefer ``send_steps`` for ingestion)."""
        return await self._execute(
            ops.create_step(
                thread_id,
                type,
                start_time,
                end_time,
                input,
                output,
                metadata,
                parent_id,
                name,
                tags,
                root_run_id,
            )
        )

    async def update_step(
        self,
        id: str,
        type: StepType | str | None = None,
        input: Any = None,
        output: Any = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        parent_id: str | None = None,
    ) -> Step:
        """Update a step."""
        return await self._execute(
            ops.update_step(
                id, type, input, output, metadata, name, tags, start_time, end_time, parent_id
            )
        )

    async def get_steps(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Step]:
        """One page of steps."""
        return await self._execute(ops.get_steps(first, after, before, filters, order_by))

    async def get_step(self, id: str) -> Step | None:
        """A step, or None."""
        return await self._execute(ops.get_step(id))

    async def delete_step(self, id: str) -> bool:
        """Delete a step; True when it existed."""
        return await self._execute(ops.delete_step(id))

    async def send_steps(self, steps: Sequence[Step | StepDict | dict[str, Any]]) -> dict[str, Any]:
        """Ingest (upsert by id) a batch of steps; the raw ``{"data": {"step0": ...}}`` answer.

        Raises :class:`GraphQLError` with ``failures`` (alias -> message) if some were refused.
        """
        return await self._execute(ops.send_steps(steps))

    # ------------------------------------------------------------------ generations

    async def get_generations(
        self,
        first: int | None = None,
        after: str | None = None,
        before: str | None = None,
        filters: list[Filter] | None = None,
        order_by: OrderBy | None = None,
    ) -> PaginatedResponse[Generation]:
        """One page of generations."""
        return await self._execute(ops.get_generations(first, after, before, filters, order_by))

    async def create_generation(self, generation: Generation) -> Generation:
        """Create a stand-alone generation (only ``id`` and type come back)."""
        return await self._execute(ops.create_generation(generation))

    # ------------------------------------------------------------------ datasets

    async def create_dataset(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        type: DatasetType | str = "key_value",
    ) -> Dataset:
        """Create a dataset."""
        return await self._execute(ops.create_dataset(name, description, metadata, type))

    async def get_dataset(self, id: str | None = None, name: str | None = None) -> Dataset | None:
        """A dataset with its items, by id or name, or None."""
        return await self._execute(ops.get_dataset(id, name))

    async def update_dataset(
        self,
        id: str,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Dataset:
        """Update the given fields of a dataset (None = keep)."""
        return await self._execute(ops.update_dataset(id, name, description, metadata))

    async def delete_dataset(self, id: str) -> Dataset:
        """Delete a dataset; the deleted dataset."""
        return await self._execute(ops.delete_dataset(id))

    # ------------------------------------------------------------------ experiments

    async def create_experiment(
        self,
        name: str,
        dataset_id: str | None = None,
        prompt_variant_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> DatasetExperiment:
        """Create a dataset experiment."""
        return await self._execute(
            ops.create_experiment(name, dataset_id, prompt_variant_id, params)
        )

    async def create_experiment_item(
        self, experiment_item: DatasetExperimentItem
    ) -> DatasetExperimentItem:
        """Log an experiment item and its scores (score values must be finite)."""
        return await self._run(ops.create_experiment_item(experiment_item))

    # ------------------------------------------------------------------ dataset items

    async def create_dataset_item(
        self,
        dataset_id: str,
        input: dict[str, Any],
        expected_output: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> DatasetItem:
        """Create a dataset item."""
        return await self._execute(
            ops.create_dataset_item(dataset_id, input, expected_output, metadata)
        )

    async def get_dataset_item(self, id: str) -> DatasetItem | None:
        """A dataset item, or None."""
        return await self._execute(ops.get_dataset_item(id))

    async def delete_dataset_item(self, id: str) -> DatasetItem:
        """Delete a dataset item; the deleted item."""
        return await self._execute(ops.delete_dataset_item(id))

    async def add_step_to_dataset(
        self, dataset_id: str, step_id: str, metadata: dict[str, Any] | None = None
    ) -> DatasetItem:
        """Add a dataset item made from a step (input -> input, output -> expected output)."""
        return await self._execute(ops.add_step_to_dataset(dataset_id, step_id, metadata))

    async def add_generation_to_dataset(
        self, dataset_id: str, generation_id: str, metadata: dict[str, Any] | None = None
    ) -> DatasetItem:
        """Add a dataset item made from a generation."""
        return await self._execute(
            ops.add_generation_to_dataset(dataset_id, generation_id, metadata)
        )

    # ------------------------------------------------------------------ prompts

    async def get_or_create_prompt_lineage(
        self, name: str, description: str | None = None
    ) -> dict[str, Any]:
        """The prompt lineage ``name`` (raw ``{id, name, deletedAt}``), created if missing."""
        return await self._execute(ops.get_or_create_prompt_lineage(name, description))

    async def create_prompt_lineage(
        self, name: str, description: str | None = None
    ) -> dict[str, Any]:
        """Deprecated alias of :meth:`get_or_create_prompt_lineage`."""
        _deprecated("create_prompt_lineage", "get_or_create_prompt_lineage")
        return await self._execute(ops.get_or_create_prompt_lineage(name, description))

    async def get_or_create_prompt(
        self,
        name: str,
        template_messages: list[GenerationMessage],
        settings: ProviderSettings | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Prompt:
        """The version of prompt ``name`` with these messages/settings/tools, created if new."""
        return await self._run(ops.get_or_create_prompt(name, template_messages, settings, tools))

    async def create_prompt(
        self,
        name: str,
        template_messages: list[GenerationMessage],
        settings: ProviderSettings | None = None,
    ) -> Prompt:
        """Deprecated alias of :meth:`get_or_create_prompt` (without tools)."""
        _deprecated("create_prompt", "get_or_create_prompt")
        return await self._run(ops.get_or_create_prompt(name, template_messages, settings, None))

    async def get_prompt(
        self, id: str | None = None, name: str | None = None, version: int | None = None
    ) -> Prompt:
        """A prompt version by id, or by name (and version); the cached copy if the call fails."""
        return await self._run(ops.get_prompt(id, name, version))

    async def create_prompt_variant(
        self,
        name: str,
        template_messages: list[GenerationMessage],
        settings: ProviderSettings | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> str | None:
        """Create a prompt variant from the lineage ``name``; its id."""
        return await self._run(ops.create_prompt_variant(name, template_messages, settings, tools))

    async def get_prompt_ab_testing(self, name: str) -> list[PromptRollout]:
        """The A/B rollout of the lineage ``name`` (``[{"version", "rollout"}]``)."""
        return await self._execute(ops.get_prompt_ab_testing(name))

    async def update_prompt_ab_testing(
        self, name: str, rollouts: list[PromptRollout]
    ) -> dict[str, Any]:
        """Replace the A/B rollout of the lineage ``name``."""
        return await self._execute(ops.update_prompt_ab_testing(name, rollouts))

    # ------------------------------------------------------------------ misc

    async def get_my_project_id(self) -> str:
        """The id of the project the API key belongs to."""
        return await self._execute(ops.get_my_project_id())
