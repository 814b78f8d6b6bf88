"""Spans of :mod:`agent.trace`: recording spans that become steps when they end.

Bad input is repaired, never raised: attribute values of unsupported types are converted
to ``str`` (``None`` values, empty keys and values whose ``str()`` fails are dropped), and
using a span after ``end()`` (including a second ``end()``) is ignored. Each case is
counted in :func:`agent.trace.stats` and logged (rate-limited).
"""

from __future__ import annotations

import functools
import inspect
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from agent._hook_ids import SpanIds, span_step_id
from agent._hook_stats import HookStats
from agent.trace._mapping import ATTR_THREAD_ID, exception_error, is_special_key
from agent.trace._types import (
    INVALID_SPAN_CONTEXT,
    Attributes,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

if TYPE_CHECKING:
    from types import TracebackType

    from agent.trace._tracer import Tracer, TracerProvider

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "INVALID_SPAN",
    "TRACE_STATS",
    "CurrentSpanScope",
    "NonRecordingSpan",
    "Span",
    "current_span_var",
]

#: The current span of this execution context (``get_current_span``).
current_span_var: ContextVar[Span | NonRecordingSpan | None] = ContextVar(
    "literal_current_span", default=None
)

#: Counters of the tracer's repairs and drops (``agent.trace.stats()``).
TRACE_STATS = HookStats("agent.trace")

_PRIMITIVE = (str, bool, int, float)
_time_ns = time.time_ns
_INTERNAL = SpanKind.INTERNAL
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _clean_value(key: str, value: Any) -> Any:
    """An OpenTelemetry-valid attribute value, a str conversion, or ``None`` to drop it."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return value
    if value is None:
        TRACE_STATS.count("attribute_dropped", key=key, why="None value")
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        items = list(value)
        if all(isinstance(v, _PRIMITIVE) for v in items):
            kinds = {type(v) for v in items}
            if len(kinds) <= 1:
                return items
        TRACE_STATS.count("attribute_converted", key=key, type=kind.__name__)
        return [v if isinstance(v, str) else _to_str(v) for v in items]
    if isinstance(value, _PRIMITIVE):  # subclasses (IntEnum, str subclasses...)
        return value
    TRACE_STATS.count("attribute_converted", key=key, type=kind.__name__)
    return _to_str(value)


def _to_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class Span:
    """A span that records until :meth:`end`, then is handed to the pipeline as a step."""

    # Hot fields are slots, set for every span; cold ones are class-level defaults that a
    # span overrides in its (lazily created) __dict__ only when it uses them: a plain span
    # costs ten assignments, not twenty-five.
    __slots__ = (
        "__dict__",
        "_ended",
        "_kind",
        "_parent",
        "_provider",
        "_scope",
        "_seq",
        "_token",
        "_trace_id",
        "_tseq",
        "attributes",
        "end_ns",
        "name",
        "start_ns",
    )

    _context: SpanContext | None = None
    _parent_context: SpanContext | None = None
    _error: str | None = None
    _step_id: str | None = None
    # (parent step id, thread id, root run id) of the hook context a root span started in
    _hook: tuple[str | None, str | None, str | None] | None = None
    # nothing but plain attributes so far (no literal./gen_ai. keys, events, status, kind)
    plain: bool = True
    _status: Status
    links: Sequence[Link] | None = None
    kind_value: int = 0
    special: bool = False
    events: Sequence[tuple[str, int, Mapping[str, Any]]] = ()
    status_value: int = 0
    status_description: str | None = None

    def __init__(  # noqa: PLR0917 - internal; built by Tracer.start_span only
        # (which inlines this body for the common case: keep both in step)
        self,
        name: str,
        trace_id: int,
        tseq: int,
        seq: int,
        parent: Span | None,
        parent_context: SpanContext | None,
        provider: TracerProvider,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
    ) -> None:
        # Ids are kept as counters and derived when asked for (see SpanIds): span id =
        # span_top | seq; trace id = trace_id if given (remote trace) else trace_high | tseq
        # (the seq of the trace's root span).
        self.name = name
        self._trace_id = trace_id
        self._tseq = tseq
        self._seq = seq
        self._parent = parent
        self._provider = provider
        self._kind = kind
        self._ended = False
        # set by start_as_current_span: the tracer (default arguments) or (tracer, context,
        # attributes, record_exception, set_status_on_exception, end_on_exit); the span is
        # then its own context manager
        self._scope: Tracer | tuple[Any, ...] | None = None
        self._token: Token[Any] | None = None
        self.attributes: dict[str, Any] = {}
        self.end_ns = 0
        if parent_context is not None:
            self._parent_context = parent_context
        if kind is not _INTERNAL:
            self.kind_value = kind.value
            self.plain = False
        if links:
            self.links = links
        self.start_ns = start_time if start_time is not None else time.time_ns()
        if attributes:
            self.set_attributes(attributes)

    # -------------------------------------------------------- OpenTelemetry Span API

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(
                self.trace_id_value, SpanIds.span_top | self._seq, False, _SAMPLED
            )
        return context

    def is_recording(self) -> bool:
        """``True`` until the span ends."""
        return not self._ended

    def set_attribute(self, key: str, value: Any) -> None:
        if self._ended:
            TRACE_STATS.count("span_used_after_end", operation="set_attribute", span=self.name)
            return
        if not key or not isinstance(key, str):
            TRACE_STATS.count("attribute_dropped", key=repr(key), why="invalid key")
            return
        kind = type(value)
        if not (kind is str or kind is int or kind is float or kind is bool):
            value = _clean_value(key, value)
            if value is None:
                return
        self.attributes[key] = value
        if not self.special and is_special_key(key):
            self.special = True
            self.plain = False

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._ended:
            TRACE_STATS.count("span_used_after_end", operation="set_attributes", span=self.name)
            return
        try:
            items = list(attributes.items())
        except Exception:
            TRACE_STATS.count("attribute_dropped", why="attributes is not a mapping")
            return
        for key, value in items:
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._ended:
            TRACE_STATS.count("span_used_after_end", operation="add_event", span=self.name)
            return
        clean: dict[str, Any] = {}
        if attributes:
            try:
                for key, value in attributes.items():
                    cleaned = _clean_value(key, value)
                    if cleaned is not None:
                        clean[key] = cleaned
            except Exception:
                TRACE_STATS.count("attribute_dropped", why="event attributes not a mapping")
        event = (str(name), timestamp if timestamp is not None else time.time_ns(), clean)
        events = self.events
        if isinstance(events, list):
            events.append(event)
        else:
            self.events = [event]
            self.plain = False

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        """Accepted for compatibility; links are not sent to Literal."""
        if self._ended:
            TRACE_STATS.count("span_used_after_end", operation="add_link", span=self.name)

    def update_name(self, name: str) -> None:
        if self._ended:
            TRACE_STATS.count("span_used_after_end", operation="update_name", span=self.name)
            return
        self.name = str(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended:
            TRACE_STATS.count("span_used_after_end", operation="set_status", span=self.name)
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        elif not isinstance(status, Status):
            TRACE_STATS.count("invalid_status", value=repr(status))
            return
        # As in OpenTelemetry: OK is final, UNSET never overrides.
        if self._status.status_code is StatusCode.OK or status.status_code is StatusCode.UNSET:
            return
        self._status = status
        self.status_value = status.status_code.value
        self.plain = False
        self.status_description = status.description

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        if self._ended:
            TRACE_STATS.count("span_used_after_end", operation="record_exception", span=self.name)
            return
        try:
            message = str(exception)
        except Exception:
            message = f"<unprintable {type(exception).__name__}>"
        cls = type(exception)
        module = cls.__module__
        kind = cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"
        try:
            stacktrace = "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)
            )
        except Exception:
            stacktrace = ""
        event: dict[str, Any] = {
            "exception.type": kind,
            "exception.message": message,
            "exception.stacktrace": stacktrace,
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        if self._error is None:
            self._error = exception_error(kind, message)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End the span and hand its step to the pipeline; a second call is ignored."""
        if self._ended:
            TRACE_STATS.count("span_ended_twice", span=self.name)
            return
        self._ended = True
        self.end_ns = end_time if end_time is not None else _time_ns()
        self._provider._on_end(self)

    def __enter__(self) -> Span:
        if self._scope is not None:  # from start_as_current_span: make it current
            self._token = current_span_var.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._scope
        if scope is None:  # a start_span() span used in ``with``: end it (as OpenTelemetry)
            if exc is not None and not self._ended:
                self.record_exception(exc, escaped=True)
                self.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            self.end()
            return
        token = self._token
        if token is not None:
            self._token = None
            try:
                current_span_var.reset(token)
            except (ValueError, RuntimeError):  # exited in another context
                old = token.old_value
                current_span_var.set(None if old is Token.MISSING else old)
        if type(scope) is tuple:
            record, set_status, end_on_exit = scope[3], scope[4], scope[5]
        else:  # the tracer alone: default arguments
            record = set_status = end_on_exit = True
        if exc is not None and not self._ended:
            if record:
                self.record_exception(exc, escaped=True)
            if set_status:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if end_on_exit:
            if self._ended:  # ended inside the block: end(), ignoring the second call
                self.end()
                return
            self._ended = True  # end(), inlined
            self.end_ns = _time_ns()
            self._provider._on_end(self)

    def __call__(self, func: F) -> F:
        """``@tracer.start_as_current_span(...)``: a new current span for each call."""
        scope = self._scope
        if scope is None:
            raise TypeError("only start_as_current_span(...) results decorate functions")
        if type(scope) is not tuple:
            scope = (scope, None, None, True, True, True)
        self._ended = True  # the span made at decoration time is never used or sent
        tracer: Tracer = scope[0]
        name, kind, links = self.name, self._kind, self.links
        context, attributes, record, set_status, end_on_exit = scope[1:]

        def fresh() -> Any:
            return tracer.start_as_current_span(
                name, context, kind, attributes, links, None, record, set_status, end_on_exit
            )

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with fresh():
                return func(*args, **kwargs)

        return sync_wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Span({self.name!r}, step_id={self.step_id!r})"

    # -------------------------------------------------------- read side (mapping)

    @property
    def kind(self) -> SpanKind:
        return self._kind

    @property
    def parent(self) -> SpanContext | None:
        return self._parent_context

    @property
    def status(self) -> Status:
        return self._status

    @property
    def start_time(self) -> int:
        return self.start_ns

    @property
    def end_time(self) -> int | None:
        return self.end_ns or None

    @property
    def trace_id_value(self) -> int:
        """The 128-bit trace id."""
        return self._trace_id or (SpanIds.trace_high | self._tseq)

    @property
    def step_id(self) -> str:
        """The id of the step this span becomes (stable, computed once)."""
        step_id = self._step_id
        if step_id is None:
            if self._tseq:
                step_id = _seq_step_id(self._seq)
            else:
                step_id = span_step_id(self._trace_id, SpanIds.span_top | self._seq)
            self._step_id = step_id
        return step_id

    @property
    def thread_id(self) -> str | None:
        """The thread of this span: its ``literal.thread_id``, else inherited."""
        value = self.attributes.get(ATTR_THREAD_ID) if self.special else None
        if value:
            return str(value)
        if self._parent is not None:
            return self._parent.thread_id
        return self._hook[1] if self._hook is not None else None

    @property
    def children_root_id(self) -> str:
        """The root run id this span's children get: its own root run, or itself."""
        if self._parent is not None:
            return self._parent.children_root_id
        hook = self._hook
        return (hook[2] if hook is not None else None) or self.step_id


class NonRecordingSpan:
    """A span that records nothing (``INVALID_SPAN``, and what a disabled tracer returns)."""

    __slots__ = ("_context",)

    def __init__(self, context: SpanContext) -> None:
        self._context = context

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        pass

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        pass

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        pass

    def end(self, end_time: int | None = None) -> None:
        pass

    def __enter__(self) -> NonRecordingSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return f"NonRecordingSpan({self._context!r})"


class CurrentSpanScope(Protocol):
    """What ``start_as_current_span`` returns: a context manager and a decorator."""

    def __enter__(self) -> Span | NonRecordingSpan: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __call__(self, func: F) -> F: ...


_UNSET = Status(StatusCode.UNSET)
Span._status = _UNSET


def _step_id_prefix() -> str:
    """The first 24 characters of the step ids of this process's traces (cached)."""
    prefix = SpanIds.step_id_prefix = span_step_id(SpanIds.trace_high, SpanIds.span_top)[:24]
    return prefix


def _seq_step_id(seq: int) -> str:
    """The step id of a span whose ids came from :class:`SpanIds` (its counter value ``seq``).

    Equal to ``span_step_id(trace_id, span_id)``: the trace id's high half and the span id's
    top 16 bits are the process's, so only the counter is formatted.
    """
    return f"{SpanIds.step_id_prefix or _step_id_prefix()}{seq:012x}"

#: The span returned by ``get_current_span()`` outside any span.
INVALID_SPAN = NonRecordingSpan(INVALID_SPAN_CONTEXT)
