"""Every Literal API operation, written once: pure builders shared by the sync and async clients.

A builder checks its arguments (bad input fails here, before any request) and returns a
frozen :class:`Operation` carrying the GraphQL document (or REST path), the variables exactly
as the reference SDK (``literalai`` 0.1.300) sends them, and a ``decode`` function turning
the response JSON into the typed result. Operations that take several requests
(``get_or_create_user``, ``upload_file`` + ``create_attachment``, ``get_or_create_prompt``,
``get_prompt`` with its cache fallback, ``create_prompt_variant``, ``create_experiment_item``)
are *flows*: generators that yield requests and receive their results (the httpx
``auth_flow`` shape). A failing request is thrown into the flow as a
:class:`~agent._exceptions.LiteralError`, so a flow can recover (cache fallback, upload
failure) or let it propagate. No I/O happens here; ``agent._api`` drives everything.
"""

# ruff: noqa: PLR0917  (builders take the reference API's positional parameters)

from __future__ import annotations

import math
import mimetypes
import numbers
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from agent import _documents as gql
from agent._exceptions import HTTPStatusError, LiteralError
from agent._models import (
    Attachment,
    BaseGeneration,
    ChatGeneration,
    CompletionGeneration,
    Dataset,
    DatasetExperiment,
    DatasetExperimentItem,
    DatasetItem,
    Filter,
    Generation,
    GenerationMessage,
    OrderBy,
    PageInfo,
    PaginatedResponse,
    Prompt,
    PromptRollout,
    ProviderSettings,
    Score,
    ScoreDict,
    Step,
    StepDict,
    StepType,
    Thread,
    User,
)

__all__ = [
    "PROMPT_CACHE",
    "Flow",
    "Operation",
    "PromptCache",
    "Upload",
    "jsonable",
]

T = TypeVar("T")
_D = TypeVar("_D")

STRIPPED_BINARY = "STRIPPED_BINARY_DATA"
_STEP_TYPES = frozenset(t.value for t in StepType)
_SCORE_TYPES = frozenset({"HUMAN", "CODE", "AI"})


# --------------------------------------------------------------------------- request types


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation(Generic[T]):
    """One request to the Literal API and how to read its answer.

    Exactly one of ``query`` (GraphQL, POST ``{base}/api/graphql``) or ``path`` (REST,
    POST ``{base}/api{path}`` with ``body``) is set. ``decode`` receives the whole JSON
    answer (``{"data": ...}``) after the client has checked it for errors. ``timeout``
    overrides the client's default when set.
    """

    description: str
    decode: Callable[[Any], T]
    query: str | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None
    body: Mapping[str, Any] | None = None
    timeout: float | None = None
    prepared: bool = False
    """True when ``variables`` are already JSON-ready (see :func:`jsonable`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload:
    """The upload of file bytes to a signed URL (no API headers, no JSON). Result: ``None``."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None = None
    files: Mapping[str, Any] | None = None


Request = Operation[Any] | Upload
Flow = Generator[Request, Any, T]
"""A multi-request operation: yields requests, receives each result, returns the value."""


def _identity(response: Any) -> Any:
    return response


def raw_graphql(
    description: str,
    query: str,
    variables: Mapping[str, Any],
    timeout: float | None = None,
    decode: Callable[[Any], T] = _identity,
) -> Operation[T]:
    """An arbitrary GraphQL document (``make_gql_call`` / ``gql_helper``)."""
    return Operation(
        description=description, query=query, variables=variables, decode=decode, timeout=timeout
    )


def raw_rest(subpath: str, body: Mapping[str, Any]) -> Operation[Any]:
    """An arbitrary REST call under ``{base}/api`` (``make_rest_call``)."""
    if not subpath.startswith("/"):
        subpath = "/" + subpath
    return Operation(description=f"call {subpath}", path=subpath, body=body, decode=_identity)


# --------------------------------------------------------------------------- encoding


def _fallback(value: Any) -> Any:
    """Turn a value JSON cannot carry into something readable (never raise)."""
    dump = getattr(value, "model_dump", None)  # pydantic v2 models, as the reference does
    if callable(dump):
        try:
            dumped = dump()
        except Exception:
            dumped = None
        if isinstance(dumped, dict):
            return {k: v for k, v in dumped.items() if v is not None}
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def enc_hook(value: Any) -> Any:
    """msgspec ``enc_hook``: last line of defence, any unknown value becomes a string."""
    return _fallback(value)


_BINARY = (bytes, bytearray, memoryview)
_BINARY_TYPES = frozenset(_BINARY)
_CONTAINERS = frozenset({dict, list, tuple})


def _strip_binary(value: Any) -> Any:
    """Replace binary values inside fresh builtins (dicts/lists mutated in place)."""
    kind = type(value)
    if kind in _BINARY_TYPES:
        return STRIPPED_BINARY
    if kind is dict:
        for key, item in value.items():
            item_kind = type(item)
            if item_kind in _CONTAINERS or item_kind in _BINARY_TYPES:
                value[key] = _strip_binary(item)
    elif kind is list:
        for index, item in enumerate(value):
            item_kind = type(item)
            if item_kind in _CONTAINERS or item_kind in _BINARY_TYPES:
                value[index] = _strip_binary(item)
    elif kind is tuple:
        return _strip_binary(list(value))
    return value


def jsonable(value: Any) -> Any:
    """Make ``value`` JSON-ready, mirroring the reference's variable pre-processing.

    ``bytes`` anywhere become ``"STRIPPED_BINARY_DATA"`` (``prepare_variables``); sets
    become lists; values msgspec knows (datetimes, UUIDs, enums, dataclasses, Structs) take
    their msgspec form; pydantic models are dumped without ``None`` entries; anything else
    becomes ``str(value)`` (``ensure_values_serializable``). Never raises. One pass in C
    (``msgspec.to_builtins``, which copies), then one in-place sweep for binary values.
    """
    try:
        converted = msgspec.to_builtins(
            value, builtin_types=_BINARY, enc_hook=_fallback, str_keys=True
        )
    except Exception:  # e.g. unhashable or exotic keys somewhere inside
        converted = _slow_jsonable(value)
    return _strip_binary(converted)


def _slow_jsonable(value: Any) -> Any:
    """Item by item, for the rare values msgspec refuses as a whole."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return _fallback(value)


# --------------------------------------------------------------------------- validation


def _check_score_value(value: Any, name: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"score {name!r}: value must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"Value {value} for score {name!r} is not finite (NaN or infinite)")


def check_scores(scores: Sequence[Mapping[str, Any]]) -> None:
    """Reject scores whose value is missing, not a number, NaN or infinite."""
    for score in scores:
        if not isinstance(score, Mapping):
            raise TypeError(f"a score must be a dict (ScoreDict), got {type(score).__name__}")
        _check_score_value(score.get("value"), score.get("name"))


def _check_step_type(kind: Any) -> None:
    if kind is None:
        return
    value = kind.value if isinstance(kind, StepType) else kind
    if value not in _STEP_TYPES:
        raise ValueError(
            f"unknown step type {kind!r}; expected one of {', '.join(sorted(_STEP_TYPES))}"
        )


def _check_score_type(kind: Any) -> None:
    value = getattr(kind, "value", kind)
    if value not in _SCORE_TYPES:
        raise ValueError(f"unknown score type {kind!r}; expected HUMAN, CODE or AI")


def _truthy(**values: Any) -> dict[str, Any]:
    """Variables sent "only when truthy" (list queries)."""
    return {k: v for k, v in values.items() if v}


def _not_none(**values: Any) -> dict[str, Any]:
    """None-dropped variables (absent = keep the existing value on the server)."""
    return {k: v for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------- decoders


def _root(response: Any, root: str) -> Any:
    return response["data"][root]


def _page(
    item: Callable[[dict[str, Any]], _D], root: str
) -> Callable[[Any], PaginatedResponse[_D]]:
    def decode(response: Any) -> PaginatedResponse[_D]:
        connection = _root(response, root) or {}
        page_info = connection.get("pageInfo") or {}
        return PaginatedResponse(
            page_info=PageInfo.from_dict(page_info),
            data=[item(edge["node"]) for edge in connection.get("edges") or []],
            total_count=connection.get("totalCount"),
        )

    return decode


def _one(item: Callable[[dict[str, Any]], _D], root: str) -> Callable[[Any], _D]:
    def decode(response: Any) -> _D:
        value = _root(response, root)
        if value is None:
            raise LiteralError(f"the server answered {root}: null; the object does not exist")
        return item(value)

    return decode


def _optional(item: Callable[[dict[str, Any]], _D], root: str) -> Callable[[Any], _D | None]:
    def decode(response: Any) -> _D | None:
        value = _root(response, root)
        return item(value) if value else None

    return decode


def _raw(root: str) -> Callable[[Any], Any]:
    return lambda response: _root(response, root)


def _generation(data: dict[str, Any]) -> Generation:
    return BaseGeneration.from_dict(data)


# --------------------------------------------------------------------------- users


def get_users(
    first: int | None = None,
    after: str | None = None,
    before: str | None = None,
    filters: list[Filter] | None = None,
) -> Operation[PaginatedResponse[User]]:
    return Operation(
        description="get users",
        query=gql.GET_PARTICIPANTS,
        variables=_truthy(first=first, after=after, before=before, filters=filters),
        decode=_page(User.from_dict, "participants"),
    )


def get_user(id: str | None = None, identifier: str | None = None) -> Operation[User | None]:
    if id is None and identifier is None:
        raise ValueError("get_user: either id or identifier must be provided")
    if id is not None and identifier is not None:
        raise ValueError("get_user: only one of id or identifier must be provided")
    return Operation(
        description="get user",
        query=gql.GET_PARTICIPANT,
        variables={"id": id, "identifier": identifier},
        decode=_optional(User.from_dict, "participant"),
    )


def create_user(identifier: str, metadata: dict[str, Any] | None = None) -> Operation[User]:
    return Operation(
        description="create user",
        query=gql.CREATE_PARTICIPANT,
        variables={"identifier": identifier, "metadata": metadata},
        decode=_one(User.from_dict, "createParticipant"),
    )


def update_user(
    id: str, identifier: str | None = None, metadata: dict[str, Any] | None = None
) -> Operation[User]:
    return Operation(
        description="update user",
        query=gql.UPDATE_PARTICIPANT,
        variables=_not_none(id=id, identifier=identifier, metadata=metadata),
        decode=_one(User.from_dict, "updateParticipant"),
    )


def delete_user(id: str) -> Operation[str]:
    return Operation(
        description="delete user",
        query=gql.DELETE_PARTICIPANT,
        variables={"id": id},
        decode=lambda response: _root(response, "deleteParticipant")["id"],
    )


def get_or_create_user(identifier: str, metadata: dict[str, Any] | None = None) -> Flow[User]:
    """Return the user with this identifier (unchanged), or create it."""
    user: User | None = yield get_user(identifier=identifier)
    if user:
        return user
    created: User = yield create_user(identifier, metadata)
    return created


# --------------------------------------------------------------------------- threads


def get_threads(
    first: int | None = None,
    after: str | None = None,
    before: str | None = None,
    filters: list[Filter] | None = None,
    order_by: OrderBy | None = None,
    step_types_to_keep: list[StepType] | None = None,
) -> Operation[PaginatedResponse[Thread]]:
    for kind in step_types_to_keep or ():
        _check_step_type(kind)
    return Operation(
        description="get threads",
        query=gql.GET_THREADS,
        variables=_truthy(
            first=first,
            after=after,
            before=before,
            filters=filters,
            orderBy=order_by,
            stepTypesToKeep=step_types_to_keep,
        ),
        decode=_page(Thread.from_dict, "threads"),
    )


def list_threads(
    first: int | None = None,
    after: str | None = None,
    before: str | None = None,
    filters: list[Filter] | None = None,
    order_by: OrderBy | None = None,
) -> Operation[PaginatedResponse[Thread]]:
    return Operation(
        description="get threads",
        query=gql.LIST_THREADS,
        variables=_truthy(
            first=first, after=after, before=before, filters=filters, orderBy=order_by
        ),
        decode=_page(Thread.from_dict, "threads"),
    )


def get_thread(id: str) -> Operation[Thread | None]:
    return Operation(
        description="get thread",
        query=gql.GET_THREAD,
        variables={"id": id},
        decode=_optional(Thread.from_dict, "threadDetail"),
    )


def create_thread(
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    participant_id: str | None = None,
    tags: list[str] | None = None,
) -> Operation[Thread]:
    return Operation(
        description="create thread",
        query=gql.CREATE_THREAD,
        variables={
            "name": name,
            "metadata": metadata,
            "participantId": participant_id,
            "tags": tags,
        },
        decode=_one(Thread.from_dict, "createThread"),
    )


def upsert_thread(
    id: str,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    participant_id: str | None = None,
    tags: list[str] | None = None,
) -> Operation[Thread]:
    return Operation(
        description="upsert thread",
        query=gql.UPSERT_THREAD,
        variables=_not_none(
            id=id, name=name, metadata=metadata, participantId=participant_id, tags=tags
        ),
        decode=_one(Thread.from_dict, "upsertThread"),
    )


def update_thread(
    id: str,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    participant_id: str | None = None,
    tags: list[str] | None = None,
) -> Operation[Thread]:
    return Operation(
        description="update thread",
        query=gql.UPDATE_THREAD,
        variables=_not_none(
            id=id, name=name, metadata=metadata, participantId=participant_id, tags=tags
        ),
        decode=_one(Thread.from_dict, "updateThread"),
    )


def delete_thread(id: str) -> Operation[bool]:
    return Operation(
        description="delete thread",
        query=gql.DELETE_THREAD,
        variables={"thread_id": id},
        decode=lambda response: bool(_root(response, "deleteThread")),
    )


# --------------------------------------------------------------------------- scores


def get_scores(
    first: int | None = None,
    after: str | None = None,
    before: str | None = None,
    filters: list[Filter] | None = None,
    order_by: OrderBy | None = None,
) -> Operation[PaginatedResponse[Score]]:
    return Operation(
        description="get scores",
        query=gql.GET_SCORES,
        variables=_truthy(
            first=first, after=after, before=before, filters=filters, orderBy=order_by
        ),
        decode=_page(Score.from_dict, "scores"),
    )


def create_scores(scores: Sequence[ScoreDict]) -> Operation[list[Score]]:
    """Create many scores in one request (aliases ``score_0``...); every key of each dict
    travels as ``{key}_{i}``, ``None`` included, as the reference does.

    The answer selects only ``id name type value label comment scorer``; the other fields
    of the returned scores (``stepId``, ``datasetExperimentItemId``, ``tags``) are filled
    from what was sent.
    """
    check_scores(scores)
    for score in scores:
        _check_score_type(score.get("type"))
    sent = [dict(score) for score in scores]
    variables = {f"{k}_{i}": v for i, score in enumerate(sent) for k, v in score.items()}

    def decode(response: Any) -> list[Score]:
        created = list((response.get("data") or {}).values())
        return [
            Score.from_dict({**given, **{k: v for k, v in answer.items() if v is not None}})
            for given, answer in zip(sent, created, strict=False)
        ]

    return Operation(
        description="create scores",
        query=gql.create_scores_document(len(scores)),
        variables=variables,
        decode=decode,
    )


def create_score(
    name: str,
    value: float,
    type: str,
    step_id: str | None = None,
    dataset_experiment_item_id: str | None = None,
    comment: str | None = None,
    tags: list[str] | None = None,
) -> Operation[Score]:
    _check_score_value(value, name)
    _check_score_type(type)
    return Operation(
        description="create score",
        query=gql.CREATE_SCORE,
        variables={
            "name": name,
            "type": type,
            "value": value,
            "stepId": step_id,
            "datasetExperimentItemId": dataset_experiment_item_id,
            "comment": comment,
            "tags": tags,
        },
        decode=_one(Score.from_dict, "createScore"),
    )


def update_score(id: str, update_params: Mapping[str, Any]) -> Operation[Score]:
    if "value" in update_params:
        _check_score_value(update_params["value"], id)
    return Operation(
        description="update score",
        query=gql.UPDATE_SCORE,
        variables={"id": id, **update_params},
        decode=_one(Score.from_dict, "updateScore"),
    )


def delete_score(id: str) -> Operation[dict[str, Any]]:
    return Operation(
        description="delete score",
        query=gql.DELETE_SCORE,
        variables={"id": id},
        decode=_raw("deleteScore"),
    )


# --------------------------------------------------------------------------- attachments


_NO_UPLOAD: dict[str, str | None] = {"object_key": None, "url": None}


def upload_file(
    content: bytes | str,
    thread_id: str | None = None,
    mime: str | None = "application/octet-stream",
) -> Flow[dict[str, Any]]:
    """Sign an upload, then send the bytes; ``{"object_key", "url"}`` (both None on failure).

    Like the reference, HTTP failures of either request are not raised: they yield the
    ``None`` pair (and ``create_attachment`` turns that into an error). The signing body
    carries ``threadId`` only when a thread id is given (the sync reference's behaviour).
    """
    file_name = str(uuid.uuid4())
    body: dict[str, Any] = {"fileName": file_name, "contentType": mime}
    if thread_id:
        body["threadId"] = thread_id
    try:
        signed: dict[str, Any] = yield Operation(
            description="sign upload url", path="/upload/file", body=body, decode=_identity
        )
    except HTTPStatusError:
        return dict(_NO_UPLOAD)
    method = "put" if "put" in signed else "post"
    spec: dict[str, Any] = signed.get(method) or {}
    url = spec.get("url")
    if not url:
        raise LiteralError(
            "Failed to upload file: the signing answer has no upload url; check the server's "
            "/api/upload/file endpoint"
        )
    fields: dict[str, Any] = spec.get("fields") or {}
    data = content.encode() if isinstance(content, str) else content
    if spec.get("uploadType", "multipart") == "raw":
        upload = Upload(method=method, url=url, headers=spec.get("headers") or {}, content=data)
    else:
        files: dict[str, Any] = {name: (None, value) for name, value in fields.items()}
        files["file"] = (file_name, data, mime)
        upload = Upload(method=method, url=url, headers=spec.get("headers") or {}, files=files)
    try:
        yield upload
    except HTTPStatusError:
        return dict(_NO_UPLOAD)
    return {"object_key": fields.get("key"), "url": signed.get("signedUrl")}


def create_attachment(
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
) -> Flow[Attachment]:
    """Upload ``content`` (or the file at ``path``) if given, then create the attachment."""
    if not step_id:
        raise ValueError("No step_id provided and no active step found.")
    if not content and not url and not path:
        raise ValueError("Either content, path or attachment url must be provided")
    if content and path:
        raise ValueError("Only one of content and path must be provided")
    if url and (content or path):
        raise ValueError("Only one of content, path and attachment url must be provided")
    if path:
        with open(path, "rb") as handle:
            content = handle.read()
        name = name or path.split("/")[-1]
        mime = mime or mimetypes.guess_type(path)[0] or "application/octet-stream"
    if not name:
        raise ValueError("Attachment name must be provided")
    variables: dict[str, Any] = {
        "metadata": metadata,
        "mime": mime,
        "name": name,
        "objectKey": object_key,
        "stepId": step_id,
        "threadId": thread_id,
        "url": url,
        "id": id,
    }
    if content:
        uploaded: dict[str, Any] = yield from upload_file(content, thread_id, mime)
        if uploaded["object_key"] is None or uploaded["url"] is None:
            raise LiteralError(
                "Failed to upload file: the server refused to sign or store it; check the "
                "server logs and that uploads are enabled"
            )
        if uploaded["object_key"]:
            variables["objectKey"] = uploaded["object_key"]
        else:
            variables["url"] = uploaded["url"]
    attachment: Attachment = yield Operation(
        description="create attachment",
        query=gql.CREATE_ATTACHMENT,
        variables=variables,
        decode=_one(Attachment.from_dict, "createAttachment"),
    )
    return attachment


def update_attachment(id: str, update_params: Mapping[str, Any]) -> Operation[Attachment]:
    return Operation(
        description="update attachment",
        query=gql.UPDATE_ATTACHMENT,
        variables={"id": id, **update_params},
        decode=_one(Attachment.from_dict, "updateAttachment"),
    )


def get_attachment(id: str) -> Operation[Attachment | None]:
    return Operation(
        description="get attachment",
        query=gql.GET_ATTACHMENT,
        variables={"id": id},
        decode=_optional(Attachment.from_dict, "attachment"),
    )


def delete_attachment(id: str) -> Operation[dict[str, Any]]:
    return Operation(
        description="delete attachment",
        query=gql.DELETE_ATTACHMENT,
        variables={"id": id},
        decode=_raw("deleteAttachment"),
    )


# --------------------------------------------------------------------------- steps


def create_step(
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
) -> Operation[Step]:
    """Create a step (the server picks the id).

    Wire parity: like the reference, the root-run id travels as ``root_run_id`` (snake
    case), which the document does not declare, so the server never sees it.
    """
    _check_step_type(type)
    return Operation(
        description="create step",
        query=gql.CREATE_STEP,
        variables={
            "threadId": thread_id,
            "type": type,
            "startTime": start_time,
            "endTime": end_time,
            "input": input,
            "output": output,
            "metadata": metadata,
            "parentId": parent_id,
            "name": name,
            "tags": tags,
            "root_run_id": root_run_id,
        },
        decode=_one(Step.from_dict, "createStep"),
    )


def update_step(
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
) -> Operation[Step]:
    _check_step_type(type)
    return Operation(
        description="update step",
        query=gql.UPDATE_STEP,
        variables={
            "id": id,
            "type": type,
            "input": input,
            "output": output,
            "metadata": metadata,
            "name": name,
            "tags": tags,
            "startTime": start_time,
            "endTime": end_time,
            "parentId": parent_id,
        },
        decode=_one(Step.from_dict, "updateStep"),
    )


def get_steps(
    first: int | None = None,
    after: str | None = None,
    before: str | None = None,
    filters: list[Filter] | None = None,
    order_by: OrderBy | None = None,
) -> Operation[PaginatedResponse[Step]]:
    return Operation(
        description="get steps",
        query=gql.GET_STEPS,
        variables=_truthy(
            first=first, after=after, before=before, filters=filters, orderBy=order_by
        ),
        decode=_page(Step.from_dict, "steps"),
    )


def get_step(id: str) -> Operation[Step | None]:
    return Operation(
        description="get step",
        query=gql.GET_STEP,
        variables={"id": id},
        decode=_optional(Step.from_dict, "step"),
    )


def delete_step(id: str) -> Operation[bool]:
    return Operation(
        description="delete step",
        query=gql.DELETE_STEP,
        variables={"id": id},
        decode=lambda response: bool(_root(response, "deleteStep")),
    )


def _generation_payload(generation: Any) -> dict[str, Any]:
    if isinstance(generation, ChatGeneration | CompletionGeneration):
        payload: dict[str, Any] = generation.to_dict()
    elif isinstance(generation, Mapping):
        payload = dict(generation)
    else:
        raise TypeError(
            "a generation must be a ChatGeneration, CompletionGeneration or dict, got "
            f"{type(generation).__name__}"
        )
    if payload.get("id") is None:
        payload.pop("id", None)
    kind = payload.get("type")
    if kind not in ("CHAT", "COMPLETION"):
        raise ValueError(f"generation type must be CHAT or COMPLETION, got {kind!r}")
    return payload


def step_payload(step: Step | StepDict | Mapping[str, Any]) -> dict[str, Any]:
    """The ingest form of one step (``Step`` object or dict), JSON-ready, ``None`` dropped.

    ``input``/``output``/``metadata`` values JSON cannot carry become strings (bytes become
    ``"STRIPPED_BINARY_DATA"``); the caller's step is never mutated.
    """
    if isinstance(step, Step):
        raw: dict[str, Any] = jsonable(step)
        raw.pop("environment", None)
        raw.pop("createdAt", None)
        generation = raw.get("generation")
        if isinstance(generation, dict) and generation.get("id") is None:
            generation.pop("id", None)
    elif isinstance(step, Mapping):
        raw = dict(step)
        if raw.get("generation") is not None:
            raw["generation"] = _generation_payload(raw["generation"])
        raw = jsonable(raw)
    else:
        raise TypeError(f"send_steps expects Step objects or dicts, got {type(step).__name__}")
    if not raw.get("id"):
        raise ValueError("every step sent with send_steps needs an id")
    _check_step_type(raw.get("type"))
    for score in raw.get("scores") or ():
        if isinstance(score, Mapping):
            _check_score_value(score.get("value"), score.get("name"))
    return {k: v for k, v in raw.items() if v is not None}


def send_steps(steps: Sequence[Step | StepDict | Mapping[str, Any]]) -> Operation[dict[str, Any]]:
    """Ingest a batch of steps in one ``AddStep`` mutation (aliases ``step0``...).

    Returns the raw answer (``{"data": {"step0": {"ok": ..., "message": ...}, ...}}``); if
    any alias answers ``ok: false`` the client raises :class:`GraphQLError` whose
    ``failures`` name the failing aliases.
    """
    if isinstance(steps, Step | Mapping):
        raise TypeError("send_steps expects a list of steps, not a single step")
    if not steps:
        raise ValueError("send_steps needs at least one step")
    variables: dict[str, Any] = {}
    for i, step in enumerate(steps):
        for key, value in step_payload(step).items():
            variables[f"{key}_{i}"] = value
    return Operation(
        description="send steps",
        query=gql.add_steps_document(len(steps)),
        variables=variables,
        decode=_identity,
        prepared=True,
    )


# --------------------------------------------------------------------------- generations


def get_generations(
    first: int | None = None,
    after: str | None = None,
    before: str | None = None,
    filters: list[Filter] | None = None,
    order_by: OrderBy | None = None,
) -> Operation[PaginatedResponse[Generation]]:
    return Operation(
        description="get generations",
        query=gql.GET_GENERATIONS,
        variables=_truthy(
            first=first, after=after, before=before, filters=filters, orderBy=order_by
        ),
        decode=_page(_generation, "generations"),
    )


def create_generation(generation: Generation) -> Operation[Generation]:
    return Operation(
        description="create generation",
        query=gql.CREATE_GENERATION,
        variables={"generation": jsonable(_generation_payload(generation))},
        decode=_one(_generation, "createGeneration"),
    )


# --------------------------------------------------------------------------- datasets


def create_dataset(
    name: str,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    type: str = "key_value",
) -> Operation[Dataset]:
    if getattr(type, "value", type) not in ("key_value", "generation"):
        raise ValueError(f"unknown dataset type {type!r}; expected key_value or generation")
    return Operation(
        description="create dataset",
        query=gql.CREATE_DATASET,
        variables={"name": name, "description": description, "metadata": metadata, "type": type},
        decode=_one(Dataset.from_dict, "createDataset"),
    )


def _dataset_export(response: Any) -> Dataset | None:
    data = response.get("data") if isinstance(response, dict) else None
    if data is None:
        return None
    if not isinstance(data.get("items", []), list):
        raise LiteralError("Dataset items should be an array; the server answer is malformed")
    return Dataset.from_dict(data)


def get_dataset(id: str | None = None, name: str | None = None) -> Operation[Dataset | None]:
    if not id and not name:
        raise ValueError("get_dataset: id or name must be provided")
    return Operation(
        description="get dataset",
        path="/export/dataset",
        body=_truthy(id=id, name=name),
        decode=_dataset_export,
    )


def update_dataset(
    id: str,
    name: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Operation[Dataset]:
    return Operation(
        description="update dataset",
        query=gql.UPDATE_DATASET,
        variables=_not_none(id=id, name=name, description=description, metadata=metadata),
        decode=_one(Dataset.from_dict, "updateDataset"),
    )


def delete_dataset(id: str) -> Operation[Dataset]:
    return Operation(
        description="delete dataset",
        query=gql.DELETE_DATASET,
        variables={"id": id},
        decode=_one(Dataset.from_dict, "deleteDataset"),
    )


def create_dataset_item(
    dataset_id: str,
    input: dict[str, Any],
    expected_output: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Operation[DatasetItem]:
    return Operation(
        description="create dataset item",
        query=gql.CREATE_DATASET_ITEM,
        variables={
            "datasetId": dataset_id,
            "input": input,
            "expectedOutput": expected_output,
            "metadata": metadata,
        },
        decode=_one(DatasetItem.from_dict, "createDatasetItem"),
    )


def get_dataset_item(id: str) -> Operation[DatasetItem | None]:
    return Operation(
        description="get dataset item",
        query=gql.GET_DATASET_ITEM,
        variables={"id": id},
        decode=_optional(DatasetItem.from_dict, "datasetItem"),
    )


def delete_dataset_item(id: str) -> Operation[DatasetItem]:
    return Operation(
        description="delete dataset item",
        query=gql.DELETE_DATASET_ITEM,
        variables={"id": id},
        decode=_one(DatasetItem.from_dict, "deleteDatasetItem"),
    )


def add_step_to_dataset(
    dataset_id: str, step_id: str, metadata: dict[str, Any] | None = None
) -> Operation[DatasetItem]:
    return Operation(
        description="add step to dataset",
        query=gql.ADD_STEP_TO_DATASET,
        variables={"datasetId": dataset_id, "stepId": step_id, "metadata": metadata},
        decode=_one(DatasetItem.from_dict, "addStepToDataset"),
    )


def add_generation_to_dataset(
    dataset_id: str, generation_id: str, metadata: dict[str, Any] | None = None
) -> Operation[DatasetItem]:
    return Operation(
        description="add generation to dataset",
        query=gql.ADD_GENERATION_TO_DATASET,
        variables={"datasetId": dataset_id, "generationId": generation_id, "metadata": metadata},
        decode=_one(DatasetItem.from_dict, "addGenerationToDataset"),
    )


# --------------------------------------------------------------------------- experiments


def create_experiment(
    name: str,
    dataset_id: str | None = None,
    prompt_variant_id: str | None = None,
    params: dict[str, Any] | None = None,
) -> Operation[DatasetExperiment]:
    return Operation(
        description="create dataset experiment",
        query=gql.CREATE_EXPERIMENT,
        variables={
            "datasetId": dataset_id,
            "name": name,
            "promptExperimentId": prompt_variant_id,
            "params": params,
        },
        decode=_one(DatasetExperiment.from_dict, "createDatasetExperiment"),
    )


def create_experiment_item(experiment_item: DatasetExperimentItem) -> Flow[DatasetExperimentItem]:
    """Create the item, then its scores (linked to the new item) in one ``CreateScores``.

    Unlike the reference, no ``CreateScores`` request is sent when there are no scores (the
    reference sends an invalid empty document then).
    """
    if not isinstance(experiment_item, DatasetExperimentItem):
        raise TypeError(
            f"create_experiment_item expects a DatasetExperimentItem, got "
            f"{type(experiment_item).__name__}"
        )
    check_scores(experiment_item.scores)
    item: DatasetExperimentItem = yield Operation(
        description="create dataset experiment item",
        query=gql.CREATE_EXPERIMENT_ITEM,
        variables={
            "experimentRunId": experiment_item.experiment_run_id,
            "datasetExperimentId": experiment_item.dataset_experiment_id,
            "datasetItemId": experiment_item.dataset_item_id,
            "input": experiment_item.input,
            "output": experiment_item.output,
        },
        decode=_one(DatasetExperimentItem.from_dict, "createDatasetExperimentItem"),
    )
    scores: list[ScoreDict] = [dict(score) for score in experiment_item.scores]  # type: ignore[misc]
    for score in scores:
        score["datasetExperimentItemId"] = item.id
    created: list[Score] = (yield create_scores(scores)) if scores else []
    item.scores = [score.to_dict() for score in created]  # type: ignore[misc]
    return item


# --------------------------------------------------------------------------- prompts


class PromptCache:
    """Process-wide prompt cache behind ``get_prompt``'s fallback (id, name, name-version)."""

    def __init__(self) -> None:
        self._prompts: dict[str, Prompt] = {}

    def get(self, key: str) -> Prompt | None:
        return self._prompts.get(key)

    def put(self, prompt: Prompt) -> None:
        self._prompts[prompt.id] = prompt
        self._prompts[prompt.name] = prompt
        self._prompts[f"{prompt.name}-{prompt.version}"] = prompt

    def clear(self) -> None:
        self._prompts.clear()


PROMPT_CACHE = PromptCache()


def prompt_cache_key(id: str | None, name: str | None, version: int | None) -> str:
    """The reference's lookup key: ``id``, else ``"{name}-{version}"`` (truthy version),
    else ``name``."""
    if id:
        return id
    if name and version:
        return f"{name}-{version}"
    if name:
        return name
    raise ValueError("get_prompt: at least the `id` or the `name` must be provided")


def get_or_create_prompt_lineage(
    name: str, description: str | None = None
) -> Operation[dict[str, Any]]:
    return Operation(
        description="create prompt lineage",
        query=gql.CREATE_PROMPT_LINEAGE,
        variables={"name": name, "description": description},
        decode=_raw("createPromptLineage"),
    )


def _prompt(response: Any, root: str) -> Prompt:
    value = _root(response, root)
    if not value:
        raise LiteralError(
            f"Prompt not found ({root} is null); check the id, name and version, or create "
            "it with get_or_create_prompt"
        )
    return Prompt.from_dict(value)


def get_or_create_prompt(
    name: str,
    template_messages: list[GenerationMessage],
    settings: ProviderSettings | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> Flow[Prompt]:
    """Get or create the lineage ``name``, then get or create the version with these
    messages, settings and tools."""
    lineage: dict[str, Any] = yield get_or_create_prompt_lineage(name)
    prompt: Prompt = yield Operation(
        description="create prompt version",
        query=gql.CREATE_PROMPT_VERSION,
        variables={
            "lineageId": lineage["id"],
            "templateMessages": template_messages,
            "settings": settings,
            "tools": tools,
        },
        decode=lambda response: _prompt(response, "createPromptVersion"),
    )
    return prompt


def get_prompt(
    id: str | None = None, name: str | None = None, version: int | None = None
) -> Flow[Prompt]:
    """Fetch a prompt version; on any failure fall back to the process-wide cache."""
    if not (id or name):
        raise ValueError("get_prompt: at least the `id` or the `name` must be provided")
    cached = PROMPT_CACHE.get(prompt_cache_key(id, name, version))
    try:
        prompt: Prompt = yield Operation(
            description="get prompt",
            query=gql.GET_PROMPT_VERSION,
            variables={"id": id, "name": name, "version": version},
            decode=lambda response: _prompt(response, "promptVersion"),
            timeout=1.0 if cached else None,
        )
    except LiteralError:
        if cached is not None:
            return cached
        raise
    PROMPT_CACHE.put(prompt)
    return prompt


def create_prompt_variant(
    name: str,
    template_messages: list[GenerationMessage],
    settings: ProviderSettings | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> Flow[str | None]:
    """Create a prompt variant (experiment) from the lineage ``name``; returns its id."""
    lineage: dict[str, Any] | None = yield Operation(
        description="get prompt lineage",
        query=gql.GET_PROMPT_LINEAGE,
        variables={"name": name},
        decode=_raw("promptLineage"),
    )
    variant_id: str | None = yield Operation(
        description="create prompt variant",
        query=gql.CREATE_PROMPT_VARIANT,
        variables={
            "fromLineageId": lineage["id"] if lineage else None,
            "templateMessages": template_messages,
            "settings": settings,
            "tools": tools,
        },
        decode=lambda response: (_root(response, "createPromptExperiment") or {}).get("id"),
    )
    return variant_id


def get_prompt_ab_testing(name: str) -> Operation[list[PromptRollout]]:
    return Operation(
        description="get prompt A/B testing",
        query=gql.GET_PROMPT_AB_TESTING,
        variables={"lineageName": name},
        decode=lambda response: [
            edge["node"]
            for edge in (_root(response, "promptLineageRollout") or {}).get("edges", [])
        ],
    )


def update_prompt_ab_testing(name: str, rollouts: list[PromptRollout]) -> Operation[dict[str, Any]]:
    return Operation(
        description="update prompt A/B testing",
        query=gql.UPDATE_PROMPT_AB_TESTING,
        variables={"name": name, "rollouts": rollouts},
        decode=_raw("updatePromptLineageRollout"),
    )


# --------------------------------------------------------------------------- misc


def get_my_project_id() -> Operation[str]:
    return Operation(
        description="get my project id",
        path="/my-project",
        body={},
        decode=lambda response: response["projectId"],
    )
