"""A small request handler instrumented against the OpenTelemetry tracing API.

Written for ``opentelemetry.trace`` and nothing else. ``tests/test_trace_otel.py`` runs this
exact file twice: as it is (real OpenTelemetry SDK) and with the marked import line swapped
for ``from agent import trace`` — the only change.
"""

from __future__ import annotations

import asyncio

from opentelemetry import trace  # TRACE-IMPORT: the only line that differs between runs

tracer = trace.get_tracer("otel_shaped_app", "1.0.0")


class ToolError(Exception):
    """Raised by the flaky tool."""


@tracer.start_as_current_span("retrieve")
def retrieve(query: str) -> list[str]:
    span = trace.get_current_span()
    span.set_attribute("retrieval.query", query)
    span.set_attribute("retrieval.top_k", 2)
    span.add_event("cache_miss", {"key": query})
    return [f"doc about {query}", "another doc"]


@tracer.start_as_current_span("rerank", attributes={"literal.step_type": "rerank"})
async def rerank(docs: list[str]) -> list[str]:
    await asyncio.sleep(0)
    trace.get_current_span().set_attribute("rerank.kept", len(docs))
    return sorted(docs)


def chat(question: str, docs: list[str]) -> str:
    with tracer.start_as_current_span("chat gpt-4o-mini", kind=trace.SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "gen_ai.system": "openai",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 64,
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": "Answer from the documents.",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": question,
            }
        )
        answer = f"{question} -> {docs[0]}"
        span.set_attributes(
            {
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": answer,
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 7,
            }
        )
        return answer


def flaky_tool() -> None:
    with tracer.start_as_current_span("flaky_tool", attributes={"literal.step_type": "tool"}):
        raise ToolError("tool unavailable")


def handle(question: str, thread_id: str) -> dict[str, object]:
    with tracer.start_as_current_span(
        "handle_request",
        kind=trace.SpanKind.SERVER,
        attributes={"literal.thread_id": thread_id, "literal.tags": ["demo"], "app.version": "1"},
    ) as root:
        docs = asyncio.run(rerank(retrieve(question)))
        answer = chat(question, docs)
        try:
            flaky_tool()
        except ToolError:
            root.add_event("tool_failed", {"tool": "flaky_tool"})
        manual = tracer.start_span("post_process")
        with trace.use_span(manual, end_on_exit=True):
            trace.get_current_span().set_attribute("answer.chars", len(answer))
        rejected = tracer.start_span("policy_check")
        rejected.set_status(trace.Status(trace.StatusCode.ERROR, "rejected by policy"))
        rejected.end()
        root.set_status(trace.StatusCode.OK)
        root.update_name(f"handle_request {question}")
        context = root.get_span_context()
        return {
            "answer": answer,
            "trace_id": trace.format_trace_id(context.trace_id),
            "span_id": trace.format_span_id(context.span_id),
            "valid": context.is_valid,
            "recording": root.is_recording(),
            "outside": trace.get_current_span() is not trace.INVALID_SPAN,
        }
