"""Value types of the tracing API, shaped like ``opentelemetry.trace``'s (no OTel import)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "INVALID_SPAN_CONTEXT",
    "INVALID_SPAN_ID",
    "INVALID_TRACE_ID",
    "AttributeValue",
    "Attributes",
    "Link",
    "SpanContext",
    "SpanKind",
    "Status",
    "StatusCode",
    "TraceFlags",
    "format_span_id",
    "format_trace_id",
]

AttributeValue = (
    str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)
Attributes = Mapping[str, AttributeValue] | None

INVALID_SPAN_ID = 0
INVALID_TRACE_ID = 0


class SpanKind(enum.Enum):
    """The role of a span in a trace (values as in OpenTelemetry)."""

    INTERNAL = 0
    SERVER = 1
    CLIENT = 2
    PRODUCER = 3
    CONSUMER = 4


class StatusCode(enum.Enum):
    """The status of a finished span (values as in OpenTelemetry)."""

    UNSET = 0
    OK = 1
    ERROR = 2


class Status:
    """A status code and, for ``ERROR`` only, a description (as in OpenTelemetry)."""

    __slots__ = ("_description", "_status_code")

    def __init__(
        self, status_code: StatusCode = StatusCode.UNSET, description: str | None = None
    ) -> None:
        self._status_code = status_code
        # OpenTelemetry ignores a description on a non-ERROR status; so do we.
        self._description = description if status_code is StatusCode.ERROR else None

    @property
    def status_code(self) -> StatusCode:
        return self._status_code

    @property
    def description(self) -> str | None:
        return self._description

    @property
    def is_ok(self) -> bool:
        """``True`` unless the status is ``ERROR``."""
        return self._status_code is not StatusCode.ERROR

    @property
    def is_unset(self) -> bool:
        return self._status_code is StatusCode.UNSET

    def __repr__(self) -> str:
        return f"Status({self._status_code}, {self._description!r})"


class TraceFlags(int):
    """W3C trace flags; spans of this tracer are always sampled."""

    DEFAULT = 0x00
    SAMPLED = 0x01

    @property
    def sampled(self) -> bool:
        return bool(self & TraceFlags.SAMPLED)


class SpanContext(NamedTuple):
    """The identity of a span: 128-bit trace id and 64-bit span id (ints)."""

    trace_id: int
    span_id: int
    is_remote: bool = False
    trace_flags: TraceFlags = TraceFlags(TraceFlags.SAMPLED)
    trace_state: Any = None

    @property
    def is_valid(self) -> bool:
        return self.trace_id != INVALID_TRACE_ID and self.span_id != INVALID_SPAN_ID


INVALID_SPAN_CONTEXT = SpanContext(INVALID_TRACE_ID, INVALID_SPAN_ID, False, TraceFlags(0))


class Link:
    """A link to another span (accepted for API compatibility; not sent to Literal)."""

    __slots__ = ("attributes", "context")

    def __init__(self, context: SpanContext, attributes: Attributes = None) -> None:
        self.context = context
        self.attributes = attributes


def format_trace_id(trace_id: int) -> str:
    """A trace id as 32 lowercase hex digits."""
    return f"{trace_id:032x}"


def format_span_id(span_id: int) -> str:
    """A span id as 16 lowercase hex digits."""
    return f"{span_id:016x}"
