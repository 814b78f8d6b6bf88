# ruff: noqa: E501 - the mapping table in the docstring is a markdown table, one row a line
"""An OpenTelemetry-shaped tracer whose spans become Literal steps.

Code written against ``opentelemetry.trace`` runs unchanged with ``from agent import trace``
(or ``import agent.trace as trace``) in place of ``from opentelemetry import trace``:
``get_tracer``, ``start_as_current_span`` (context manager and decorator), ``start_span``,
``use_span``, ``get_current_span``, ``set_span_in_context``, ``INVALID_SPAN``, and on spans
``set_attribute(s)``, ``add_event``, ``record_exception``, ``set_status`` (``Status`` /
``StatusCode``), ``update_name``, ``end``, ``is_recording``, ``get_span_context``;
``SpanKind``, ``format_trace_id`` / ``format_span_id``. No OpenTelemetry package is imported.
Teams already running the OpenTelemetry SDK use :mod:`agent.trace.otel` instead: an
exporter that feeds the same mapping.

Where spans go: ``set_tracer_provider(TracerProvider(client=literal_client))`` shares a
:class:`~agent.LiteralClient`'s pipeline; ``TracerProvider(sink=...)`` any sink; the default
provider starts a pipeline from the configuration (``LITERAL_API_KEY``...) on the first span.

Mapping of a finished span to a step (one function, :func:`agent.trace._mapping.to_step`):

| Span | Step |
| --- | --- |
| trace id, span id | ``id`` = UUID-shaped: high 64 bits of the trace id + the span id (hex) |
| name (``update_name``) | ``name``; attribute ``literal.name`` overrides |
| start / end time | ``start_time`` / ``end_time`` (ISO 8601, UTC, ``Z``) |
| parent span | ``parent_id`` = the parent span's step id; a span opened inside a ``client.step`` (no parent span) gets that step as parent |
| local root span (no parent) | type ``run`` (unless chosen otherwise); its step id is the ``root_run_id`` of every descendant |
| inside ``client.run`` / ``client.thread`` | ``root_run_id`` / ``thread_id`` of the hook's context |
| attribute ``literal.thread_id`` | ``thread_id`` of this span and of its descendants |
| attribute ``literal.step_type`` | ``type`` (``run``, ``tool``, ``llm``, ``embedding``, ``retrieval``, ``rerank``, ``undefined``, ``*_message``) |
| attribute ``literal.tags`` (str sequence or JSON list) | ``tags`` |
| attribute ``literal.metadata`` (JSON object) | merged into ``metadata`` |
| ``literal.parent_id`` / ``literal.root_run_id`` (also ``traceloop.association.properties.literal.*``) | override ``parent_id`` / ``root_run_id`` |
| other attributes | ``metadata`` (same keys; ``gen_ai.*`` scalars included) |
| span kind other than ``INTERNAL`` | ``metadata["otel.span_kind"]`` (``server``, ``client``...) |
| events (``add_event``, ``record_exception``) | ``metadata["otel.events"]``: ``[{name, time, attributes}]`` |
| first recorded exception | ``error`` = ``"<Type>: <message>"`` |
| status ``ERROR`` (no exception recorded) | ``error`` = the description, else ``"Unknown error"`` |
| ``gen_ai.system`` / ``gen_ai.provider.name`` / ``gen_ai.request.model`` present | type ``llm`` (``gen_ai.operation.name`` ``embeddings`` -> ``embedding``, ``execute_tool`` -> ``tool``) with a ``ChatGeneration``: |
| ``gen_ai.provider.name`` or ``gen_ai.system`` | ``generation.provider`` |
| ``gen_ai.response.model`` (else ``gen_ai.request.model``) | ``generation.model`` (request model also in ``settings["model"]``) |
| ``gen_ai.request.temperature`` / ``max_tokens`` / ``top_p`` / ``top_k`` / ``frequency_penalty`` / ``presence_penalty`` / ``stop_sequences`` / ``seed`` | ``generation.settings`` |
| ``gen_ai.usage.input_tokens`` / ``output_tokens`` (or ``prompt_tokens`` / ``completion_tokens``) | ``input_token_count`` / ``output_token_count``; ``token_count`` = sum (or ``llm.usage.total_tokens``) |
| ``gen_ai.prompt.{i}.role`` / ``.content`` (or JSON ``gen_ai.input.messages``, ``gen_ai.system_instructions``) | ``generation.messages``; step ``input = {"content": messages}`` |
| ``gen_ai.completion.{i}.*`` (or JSON ``gen_ai.output.messages``) | last one: ``generation.message_completion``, step ``output = {"content": ...}``; earlier ones appended to ``messages`` |
| end - start | ``generation.duration`` (s); ``token_throughput_in_s`` = output tokens / duration |
| ``gen_ai.operation.name == "text_completion"`` (or ``llm.request.type == "completion"``) | a ``CompletionGeneration`` (``prompt`` / ``completion``) instead |

Message roles outside Literal's five (``developer``, ``model``...) are mapped
(``developer`` -> ``system``, ``model`` -> ``assistant``, unknown -> ``user``).

Bad input never raises: attribute values of unsupported types are converted to ``str``
(``None`` values and empty keys are dropped); ending a span twice or using it after
``end`` is ignored. Both are counted in :func:`stats` and logged (rate-limited).
"""

from __future__ import annotations

from agent.trace._span import INVALID_SPAN, TRACE_STATS, NonRecordingSpan, Span
from agent.trace._tracer import (
    Context,
    NoOpTracer,
    NoOpTracerProvider,
    Tracer,
    TracerProvider,
    get_current_span,
    get_tracer,
    get_tracer_provider,
    set_span_in_context,
    set_tracer_provider,
    use_span,
)
from agent.trace._types import (
    INVALID_SPAN_CONTEXT,
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

__all__ = [
    "INVALID_SPAN",
    "INVALID_SPAN_CONTEXT",
    "INVALID_SPAN_ID",
    "INVALID_TRACE_ID",
    "Context",
    "Link",
    "NoOpTracer",
    "NoOpTracerProvider",
    "NonRecordingSpan",
    "Span",
    "SpanContext",
    "SpanKind",
    "Status",
    "StatusCode",
    "TraceFlags",
    "Tracer",
    "TracerProvider",
    "format_span_id",
    "format_trace_id",
    "get_current_span",
    "get_tracer",
    "get_tracer_provider",
    "set_span_in_context",
    "set_tracer_provider",
    "stats",
    "use_span",
]


def stats() -> dict[str, int]:
    """Counters of the tracer's repairs and drops, by reason (``attribute_converted``...)."""
    return TRACE_STATS.snapshot()
