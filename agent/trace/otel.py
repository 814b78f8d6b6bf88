"""Bridge from the real OpenTelemetry SDK: a ``SpanExporter`` whose spans become steps.

For teams already running ``opentelemetry-sdk`` (install the ``otel`` extra)::

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from agent.trace.otel import LiteralSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(LiteralSpanExporter(client=literal_client)))

Spans go through the same mapping as :mod:`agent.trace`'s (see its table) and are handed to
the pipeline (the client's, an injected sink's, or one started from the configuration).

Root runs and threads across export batches: a span's ``root_run_id`` is the step id of its
trace's local root span, and a ``literal.thread_id`` set on any span of a trace (usually the
root) applies to the whole trace. Children end, and are exported, before their root, so the
exporter holds the steps of a trace whose root it has not seen yet (bounded: ``max_pending``
steps, ``max_wait`` seconds) and releases them when the root arrives; on overflow, timeout,
``force_flush`` or ``shutdown`` they are sent without a root run id (counted as
``bridge_root_unknown``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "agent.trace.otel needs the OpenTelemetry SDK: pip install 'literal-agent[otel]'"
    ) from exc

from agent._hook_ids import span_step_id
from agent._hook_sink import SinkHolder, SinkLike
from agent._models import Step
from agent.trace._mapping import (
    ATTR_THREAD_ID,
    exception_error,
    is_special_key,
    literal_attribute,
    to_step,
)
from agent.trace._span import TRACE_STATS

if TYPE_CHECKING:
    from agent._client import BaseLiteralClient

__all__ = ["LiteralSpanExporter", "span_to_step"]


class _ReadableAdapter:
    """A finished OpenTelemetry ``ReadableSpan`` seen through the mapping's ``SpanLike``."""

    __slots__ = (
        "attributes",
        "end_ns",
        "events",
        "kind_value",
        "name",
        "plain",
        "special",
        "start_ns",
        "status_description",
        "status_value",
    )

    def __init__(self, span: ReadableSpan) -> None:
        self.name = span.name
        attributes: dict[str, Any] = dict(span.attributes or {})
        self.attributes: Mapping[str, Any] = attributes
        self.special = any(is_special_key(k) for k in attributes)
        self.start_ns = span.start_time or time.time_ns()
        self.end_ns = span.end_time or self.start_ns
        self.kind_value = int(span.kind.value)
        self.status_value = int(span.status.status_code.value)
        self.status_description = span.status.description
        self.events: Sequence[tuple[str, int, Mapping[str, Any]]] = [
            (e.name, e.timestamp or self.start_ns, dict(e.attributes or {})) for e in span.events
        ]
        self.plain = not (self.special or self.events or self.kind_value or self.status_value)


def _first_exception(span: ReadableSpan) -> str | None:
    for event in span.events:
        if event.name == "exception" and event.attributes:
            kind = event.attributes.get("exception.type")
            message = event.attributes.get("exception.message")
            if kind is not None or message is not None:
                return exception_error(kind, message)
    return None


def _is_local_root(span: ReadableSpan) -> bool:
    return span.parent is None or bool(span.parent.is_remote)


def span_to_step(
    span: ReadableSpan, *, root_run_id: str | None = None, thread_id: str | None = None
) -> Step:
    """Map one OpenTelemetry span to a step (ids derived from its span context)."""
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    return to_step(
        _ReadableAdapter(span),
        step_id=span_step_id(context.trace_id, context.span_id),
        parent_id=span_step_id(context.trace_id, parent.span_id) if parent else None,
        root_run_id=None if _is_local_root(span) else root_run_id,
        thread_id=thread_id,
        is_local_root=parent is None,
        error=_first_exception(span),
    )


class _TraceInfo:
    """What the exporter knows of one trace: its root step, its thread, the held steps."""

    __slots__ = ("pending", "root_id", "thread_id", "trace_id")

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.root_id: str | None = None
        self.thread_id: str | None = None
        self.pending: list[Step] = []


class LiteralSpanExporter(SpanExporter):
    """An OpenTelemetry ``SpanExporter`` feeding Literal steps to our pipeline."""

    def __init__(
        self,
        client: BaseLiteralClient | None = None,
        sink: SinkLike | None = None,
        *,
        max_pending: int = 10_000,
        max_wait: float = 30.0,
        max_traces: int = 10_000,
    ) -> None:
        if client is not None:
            self._holder = client._holder
            self._owns_holder = False
        elif sink is not None:
            self._holder = SinkHolder(None, sink=sink, stats=TRACE_STATS)
            self._owns_holder = False
        else:
            from agent.trace._tracer import _default_pipeline

            self._holder = SinkHolder(_default_pipeline, stats=TRACE_STATS)
            self._owns_holder = True
        self._max_pending = max_pending
        self._max_wait = max_wait
        self._max_traces = max_traces
        # every trace seen recently (LRU), and those holding steps (oldest first, with the
        # time they started waiting)
        self._traces: OrderedDict[int, _TraceInfo] = OrderedDict()
        self._waiting: OrderedDict[int, float] = OrderedDict()
        self._pending = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Map ``spans`` to steps and enqueue them (never blocks on I/O)."""
        try:
            ready = self._assemble(spans)
        except Exception as exc:
            TRACE_STATS.count("bridge_export_failed", error=repr(exc))
            return SpanExportResult.FAILURE
        for step in ready:
            self._holder.enqueue(step)
        return SpanExportResult.SUCCESS

    def _assemble(self, spans: Sequence[ReadableSpan]) -> list[Step]:
        ready: list[Step] = []
        with self._lock:
            traces = self._traces
            touched: list[_TraceInfo] = []
            for span in spans:  # learn roots and threads first: one batch often has both
                context = span.get_span_context()
                if context is None:
                    continue
                info = traces.get(context.trace_id)
                if info is None:
                    info = traces[context.trace_id] = _TraceInfo(context.trace_id)
                else:
                    traces.move_to_end(context.trace_id)
                thread = literal_attribute(span.attributes or {}, ATTR_THREAD_ID)
                if thread and info.thread_id is None:
                    info.thread_id = str(thread)
                if _is_local_root(span) and info.root_id is None:
                    info.root_id = span_step_id(context.trace_id, context.span_id)
                    touched.append(info)
            for span in spans:
                context = span.get_span_context()
                if context is None:
                    TRACE_STATS.count("bridge_span_without_context")
                    continue
                info = traces[context.trace_id]
                try:
                    step = span_to_step(span, root_run_id=info.root_id, thread_id=info.thread_id)
                except Exception as exc:
                    TRACE_STATS.count("span_mapping_failed", error=repr(exc))
                    continue
                if info.root_id is None and not _is_local_root(span):
                    info.pending.append(step)
                    self._pending += 1
                    if info.trace_id not in self._waiting:
                        self._waiting[info.trace_id] = time.monotonic()
                else:
                    ready.append(step)
            for info in touched:
                ready.extend(self._release(info))
            ready.extend(self._evict())
        return ready

    def _release(self, info: _TraceInfo, *, root_known: bool = True) -> list[Step]:
        steps, info.pending = info.pending, []
        self._waiting.pop(info.trace_id, None)
        self._pending -= len(steps)
        for step in steps:
            if step.root_run_id is None and info.root_id is not None:
                step.root_run_id = info.root_id
            if step.thread_id is None:
                step.thread_id = info.thread_id
        if steps and not root_known:
            TRACE_STATS.count("bridge_root_unknown", level="debug", steps=len(steps))
        return steps

    def _evict(self) -> list[Step]:
        """Release steps held too long or beyond ``max_pending``; forget old traces."""
        out: list[Step] = []
        traces, waiting = self._traces, self._waiting
        deadline = time.monotonic() - self._max_wait
        while waiting:
            trace_id, since = next(iter(waiting.items()))
            if since > deadline and self._pending <= self._max_pending:
                break
            out.extend(self._release(traces[trace_id], root_known=False))
        while len(traces) > self._max_traces:
            _, info = traces.popitem(last=False)
            if info.pending:
                out.extend(self._release(info, root_known=info.root_id is not None))
        return out

    def _release_all(self) -> list[Step]:
        with self._lock:
            out: list[Step] = []
            for trace_id in list(self._waiting):
                out.extend(self._release(self._traces[trace_id], root_known=False))
            return out

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send held steps, then wait for the pipeline to deliver what it has."""
        for step in self._release_all():
            self._holder.enqueue(step)
        result = self._holder.flush(timeout_millis / 1000)
        return not getattr(result, "timed_out", False)

    def shutdown(self) -> None:
        """Send held steps; stop the pipeline if this exporter started it (else flush)."""
        for step in self._release_all():
            self._holder.enqueue(step)
        if self._owns_holder:
            self._holder.shutdown()
        else:
            self._holder.flush()
