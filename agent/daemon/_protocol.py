"""The daemon's wire protocol: event and control messages, framing, and error classification.

Two framings share one set of messages (see ``docs/daemon-protocol.md``):

* **NDJSON**: one JSON object per line. Chosen when the first byte of a connection is not
  :data:`MAGIC`'s first byte (NUL), so ``echo '{"type":"step","name":"x"}' | nc -U sock``
  works.
* **Binary**: the connection starts with the 4-byte :data:`MAGIC`; then every message is a
  4-byte big-endian length followed by a msgpack body. Events travel in :class:`Batch`
  frames (many events per frame, optional acknowledgement).

Every message is a tagged-union Struct (``"type"`` is the tag), decoded by one decoder built
once per framing, and dispatched with ``match`` by the server.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

import msgspec

from agent._models import (
    Attachment,
    ChatGeneration,
    CompletionGeneration,
    Score,
    ScoreType,
    Step,
    StepType,
    Thread,
    new_id,
)

__all__ = [
    "HEADER",
    "MAGIC",
    "Ack",
    "Batch",
    "ErrorReply",
    "Event",
    "Flush",
    "Flushed",
    "GenerationEvent",
    "Ping",
    "Pong",
    "Reply",
    "Request",
    "ScoreEvent",
    "Status",
    "StatusReply",
    "StepEvent",
    "Sync",
    "ThreadEvent",
    "classify_error",
    "decode_reply_json",
    "decode_reply_msgpack",
    "encode_frame",
    "encode_json_line",
    "event_index",
    "event_to_item",
    "events_to_dicts",
    "fast_step_batch",
]

#: First bytes of a binary connection: NUL (never starts a JSON line), "LA", version 1.
MAGIC: Final = b"\x00LA\x01"
#: The frame header: payload length, unsigned 32-bit big-endian.
HEADER: Final = struct.Struct(">I")


class _Message(msgspec.Struct, tag_field="type", kw_only=True, rename="camel", omit_defaults=True):
    """Base of every message: the ``type`` field names the message, fields are camelCase."""


# --------------------------------------------------------------------------- events


class StepEvent(_Message, tag="step"):
    """A step. Its kind (``run``, ``tool``, ``llm``...) travels as ``stepType``."""

    id: str | None = None
    name: str | None = None
    step_type: StepType | None = msgspec.field(default=None, name="stepType")
    thread_id: str | None = None
    parent_id: str | None = None
    root_run_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    error: str | None = None
    input: Any = None
    output: Any = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    generation: ChatGeneration | CompletionGeneration | None = None
    scores: list[Score] | None = None
    attachments: list[Attachment] | None = None


class GenerationEvent(_Message, tag="generation"):
    """An LLM call: stored as an ``llm`` step carrying ``generation`` (tagged CHAT/COMPLETION)."""

    generation: ChatGeneration | CompletionGeneration
    id: str | None = None
    name: str | None = None
    thread_id: str | None = None
    parent_id: str | None = None
    root_run_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    error: str | None = None
    input: Any = None
    output: Any = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None


class ScoreEvent(_Message, tag="score"):
    """A score on a step or a dataset experiment item. Its kind travels as ``scoreType``."""

    name: str
    value: float
    score_type: ScoreType = msgspec.field(default=ScoreType.HUMAN, name="scoreType")
    id: str | None = None
    step_id: str | None = None
    dataset_experiment_item_id: str | None = None
    comment: str | None = None
    tags: list[str] | None = None
    label: str | None = None


class ThreadEvent(_Message, tag="thread"):
    """A thread upsert (name, metadata, tags, participant)."""

    id: str
    name: str | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    participant_id: str | None = None
    participant_identifier: str | None = None


Event = StepEvent | GenerationEvent | ScoreEvent | ThreadEvent

# --------------------------------------------------------------------------- requests


class Batch(_Message, tag="batch"):
    """Binary framing: many events in one frame. ``ack`` asks for an :class:`Ack` reply."""

    events: Sequence[Event]  # decoded as a list
    seq: int = 0
    ack: bool = False


class Sync(_Message, tag="sync"):
    """NDJSON framing: ask for an :class:`Ack` covering every event sent before it."""

    id: int = 0


class Status(_Message, tag="status"):
    """Ask for the daemon's counters, queue depth, spool and backend state."""


class Flush(_Message, tag="flush"):
    """Ask the daemon to deliver (or spool) what it holds, waiting up to ``timeout`` s."""

    timeout: float = 10.0


class Ping(_Message, tag="ping"):
    """Liveness check; answered with :class:`Pong`."""


Request = Event | Batch | Sync | Status | Flush | Ping

# --------------------------------------------------------------------------- replies


class Ack(_Message, tag="ack"):
    """Events accepted (in memory, or on disk in ``disk`` mode) for a batch or a sync."""

    seq: int = 0
    accepted: int = 0
    rejected: int = 0
    durable: bool = False


class ErrorReply(_Message, tag="error"):
    """Something was rejected: ``line`` (NDJSON) or ``frame`` (binary) says where."""

    code: str
    reason: str
    line: int | None = None
    frame: int | None = None
    index: int | None = None
    seq: int | None = None


class StatusReply(_Message, tag="status"):
    """The daemon's state: its own counters and the pipeline's statistics."""

    daemon: dict[str, Any] = msgspec.field(default_factory=dict)
    pipeline: dict[str, Any] = msgspec.field(default_factory=dict)


class Flushed(_Message, tag="flushed"):
    """Result of a :class:`Flush`."""

    delivered: int = 0
    spooled: int = 0
    pending: int = 0
    timed_out: bool = False


class Pong(_Message, tag="pong"):
    """Answer to :class:`Ping`."""

    version: int = 1


Reply = Ack | ErrorReply | StatusReply | Flushed | Pong

# --------------------------------------------------------------------------- codecs

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_json_reply_decoder: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)
_msgpack_reply_decoder: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)


def encode_json_line(message: msgspec.Struct) -> bytes:
    """A message as one NDJSON line (newline included)."""
    return _json_encoder.encode(message) + b"\n"


def encode_frame(message: msgspec.Struct) -> bytes:
    """A message as one binary frame (length prefix included)."""
    body = _msgpack_encoder.encode(message)
    return HEADER.pack(len(body)) + body


def decode_reply_json(line: bytes) -> Reply:
    """Decode a reply line read from an NDJSON connection."""
    return _json_reply_decoder.decode(line)


def decode_reply_msgpack(body: bytes) -> Reply:
    """Decode the body of a reply frame read from a binary connection."""
    return _msgpack_reply_decoder.decode(body)


# --------------------------------------------------------------------------- errors

_TYPE_PATH = re.compile(r"at `\$(?:\.events\[\d+\])?\.type`$")
_EVENT_INDEX = re.compile(r"at `\$\.events\[(\d+)\]")


def classify_error(exc: Exception) -> str:
    """The counter name for a decode failure: invalid_json/msgpack, unknown_type, invalid_field."""
    message = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return "malformed"
    if _TYPE_PATH.search(message) or "missing required field `type`" in message:
        return "unknown_type"
    return "invalid_field"


def event_index(exc: Exception) -> int | None:
    """For a batch that failed validation, the index of the first bad event (if known)."""
    found = _EVENT_INDEX.search(str(exc))
    return int(found.group(1)) if found else None


# --------------------------------------------------------------------------- conversion


def event_to_item(event: Event) -> Step | Score | Thread:
    """The data-model object an event stands for (what the pipeline enqueues)."""
    match event:
        case StepEvent():
            return Step(
                id=event.id or new_id(),
                name=event.name,
                type=event.step_type or StepType.UNDEFINED,
                thread_id=event.thread_id,
                parent_id=event.parent_id,
                root_run_id=event.root_run_id,
                start_time=event.start_time,
                end_time=event.end_time,
                error=event.error,
                input=event.input,
                output=event.output,
                metadata=event.metadata if event.metadata is not None else {},
                tags=event.tags,
                generation=event.generation,
                scores=event.scores or [],
                attachments=event.attachments or [],
            )
        case GenerationEvent():
            return Step(
                id=event.id or new_id(),
                name=event.name or event.generation.model or "generation",
                type=StepType.LLM,
                thread_id=event.thread_id,
                parent_id=event.parent_id,
                root_run_id=event.root_run_id,
                start_time=event.start_time,
                end_time=event.end_time,
                error=event.error,
                input=event.input,
                output=event.output,
                metadata=event.metadata if event.metadata is not None else {},
                tags=event.tags,
                generation=event.generation,
            )
        case ScoreEvent():
            return Score(
                id=event.id or new_id(),
                name=event.name,
                type=event.score_type,
                value=event.value,
                step_id=event.step_id,
                dataset_experiment_item_id=event.dataset_experiment_item_id,
                comment=event.comment,
                tags=event.tags,
                label=event.label,
            )
        case ThreadEvent():
            return Thread(
                id=event.id,
                name=event.name,
                metadata=event.metadata if event.metadata is not None else {},
                tags=event.tags if event.tags is not None else [],
                participant_id=event.participant_id,
                participant_identifier=event.participant_identifier,
            )


def events_to_dicts(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The pipeline's plain-dict form of many events at once (the daemon's fast path).

    Steps and generations become step dicts (``StepDict``); scores and threads carry the
    pipeline's ``"__kind__"`` marker. One C-level ``to_builtins`` call does the bulk.
    """
    out: list[dict[str, Any]] = msgspec.to_builtins(events)
    for data in out:
        kind = data.pop("type")
        if kind == "step":
            data["type"] = data.pop("stepType", StepType.UNDEFINED.value)
        elif kind == "generation":
            data["type"] = StepType.LLM.value
            if "name" not in data:
                data["name"] = data["generation"].get("model") or "generation"
        elif kind == "score":
            data["type"] = data.pop("scoreType", ScoreType.HUMAN.value)
            data["__kind__"] = "score"
        else:
            data["__kind__"] = "thread"
            continue
        if "id" not in data:
            data["id"] = new_id()
    return out


# --------------------------------------------------------------------------- fast path


class _StepFields(TypedDict, total=False):
    """:class:`StepEvent` as a TypedDict: the same keys and the same types, decoded to a dict."""

    type: Literal["step"]
    id: str | None
    name: str | None
    stepType: StepType | None
    threadId: str | None
    parentId: str | None
    rootRunId: str | None
    startTime: str | None
    endTime: str | None
    error: str | None
    input: Any
    output: Any
    metadata: dict[str, Any] | None
    tags: list[str] | None
    generation: ChatGeneration | CompletionGeneration | None
    scores: list[Score] | None
    attachments: list[Attachment] | None


class _StepBatch(TypedDict):
    type: Literal["batch"]
    events: list[_StepFields]
    seq: NotRequired[int]
    ack: NotRequired[bool]


_fast_decoder: msgspec.msgpack.Decoder[_StepBatch] = msgspec.msgpack.Decoder(_StepBatch)
_STRUCT_VALUED: Final = ("generation", "scores", "attachments")


def fast_step_batch(body: bytes) -> tuple[list[dict[str, Any]], int, bool] | None:
    """A binary batch made only of steps, straight to pipeline dicts: (items, seq, ack).

    None when the frame is anything else (or is invalid): the caller then takes the general
    path, which accepts the same frames and names the errors. This path validates exactly
    as :class:`StepEvent` does but builds the dicts while decoding (no Struct round trip).
    """
    try:
        batch = _fast_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    items: list[dict[str, Any]] = batch["events"]  # type: ignore[assignment]
    undefined = StepType.UNDEFINED
    for data in items:  # the daemon's hottest loop: few calls per event
        data["type"] = data.pop("stepType", None) or undefined
        if data.get("id") is None:
            data["id"] = new_id()
        if "generation" in data or "scores" in data or "attachments" in data:
            _struct_valued_to_builtins(data)
    return items, batch.get("seq", 0), batch.get("ack", False)


def _struct_valued_to_builtins(data: dict[str, Any]) -> None:
    for key in _STRUCT_VALUED:
        value = data.get(key)
        if value is not None:
            data[key] = msgspec.to_builtins(value)
        elif key in data:
            del data[key]
