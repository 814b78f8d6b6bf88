"""agent.trace: the OpenTelemetry-shaped API, the span -> step mapping and bad input.

Spans go to a small in-memory sink (a real in-process double of the pipeline's ``Sink``);
``test_trace_otel.py`` covers the real OpenTelemetry SDK, the bridge and the collector.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agent import trace
from agent._client import LiteralClient
from agent._models import ChatGeneration, CompletionGeneration, Step, StepType
from agent.pipeline import FlushResult


class MemorySink:
    """Keeps what is enqueued."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def enqueue(self, item: Any) -> bool:
        self.items.append(item)
        return True

    def flush(self, timeout: float | None = None) -> FlushResult:
        return FlushResult(delivered=len(self.items))

    def shutdown(self, timeout: float | None = None) -> FlushResult:
        return FlushResult()

    @property
    def steps(self) -> dict[str, Step]:
        return {i.name or "": i for i in self.items if isinstance(i, Step)}


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def tracer(sink: MemorySink) -> trace.Tracer:
    return trace.TracerProvider(sink=sink).get_tracer("tests", "0.1")


@pytest.fixture
def global_provider(sink: MemorySink) -> Iterator[trace.TracerProvider]:
    previous = trace.get_tracer_provider()
    provider = trace.TracerProvider(sink=sink)
    trace.set_tracer_provider(provider)
    yield provider
    trace.set_tracer_provider(previous)


def test_nesting_ids_root_run_and_times(tracer: trace.Tracer, sink: MemorySink) -> None:
    """Parent = parent span's step; root run = the local root; ISO times."""
    with tracer.start_as_current_span("root") as root:
        assert trace.get_current_span() is root
        with tracer.start_as_current_span("child") as child:
            with tracer.start_as_current_span("grandchild"):
                pass
        assert trace.get_current_span() is root
    assert trace.get_current_span() is trace.INVALID_SPAN
    steps = sink.steps
    assert [i.name for i in sink.items] == ["grandchild", "child", "root"]
    assert steps["root"].type == StepType.RUN and steps["root"].parent_id is None
    assert steps["root"].root_run_id is None
    assert steps["child"].parent_id == steps["root"].id == steps["child"].root_run_id
    assert steps["grandchild"].parent_id == steps["child"].id
    assert steps["grandchild"].root_run_id == steps["root"].id
    assert steps["child"].type == StepType.UNDEFINED
    ctx = root.get_span_context()
    assert ctx.is_valid and child.get_span_context().trace_id == ctx.trace_id
    # the step id encodes the trace id's high half and the span id
    hexid = steps["root"].id.replace("-", "")
    assert int(hexid[16:], 16) == ctx.span_id
    assert trace.format_trace_id(ctx.trace_id)[:16] == hexid[:16]
    start, end = steps["root"].start_time or "", steps["root"].end_time or ""
    assert start.endswith("Z") and len(start) == 27 and start <= end


def test_attributes_events_status_exceptions(tracer: trace.Tracer, sink: MemorySink) -> None:
    """Attributes -> metadata; events -> otel.events; first exception -> error."""
    with pytest.raises(KeyError) as info:
        with tracer.start_as_current_span(
            "work", kind=trace.SpanKind.CONSUMER, attributes={"a": 1, "b": [1, 2]}
        ) as span:
            span.set_attributes({"c": "x", "d": 2.5, "e": True})
            span.add_event("started", {"n": 1}, timestamp=1_700_000_000_000_000_000)
            span.record_exception(ValueError("first"))
            raise KeyError("second")
    assert isinstance(info.value, KeyError)
    step = sink.steps["work"]
    assert step.metadata is not None
    assert {k: step.metadata[k] for k in "abcde"} == {
        "a": 1, "b": [1, 2], "c": "x", "d": 2.5, "e": True
    }
    assert step.metadata["otel.span_kind"] == "consumer"
    events = step.metadata["otel.events"]
    assert [e["name"] for e in events] == ["started", "exception", "exception"]
    assert events[0]["time"] == "2023-11-14T22:13:20.000000Z"
    assert events[2]["attributes"]["exception.type"] == "KeyError"
    assert step.error == "ValueError: first"
    assert isinstance(span, trace.Span) and span.status.status_code is trace.StatusCode.ERROR

    with tracer.start_as_current_span("status_only") as span:
        span.set_status(trace.Status(trace.StatusCode.ERROR, "denied"))
    with tracer.start_as_current_span("ok_is_final") as span:
        span.set_status(trace.StatusCode.OK)
        span.set_status(trace.StatusCode.ERROR, "ignored")
    with tracer.start_as_current_span("no_record", record_exception=False) as span:
        span.set_status(trace.StatusCode.ERROR)
    assert sink.steps["status_only"].error == "denied"
    assert sink.steps["ok_is_final"].error is None
    assert sink.steps["no_record"].error == "Unknown error"


def test_literal_attributes_choose_type_thread_name_tags(
    tracer: trace.Tracer, sink: MemorySink
) -> None:
    """literal.step_type / thread_id (inherited) / name / tags / metadata."""
    with tracer.start_as_current_span(
        "root",
        attributes={
            "literal.thread_id": "thread-1",
            "literal.step_type": "tool",
            "literal.name": "Renamed",
            "literal.tags": ["a", "b"],
            "literal.metadata": json.dumps({"user": "u1"}),
        },
    ):
        with tracer.start_as_current_span("child", attributes={"literal.step_type": "nope"}):
            pass
    root, child = sink.steps["Renamed"], sink.steps["child"]
    assert root.type == StepType.TOOL and root.thread_id == "thread-1"
    assert root.tags == ["a", "b"] and root.metadata == {"user": "u1"}
    assert child.thread_id == "thread-1" and child.type == StepType.UNDEFINED


def test_genai_semconv_indexed_messages(tracer: trace.Tracer, sink: MemorySink) -> None:
    """gen_ai.* attributes -> an llm step with a ChatGeneration."""
    with tracer.start_as_current_span("chat", start_time=1_000_000_000) as span:
        span.set_attributes(
            {
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-x",
                "gen_ai.response.model": "claude-x-2025",
                "gen_ai.request.temperature": 0.5,
                "gen_ai.request.max_tokens": 100,
                "gen_ai.request.top_p": 0.9,
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 4,
                "gen_ai.prompt.0.role": "developer",
                "gen_ai.prompt.0.content": "be brief",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": json.dumps([{"type": "text", "text": "hi"}]),
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "hello",
            }
        )
        span.end(end_time=3_000_000_000)
    step = sink.steps["chat"]
    assert step.type == StepType.LLM
    gen = step.generation
    assert isinstance(gen, ChatGeneration)
    assert (gen.provider, gen.model) == ("anthropic", "claude-x-2025")
    assert gen.settings == {"model": "claude-x", "temperature": 0.5, "max_tokens": 100,
                            "top_p": 0.9}
    assert (gen.input_token_count, gen.output_token_count, gen.token_count) == (10, 4, 14)
    assert gen.duration == 2.0 and gen.token_throughput_in_s == 2.0
    assert gen.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    assert gen.message_completion == {"role": "assistant", "content": "hello"}
    assert step.input == {"content": gen.messages}
    assert step.output == {"content": gen.message_completion}
    assert step.metadata is not None and "gen_ai.prompt.0.role" not in step.metadata
    assert step.metadata["gen_ai.request.model"] == "claude-x"
    assert step.to_dict()["generation"]["type"] == "CHAT"


def test_genai_json_messages_and_completion_type(tracer: trace.Tracer, sink: MemorySink) -> None:
    """gen_ai.input/output.messages (parts) and text_completion."""
    with tracer.start_as_current_span("json") as span:
        span.set_attribute("gen_ai.system", "openai")
        span.set_attribute(
            "gen_ai.input.messages",
            json.dumps([
                {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
                {"role": "assistant", "parts": [
                    {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"q": 1}}
                ]},
                {"role": "tool", "parts": [
                    {"type": "tool_call_response", "id": "c1", "response": {"t": 20}}
                ]},
            ]),
        )
        span.set_attribute(
            "gen_ai.output.messages",
            json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "20C"}],
                         "finish_reason": "stop"}]),
        )
    gen = sink.steps["json"].generation
    assert isinstance(gen, ChatGeneration) and gen.messages is not None
    assert gen.messages[0] == {"role": "user", "content": "weather?"}
    assert gen.messages[1]["tool_calls"][0]["function"] == {"name": "weather",
                                                            "arguments": '{"q": 1}'}
    assert gen.messages[2]["role"] == "tool" and gen.messages[2]["tool_call_id"] == "c1"
    assert gen.messages[2]["content"] == '{"t": 20}'
    assert gen.message_completion == {"role": "assistant", "content": "20C"}

    with tracer.start_as_current_span("completion") as span:
        span.set_attributes({
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "text_completion",
            "gen_ai.prompt.0.content": "Once",
            "gen_ai.completion.0.content": "upon",
        })
    completion = sink.steps["completion"].generation
    assert isinstance(completion, CompletionGeneration)
    assert (completion.prompt, completion.completion) == ("Once", "upon")
    with tracer.start_as_current_span("embed", attributes={
        "gen_ai.system": "openai", "gen_ai.operation.name": "embeddings"
    }):
        pass
    assert sink.steps["embed"].type == StepType.EMBEDDING


def test_bad_input_is_converted_or_dropped_and_counted(
    tracer: trace.Tracer, sink: MemorySink
) -> None:
    """Unsupported values -> str; None / bad keys dropped; use after end ignored; counted."""
    before = trace.stats()

    class Weird:
        def __str__(self) -> str:
            return "weird"

    span = tracer.start_span("bad")
    span.set_attribute("obj", Weird())
    span.set_attribute("none", None)
    span.set_attribute("", 1)
    span.set_attribute("mixed", [1, "a", Weird()])
    span.set_attribute("dict", {"a": 1})
    span.set_attributes("not a mapping")  # type: ignore[arg-type]
    span.add_event("ev", {"o": Weird(), "n": None})  # type: ignore[dict-item]
    span.set_status("bogus")  # type: ignore[arg-type]
    span.end()
    span.end()
    span.set_attribute("late", 1)
    span.add_event("late")
    span.update_name("late")
    span.record_exception(ValueError())
    span.set_status(trace.StatusCode.ERROR)
    assert not span.is_recording()
    step = sink.steps["bad"]
    assert step.metadata is not None
    assert step.metadata["obj"] == "weird" and step.metadata["mixed"] == ["1", "a", "weird"]
    assert step.metadata["dict"] == "{'a': 1}"
    assert "none" not in step.metadata and "" not in step.metadata and "late" not in step.metadata
    assert step.metadata["otel.events"][0]["attributes"] == {"o": "weird"}
    assert step.error is None and len(sink.items) == 1
    after = trace.stats()

    def delta(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    assert delta("attribute_converted") == 4 and delta("attribute_dropped") == 4
    assert delta("span_ended_twice") == 1 and delta("span_used_after_end") == 5
    assert delta("invalid_status") == 1


def test_start_span_use_span_explicit_context_and_decorators(
    tracer: trace.Tracer, sink: MemorySink
) -> None:
    """``start_span`` is not current; ``use_span``; ``context=``; decorator per call."""
    parent = tracer.start_span("parent")
    assert trace.get_current_span() is trace.INVALID_SPAN
    ctx = trace.set_span_in_context(parent)
    assert trace.get_current_span(ctx) is parent
    child = tracer.start_span("explicit_child", context=ctx)
    child.end()
    with trace.use_span(parent) as used:
        assert used is parent and trace.get_current_span() is parent
        with tracer.start_as_current_span("implicit_child"):
            pass
    assert parent.is_recording()
    with pytest.raises(RuntimeError), trace.use_span(parent, end_on_exit=True):
        raise RuntimeError("inside use_span")
    assert not parent.is_recording()

    @tracer.start_as_current_span("decorated")
    def decorated(x: int) -> int:
        return x + 1

    assert decorated(1) == 2 and decorated(2) == 3
    steps = [i for i in sink.items if isinstance(i, Step)]
    by_name = {s.name: s for s in steps}
    assert by_name["explicit_child"].parent_id == by_name["parent"].id
    assert by_name["implicit_child"].parent_id == by_name["parent"].id
    assert by_name["parent"].error == "RuntimeError: inside use_span"
    assert [s.name for s in steps].count("decorated") == 2
    assert len({s.id for s in steps}) == len(steps)

    remote = trace.NonRecordingSpan(trace.SpanContext(0xABC << 64, 0x1234, is_remote=True))
    with tracer.start_as_current_span("from_remote", context=trace.set_span_in_context(remote)):
        pass
    from_remote = next(s for s in sink.items if s.name == "from_remote")
    assert from_remote.parent_id == "00000000-0000-0abc-0000-000000001234"
    assert from_remote.type == StepType.UNDEFINED and from_remote.root_run_id is None


@pytest.mark.anyio
async def test_async_decorator_and_global_provider(
    global_provider: trace.TracerProvider, sink: MemorySink
) -> None:
    """A module-level ``get_tracer`` follows the global provider; async decorators work."""
    tracer = trace.get_tracer(__name__)

    @tracer.start_as_current_span("async_op")
    async def op() -> str:
        span = trace.get_current_span()
        assert span.is_recording()
        return span.get_span_context().span_id and "done"  # type: ignore[return-value]

    assert await op() == "done"
    assert "async_op" in sink.steps
    assert trace.get_tracer_provider() is global_provider


def test_spans_join_the_hook_context_and_client_pipeline(sink: MemorySink) -> None:
    """A span opened inside ``client.thread``/``client.run`` is parented and threaded there."""
    client = LiteralClient(api_key="k", sink=sink)
    tracer = trace.TracerProvider(client=client).get_tracer("mixed")
    with client.thread() as thread, client.run(name="hook_run") as run:
        with tracer.start_as_current_span("span_in_run"):
            with tracer.start_as_current_span("nested_span"):
                pass
    steps = sink.steps
    assert steps["span_in_run"].parent_id == run.id
    assert steps["span_in_run"].root_run_id == run.id
    assert steps["span_in_run"].thread_id == thread.id
    assert steps["span_in_run"].type == StepType.UNDEFINED
    assert steps["nested_span"].root_run_id == run.id
    assert steps["nested_span"].thread_id == thread.id


def test_disabled_provider_returns_non_recording_spans(sink: MemorySink) -> None:
    """A disabled client's provider records nothing; user code still runs."""
    client = LiteralClient(disabled=True)
    tracer = trace.TracerProvider(client=client).get_tracer("off")
    with tracer.start_as_current_span("x") as span:
        span.set_attribute("a", 1)
        assert not span.is_recording()
    assert client.sink is None
    noop = trace.NoOpTracer()
    with noop.start_as_current_span("y") as span:
        assert span is trace.INVALID_SPAN and not span.is_recording()
    assert sink.items == []


def test_no_opentelemetry_import_at_run_time() -> None:
    """Using agent.trace (and the hook) never imports opentelemetry (fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from agent import LiteralClient, trace\n"
        "class Sink:\n"
        "    def enqueue(self, item): return True\n"
        "client = LiteralClient(api_key='k', sink=Sink())\n"
        "tracer = trace.TracerProvider(client=client).get_tracer('x')\n"
        "with client.run(name='r'), tracer.start_as_current_span('s') as span:\n"
        "    span.set_attribute('gen_ai.system', 'openai')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_step_ids_match_span_ids_across_counter_blocks(
    tracer: trace.Tracer, sink: MemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A span's step id is ``span_step_id(trace_id, span_id)`` (reversible to the span id),
    also where the cached text of the span counter's high bits changes (every 4096 spans)."""
    import itertools

    from agent._hook_ids import SpanIds, span_step_id

    monkeypatch.setattr(SpanIds, "counter", itertools.count(4096 * 3 - 4))
    spans = []
    for _ in range(10):
        with tracer.start_as_current_span("x") as span:
            with tracer.start_as_current_span("child"):
                pass
        spans.append(span)
    steps = {s.id: s for s in sink.items if isinstance(s, Step)}
    assert len(steps) == 20
    for span in spans:
        ctx = span.get_span_context()
        step_id = span_step_id(ctx.trace_id, ctx.span_id)
        assert step_id in steps and steps[step_id].name == "x"
        assert int(step_id.replace("-", "")[16:], 16) == ctx.span_id
    children = [s for s in steps.values() if s.name == "child"]
    parents = {span_step_id(s.get_span_context().trace_id, s.get_span_context().span_id)
               for s in spans}
    assert {c.parent_id for c in children} == parents
