"""Tracer, tracer provider and the current-span context of :mod:`agent.trace`."""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from typing import TYPE_CHECKING, Any, TypeVar

from agent._context import state_var
from agent._hook_ids import _HEX3, SpanIds, span_step_id
from agent._hook_sink import SinkHolder, SinkLike
from agent.trace._mapping import to_step
from agent.trace._span import (
    INVALID_SPAN,
    TRACE_STATS,
    CurrentSpanScope,
    NonRecordingSpan,
    Span,
    _step_id_prefix,
    current_span_var,
)
from agent.trace._types import (
    Attributes,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

if TYPE_CHECKING:
    from types import TracebackType

    from agent._client import BaseLiteralClient

__all__ = [
    "Context",
    "NoOpTracer",
    "NoOpTracerProvider",
    "Tracer",
    "TracerProvider",
    "get_current_span",
    "get_tracer",
    "get_tracer_provider",
    "set_span_in_context",
    "set_tracer_provider",
    "use_span",
]

F = TypeVar("F", bound=Callable[..., Any])
AnySpan = Span | NonRecordingSpan

_CURRENT_SPAN_KEY = "current-span"
_current_span = current_span_var
_MASK48 = 0xFFFF_FFFF_FFFF
_INTERNAL = SpanKind.INTERNAL
_new_span = object.__new__
_time_ns = time.time_ns

# (counter >> 12, step-id text up to the counter's last three hex digits) of this process's
# spans: _seq_step_id(seq) == block[1] + _HEX3[seq & 0xFFF]; forgotten in a forked child
# (SpanIds draws new per-process bits there)
_id_block: tuple[int, str] = (-1, "")


def _new_id_block(high: int) -> tuple[int, str]:
    return high, f"{SpanIds.step_id_prefix or _step_id_prefix()}{high:09x}"


def _forget_id_block() -> None:
    global _id_block
    _id_block = (-1, "")


os.register_at_fork(after_in_child=_forget_id_block)


class Context(dict[str, Any]):
    """An explicit context (``context=`` of ``start_span``): carries a parent span."""


def get_current_span(context: Mapping[str, Any] | None = None) -> AnySpan:
    """The span current in ``context`` (or in this execution context), else ``INVALID_SPAN``."""
    if context is not None:
        span = context.get(_CURRENT_SPAN_KEY)
        return span if isinstance(span, Span | NonRecordingSpan) else INVALID_SPAN
    return _current_span.get() or INVALID_SPAN


def set_span_in_context(span: AnySpan, context: Mapping[str, Any] | None = None) -> Context:
    """A new context with ``span`` as its current span."""
    out = Context(context or {})
    out[_CURRENT_SPAN_KEY] = span
    return out


def _set_current(span: AnySpan) -> Token[AnySpan | None]:
    return _current_span.set(span)


def _reset_current(token: Token[AnySpan | None]) -> None:
    try:
        _current_span.reset(token)
    except ValueError:  # exited in another context (generator, callback): best effort
        _current_span.set(token.old_value if token.old_value is not Token.MISSING else None)


def _end_on_error(
    span: AnySpan, exc: BaseException, record_exception: bool, set_status: bool
) -> None:
    if not isinstance(span, Span) or not span.is_recording():
        return
    if record_exception:
        span.record_exception(exc, escaped=True)
    if set_status:
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class use_span:  # noqa: N801 - the OpenTelemetry API spells it as a function
    """Make ``span`` current for a block (``with use_span(span, end_on_exit=True):``)."""

    __slots__ = ("_end", "_record", "_set_status", "_span", "_token")

    def __init__(
        self,
        span: AnySpan,
        end_on_exit: bool = False,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> None:
        self._span = span
        self._end = end_on_exit
        self._record = record_exception
        self._set_status = set_status_on_exception
        self._token: Token[AnySpan | None] | None = None

    def __enter__(self) -> AnySpan:
        self._token = _set_current(self._span)
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _reset_current(self._token)
        if exc is not None:
            _end_on_error(self._span, exc, self._record, self._set_status)
        if self._end:
            self._span.end()


class _CurrentSpanScope:
    """``start_as_current_span(...)``: a context manager, and a decorator (one span a call)."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end_on_exit",
        "_kind",
        "_links",
        "_name",
        "_record",
        "_set_status",
        "_span",
        "_start_time",
        "_token",
        "_tracer",
    )

    def __init__(  # noqa: PLR0917 - mirrors start_as_current_span's parameters
        self,
        tracer: Tracer,
        name: str,
        context: Mapping[str, Any] | None,
        kind: SpanKind,
        attributes: Attributes,
        links: Sequence[Link] | None,
        start_time: int | None,
        record_exception: bool,
        set_status_on_exception: bool,
        end_on_exit: bool,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._kind = kind
        self._attributes = attributes
        self._links = links
        self._start_time = start_time
        self._record = record_exception
        self._set_status = set_status_on_exception
        self._end_on_exit = end_on_exit
        self._span: AnySpan = INVALID_SPAN
        self._token: Token[AnySpan | None] | None = None

    def __enter__(self) -> AnySpan:
        span = self._span = self._tracer.start_span(
            self._name, self._context, self._kind, self._attributes, self._links,
            self._start_time,
        )
        self._token = _current_span.set(span)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            _reset_current(token)
        span = self._span
        if exc is not None:
            _end_on_error(span, exc, self._record, self._set_status)
        if self._end_on_exit:
            span.end()

    def _fresh(self) -> _CurrentSpanScope:
        return _CurrentSpanScope(
            self._tracer, self._name, self._context, self._kind, self._attributes,
            self._links, self._start_time, self._record, self._set_status, self._end_on_exit,
        )

    def __call__(self, func: F) -> F:
        """Use as a decorator: each call of ``func`` runs in a new current span."""
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return sync_wrapper  # type: ignore[return-value]


class Tracer:
    """Creates spans (``start_span``, ``start_as_current_span``), like an OpenTelemetry tracer."""

    __slots__ = ("_provider", "instrumentation_scope", "version")

    def __init__(
        self, provider: TracerProvider | None, name: str, version: str | None = None
    ) -> None:
        self._provider = provider
        self.instrumentation_scope = name
        self.version = version

    def start_span(  # noqa: PLR0917 - the OpenTelemetry signature
        self,
        name: str,
        context: Mapping[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> AnySpan:
        """Start a span (not made current); its parent is the current span or ``context``'s."""
        provider = self._provider or get_tracer_provider()
        if provider.disabled:
            return INVALID_SPAN
        try:
            parent = get_current_span(context) if context is not None else _current_span.get()
            parent_span: Span | None = None
            parent_context: SpanContext | None = None
            if type(parent) is Span:
                parent_span = parent
                trace_id = parent._trace_id
                tseq = parent._tseq
            elif parent is not None and parent.get_span_context().is_valid:
                parent_context = parent.get_span_context()
                trace_id = parent_context.trace_id
                tseq = 0
            else:  # a new trace: its id derives from its root span's counter
                trace_id = 0
                tseq = -1
            seq = next(SpanIds.counter) & _MASK48
            if kind is _INTERNAL and parent_context is None and start_time is None and not links:
                # Span.__init__ inlined for the common case (a fifth of a span's start cost)
                span = _new_span(Span)
                span.name = name
                span._trace_id = trace_id
                span._tseq = seq if tseq < 0 else tseq
                span._seq = seq
                span._parent = parent_span
                span._provider = provider
                span._kind = kind
                span._ended = False
                span._scope = None
                span._token = None
                span.attributes = {}
                span.end_ns = 0
                span.start_ns = _time_ns()
                if attributes:
                    span.set_attributes(attributes)
            else:
                span = Span(
                    name,
                    trace_id,
                    seq if tseq < 0 else tseq,
                    seq,
                    parent_span,
                    parent_context,
                    provider,
                    kind,
                    attributes,
                    links,
                    start_time,
                )
            if parent_span is None and parent_context is None:
                steps, thread, root = state_var.get()
                if steps:
                    step = steps[-1]
                    span._hook = (
                        step.id,
                        step.thread_id or (thread.id if thread else None),
                        step.root_run_id or (root.id if root else None),
                    )
                elif thread is not None:
                    span._hook = (None, thread.id, None)
            return span
        except Exception as exc:
            TRACE_STATS.count("span_start_failed", error=repr(exc))
            return INVALID_SPAN

    def start_as_current_span(  # noqa: PLR0917 - the OpenTelemetry signature
        self,
        name: str,
        context: Mapping[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> CurrentSpanScope:
        """A span made current for a ``with`` block, or for each call of a decorated function.

        The returned span is its own context manager (entering makes it current, leaving
        restores the previous span and ends it): one object per span on the hot path.
        """
        span = self.start_span(name, context, kind, attributes, links, start_time)
        if type(span) is Span:
            if (
                context is None
                and attributes is None
                and record_exception
                and set_status_on_exception
                and end_on_exit
            ):
                span._scope = self  # the defaults: no tuple to build
            else:
                span._scope = (
                    self, context, attributes, record_exception, set_status_on_exception,
                    end_on_exit,
                )
            return span
        return _CurrentSpanScope(
            self, name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception, end_on_exit,
        )


class TracerProvider:
    """Where spans go: the pipeline of a :class:`~agent.LiteralClient`, a sink, or (default)
    a pipeline of its own started from the configuration on the first span."""

    def __init__(
        self,
        client: BaseLiteralClient | None = None,
        sink: SinkLike | None = None,
        *,
        disabled: bool = False,
    ) -> None:
        if client is not None:
            self._holder = client._holder
        elif sink is not None:
            self._holder = SinkHolder(None, sink=sink, stats=TRACE_STATS)
        else:
            self._holder = SinkHolder(_default_pipeline, stats=TRACE_STATS)
        self.disabled = disabled or self._holder.disabled

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Tracer:
        return Tracer(self, instrumenting_module_name, instrumenting_library_version)

    def _on_end(self, span: Span) -> None:
        global _id_block
        try:
            parent = span._parent
            thread_id: str | None = None
            if parent is not None:
                parent_id: str | None = parent.step_id
                root_id: str | None = parent.children_root_id
                is_local_root = False
            elif span._parent_context is not None:
                parent_id = span_step_id(span.trace_id_value, span._parent_context.span_id)
                root_id = None
                is_local_root = False
            else:
                hook = span._hook
                if hook is None:
                    parent_id = root_id = thread_id = None
                    is_local_root = True
                else:
                    parent_id, thread_id, root_id = hook
                    is_local_root = parent_id is None
            if parent is not None:
                thread_id = parent.thread_id
            step_id = span._step_id
            if step_id is None:
                if span._tseq:  # this process's trace: only the span counter to format
                    # (not cached on the span: that would give it a __dict__); the text
                    # up to the counter's low 12 bits is cached per 4096 spans
                    seq = span._seq
                    block = _id_block
                    if block[0] != seq >> 12:
                        block = _id_block = _new_id_block(seq >> 12)
                    step_id = block[1] + _HEX3[seq & 0xFFF]
                else:
                    step_id = span.step_id
            step = to_step(span, step_id, parent_id, root_id, thread_id, is_local_root, span._error)
        except Exception as exc:
            TRACE_STATS.count("span_mapping_failed", error=repr(exc))
            return
        # SinkHolder.enqueue, inlined for the started sink (one call less per span)
        holder = self._holder
        put = holder._put
        if put is None:
            holder.enqueue(step)
            return
        try:
            if put(step):
                return
        except Exception as err:
            holder.stats.count("sink_error", error=repr(err))
            return
        holder.stats.count("enqueue_rejected")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until the spans ended so far are delivered (or spooled)."""
        result = self._holder.flush(timeout_millis / 1000)
        return not getattr(result, "timed_out", False)

    def shutdown(self) -> None:
        """Flush and stop this provider's own pipeline (a client's is left to the client)."""
        if self._holder.stats is TRACE_STATS and self._holder._factory is not None:
            self._holder.shutdown()
        else:
            self._holder.flush()


class NoOpTracerProvider(TracerProvider):
    """A provider whose tracers record nothing (spans are non-recording)."""

    def __init__(self) -> None:
        super().__init__(sink=_NULL_SINK, disabled=True)


class NoOpTracer(Tracer):
    """A tracer that records nothing."""

    def __init__(self) -> None:
        super().__init__(NoOpTracerProvider(), "noop")


class _NullSink:
    def enqueue(self, item: Any) -> bool:
        return False

    def flush(self, timeout: float | None = None) -> None:
        return None

    def shutdown(self, timeout: float | None = None) -> None:
        return None


_NULL_SINK = _NullSink()


def _default_pipeline() -> SinkLike:
    from agent.pipeline import Pipeline

    return Pipeline()


_provider_lock = threading.Lock()
_global_provider: TracerProvider | None = None


def get_tracer_provider() -> TracerProvider:
    """The global provider (created on first use, with a pipeline from the configuration)."""
    global _global_provider
    provider = _global_provider
    if provider is None:
        with _provider_lock:
            if _global_provider is None:
                _global_provider = TracerProvider()
            provider = _global_provider
    return provider


def set_tracer_provider(tracer_provider: TracerProvider) -> None:
    """Set the global provider. Unlike OpenTelemetry's, it may be replaced later."""
    global _global_provider
    with _provider_lock:
        _global_provider = tracer_provider


def get_tracer(
    instrumenting_module_name: str,
    instrumenting_library_version: str | None = None,
    tracer_provider: TracerProvider | None = None,
    schema_url: str | None = None,
    attributes: Attributes = None,
) -> Tracer:
    """A tracer; without ``tracer_provider`` it follows the global provider at each span."""
    return Tracer(tracer_provider, instrumenting_module_name, instrumenting_library_version)


