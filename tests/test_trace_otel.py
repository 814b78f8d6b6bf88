"""agent.trace against the real OpenTelemetry SDK: same app code, same mapping, real delivery.

* ``tests/otel_shaped_app.py`` is written for ``opentelemetry.trace``; it runs once as is on
  the real SDK (in-memory exporter) and once with its import line swapped for
  ``from agent import trace``. Both runs produce the same steps (the SDK's spans are mapped
  by the bridge, ours by the tracer: one mapping function).
* The bridge (``LiteralSpanExporter`` in a ``BatchSpanProcessor`` of the real SDK) and the
  tracer deliver to the real collector; the reference SDK reads the steps back.
"""

from __future__ import annotations

import json
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from literalai.api import LiteralAPI as ReferenceAPI
from literalai.observability.step import Step as ReferenceStep
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent import trace
from agent._client import LiteralClient
from agent._models import Step
from agent.pipeline import FlushResult
from agent.testing import CollectorThread
from agent.trace.otel import LiteralSpanExporter

APP = Path(__file__).with_name("otel_shaped_app.py")
OTEL_IMPORT = "from opentelemetry import trace  # TRACE-IMPORT"
AGENT_IMPORT = "from agent import trace  # TRACE-IMPORT"


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


def load_app(variant: str) -> types.ModuleType:
    """The app's source, compiled as is ("otel") or with only its import swapped ("agent")."""
    source = APP.read_text()
    assert source.count(OTEL_IMPORT) == 1
    if variant == "agent":
        changed = source.replace(OTEL_IMPORT, AGENT_IMPORT)
        diff = [
            (a, b) for a, b in zip(source.splitlines(), changed.splitlines(), strict=True) if a != b
        ]
        assert len(diff) == 1  # the import line, nothing else
        source = changed
    module = types.ModuleType(f"otel_shaped_app_{variant}")
    module.__file__ = str(APP)
    exec(compile(source, str(APP), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def otel_memory() -> InMemorySpanExporter:
    """The real SDK as the global OpenTelemetry provider, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = otel_trace.get_tracer_provider()
    if not isinstance(provider, SDKTracerProvider):
        provider = SDKTracerProvider()
        otel_trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def agent_provider() -> Iterator[MemorySink]:
    """Our global provider, delivering to memory, for one test."""
    previous = trace.get_tracer_provider()
    sink = MemorySink()
    trace.set_tracer_provider(trace.TracerProvider(sink=sink))
    yield sink
    trace.set_tracer_provider(previous)


def shape(steps: list[Step]) -> dict[str, dict[str, Any]]:
    """What must match between the two runs (ids and times differ by nature)."""
    names = {s.id: s.name for s in steps}
    out = {}
    for s in steps:
        metadata = dict(s.metadata or {})
        events = [(e["name"], sorted(e["attributes"])) for e in metadata.pop("otel.events", [])]
        gen = s.generation
        out[s.name or ""] = {
            "type": s.type,
            "parent": names.get(s.parent_id or ""),
            "root": names.get(s.root_run_id or ""),
            "thread": s.thread_id,
            "tags": s.tags,
            "error": s.error,
            "metadata": metadata,
            "events": events,
            "input": s.input,
            "output": s.output,
            "generation": None if gen is None else {
                k: v for k, v in gen.to_dict().items()
                if k not in ("duration", "tokenThroughputInSeconds")
            },
        }
    return out


def test_same_app_code_runs_on_opentelemetry_and_on_agent_trace(
    otel_memory: InMemorySpanExporter, agent_provider: MemorySink
) -> None:
    """Only the import differs; the resulting steps are the same."""
    otel_app = load_app("otel")
    agent_app = load_app("agent")
    assert agent_app.trace is trace and otel_app.trace is otel_trace

    otel_memory.clear()
    otel_result = otel_app.handle("what is up?", "thread-otel")
    agent_result = agent_app.handle("what is up?", "thread-otel")
    for result in (otel_result, agent_result):
        assert result["answer"] == "what is up? -> another doc"
        assert result["valid"] and result["recording"] and result["outside"]
        assert len(str(result["trace_id"])) == 32 and len(str(result["span_id"])) == 16

    bridged = MemorySink()
    exporter = LiteralSpanExporter(sink=bridged)
    spans = otel_memory.get_finished_spans()
    assert len(spans) == 7
    exporter.export(spans)
    exporter.force_flush()
    ours = [i for i in agent_provider.items if isinstance(i, Step)]
    theirs = [i for i in bridged.items if isinstance(i, Step)]
    a, b = shape(ours), shape(theirs)
    for key in a:
        differing = {k: (a[key][k], b[key][k]) for k in a[key] if a[key][k] != b[key][k]}
        assert not differing, (key, differing)
    assert a == b

    steps = shape(ours)
    assert set(steps) == {
        "handle_request what is up?", "retrieve", "rerank", "chat gpt-4o-mini", "flaky_tool",
        "post_process", "policy_check",
    }
    root = steps["handle_request what is up?"]
    assert root["type"] == "run" and root["thread"] == "thread-otel" and root["tags"] == ["demo"]
    assert root["metadata"] == {"app.version": "1", "otel.span_kind": "server"}
    assert root["events"] == [("tool_failed", ["tool"])]
    for name, step in steps.items():
        if step is not root:
            assert step["parent"] == step["root"] == "handle_request what is up?", name
            assert step["thread"] == "thread-otel"
    assert steps["flaky_tool"]["type"] == "tool"
    assert steps["flaky_tool"]["error"] == "ToolError: tool unavailable"
    assert steps["policy_check"]["error"] == "rejected by policy"
    assert steps["rerank"]["type"] == "rerank"
    assert steps["retrieve"]["metadata"] == {"retrieval.query": "what is up?", "retrieval.top_k": 2}
    chat = steps["chat gpt-4o-mini"]
    assert chat["type"] == "llm" and chat["generation"]["model"] == "gpt-4o-mini-2024-07-18"
    assert chat["generation"]["inputTokenCount"] == 12
    assert chat["generation"]["messageCompletion"]["content"] == "what is up? -> another doc"


def graphql(collector: CollectorThread, query: str) -> dict[str, Any]:
    response = httpx.post(
        f"{collector.url}/api/graphql",
        json={"query": query, "variables": {}},
        headers={"x-api-key": collector.api_key},
        timeout=10,
    )
    data: dict[str, Any] = response.json()["data"]
    return data


def check_trace_in_collector(
    collector: CollectorThread, thread_id: str, expected: int
) -> dict[str, ReferenceStep]:
    """Read the thread back with the reference SDK; every step under one root run."""
    fetched = ReferenceAPI(api_key=collector.api_key, url=collector.url).get_thread(id=thread_id)
    assert fetched is not None
    steps = {s.name or "": s for s in fetched.steps or []}
    assert len(steps) == expected, sorted(steps)
    roots = [s for s in steps.values() if s.parent_id is None]
    assert len(roots) == 1 and roots[0].type == "run"
    root_id = roots[0].id
    fields = " ".join(f's{i}: step(id: "{s.id}") {{ id rootRunId }}' for i, s in
                      enumerate(steps.values()))
    answer = graphql(collector, f"query {{ {fields} }}")
    root_run = {v["id"]: v["rootRunId"] for v in answer.values()}
    by_id = {s.id: s for s in steps.values()}
    for step in steps.values():
        if step.id != root_id:
            assert root_run[step.id] == root_id, step.name
            assert step.parent_id in by_id, step.name
    return steps


def test_bridge_delivers_sdk_spans_to_the_collector(collector: CollectorThread) -> None:
    """Real SDK + BatchSpanProcessor(LiteralSpanExporter): children exported before the
    root (small batches) still get the root run and the trace's thread."""
    client = LiteralClient(api_key=collector.api_key, url=collector.url)
    provider = SDKTracerProvider()
    exporter = LiteralSpanExporter(client=client)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_export_batch_size=2, schedule_delay_millis=10)
    )
    tracer = provider.get_tracer("bridge-test")
    thread_id = str(uuid.uuid4())
    with tracer.start_as_current_span("request", attributes={"literal.thread_id": thread_id}):
        for i in range(3):
            tool_attributes = {"literal.step_type": "tool"}
            with tracer.start_as_current_span(f"tool {i}", attributes=tool_attributes):
                with tracer.start_as_current_span(f"inner {i}"):
                    pass
        with tracer.start_as_current_span("llm", kind=otel_trace.SpanKind.CLIENT) as span:
            span.set_attributes({
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}]
                ),
                "gen_ai.usage.input_tokens": 1,
                "gen_ai.usage.output_tokens": 1,
            })
        with pytest.raises(ZeroDivisionError), tracer.start_as_current_span("divide"):
            _ = 1 / 0
    assert provider.force_flush(10_000)
    result = client.flush(timeout=20)
    assert result is not None and not result.timed_out
    provider.shutdown()
    client.flush_and_stop(timeout=5)

    steps = check_trace_in_collector(collector, thread_id, expected=1 + 6 + 2)
    assert steps["tool 1"].type == "tool" and steps["inner 1"].parent_id == steps["tool 1"].id
    llm = steps["llm"]
    assert llm.type == "llm" and llm.generation is not None
    assert llm.generation.model == "gpt-4o"
    assert llm.output == {"content": {"role": "assistant", "content": "hello"}}
    assert steps["divide"].error == "ZeroDivisionError: division by zero"
    assert trace.stats().get("bridge_root_unknown", 0) == 0


def test_agent_trace_app_delivers_to_the_collector(collector: CollectorThread) -> None:
    """The app on ``agent.trace`` with a client's pipeline: the whole trace arrives."""
    client = LiteralClient(api_key=collector.api_key, url=collector.url)
    previous = trace.get_tracer_provider()
    trace.set_tracer_provider(trace.TracerProvider(client=client))
    try:
        app = load_app("agent")
        thread_id = str(uuid.uuid4())
        app.handle("to the collector", thread_id)
    finally:
        trace.set_tracer_provider(previous)
    result = client.flush(timeout=20)
    assert result is not None and not result.timed_out
    client.flush_and_stop(timeout=5)
    steps = check_trace_in_collector(collector, thread_id, expected=7)
    chat = steps["chat gpt-4o-mini"]
    assert chat.generation is not None
    assert chat.generation.provider == "openai" and chat.generation.output_token_count == 7
    assert steps["flaky_tool"].error == "ToolError: tool unavailable"


def test_bridge_holds_children_until_their_root_then_bounds_what_it_holds() -> None:
    """Exported one by one (SimpleSpanProcessor), children wait for the root; the wait is
    bounded by time, count and force_flush, each release without a root counted."""
    sink = MemorySink()
    exporter = LiteralSpanExporter(sink=sink, max_wait=60.0, max_pending=2)
    provider = SDKTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("hold")
    with tracer.start_as_current_span("root", attributes={"literal.thread_id": "th"}):
        with tracer.start_as_current_span("child"):
            with tracer.start_as_current_span("grandchild"):
                pass
        assert sink.items == []  # held: the root is not known yet
    steps = {s.name: s for s in sink.items}
    assert list(steps) == ["root", "grandchild", "child"]
    assert steps["child"].root_run_id == steps["grandchild"].root_run_id == steps["root"].id
    assert {s.thread_id for s in steps.values()} == {"th"}
    assert steps["grandchild"].parent_id == steps["child"].id

    before = trace.stats().get("bridge_root_unknown", 0)
    sink.items.clear()
    open_roots = [tracer.start_span(f"open root {i}") for i in range(3)]
    for i, root in enumerate(open_roots):
        ctx = otel_trace.set_span_in_context(root)
        tracer.start_span(f"orphan {i}", context=ctx).end()
    # max_pending=2: the third held step pushed the oldest trace out
    assert [s.name for s in sink.items] == ["orphan 0"]
    assert sink.items[0].root_run_id is None and sink.items[0].parent_id is not None
    assert exporter.force_flush(1000)
    assert sorted(s.name for s in sink.items) == ["orphan 0", "orphan 1", "orphan 2"]
    assert trace.stats().get("bridge_root_unknown", 0) - before == 3
    for root in open_roots:
        root.end()  # roots alone: sent at once
    assert len(sink.items) == 6

    quick = MemorySink()
    timed = LiteralSpanExporter(sink=quick, max_wait=0.0)
    provider2 = SDKTracerProvider()
    provider2.add_span_processor(SimpleSpanProcessor(timed))
    tracer2 = provider2.get_tracer("timeout")
    with tracer2.start_as_current_span("slow root"):
        tracer2.start_span("early child").end()  # held, then released by the deadline
    assert [s.name for s in quick.items] == ["early child", "slow root"]
    provider.shutdown()
    provider2.shutdown()


def test_defaults_from_the_environment(literal_env: CollectorThread) -> None:
    """No arguments at all: the client and the default tracer provider start pipelines from
    ``LITERAL_API_KEY`` / ``LITERAL_API_URL`` and deliver."""
    client = LiteralClient()
    provider = trace.TracerProvider()  # what get_tracer_provider() builds by default
    tracer = provider.get_tracer("defaults")
    with client.thread(name="from env") as thread, client.step(name="hook step"):
        with tracer.start_as_current_span("default span"):
            pass
    span_result = provider.force_flush(20_000)
    result = client.flush(timeout=20)
    assert span_result and result is not None and not result.timed_out
    provider.shutdown()
    client.flush_and_stop(timeout=5)
    fetched = ReferenceAPI(api_key=literal_env.api_key, url=literal_env.url).get_thread(
        id=thread.id
    )
    assert fetched is not None and fetched.name == "from env"
    steps = {s.name: s for s in fetched.steps or []}
    assert steps["default span"].parent_id == steps["hook step"].id
