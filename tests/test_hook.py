"""Library hook (LiteralClient / AsyncLiteralClient): decorators, context, ids, bad input.

These tests hand the hook a small in-memory sink (a real in-process double of the pipeline's
``Sink``) to look at exactly what is enqueued; ``test_hook_collector.py`` runs the same
shapes end to end through the real pipeline and collector.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import math
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent._client import AsyncLiteralClient, LiteralClient
from agent._models import Attachment, ChatGeneration, Score, Step, StepType, Thread
from agent.pipeline import FlushResult, Pipeline


class MemorySink:
    """Keeps what is enqueued, in order; flush/shutdown are recorded."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.flushes: list[float | None] = []
        self.closed = False

    def enqueue(self, item: Any) -> bool:
        if self.closed:
            return False
        self.items.append(item)
        return True

    def flush(self, timeout: float | None = None) -> FlushResult:
        self.flushes.append(timeout)
        return FlushResult(delivered=len(self.items))

    def shutdown(self, timeout: float | None = None) -> FlushResult:
        self.closed = True
        return FlushResult(delivered=len(self.items))

    @property
    def steps(self) -> dict[str, Step]:
        return {i.name or "": i for i in self.items if isinstance(i, Step)}


class ExplodingSink:
    """A sink whose enqueue, flush and shutdown raise (a broken transport)."""

    def enqueue(self, item: Any) -> bool:
        raise RuntimeError("transport exploded")

    def flush(self, timeout: float | None = None) -> FlushResult:
        raise RuntimeError("flush exploded")

    def shutdown(self, timeout: float | None = None) -> FlushResult:
        raise RuntimeError("shutdown exploded")


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def client(sink: MemorySink) -> LiteralClient:
    return LiteralClient(api_key="unused", url="http://127.0.0.1:9", sink=sink)


def test_nested_thread_run_steps_get_parent_thread_and_root_ids(
    client: LiteralClient, sink: MemorySink
) -> None:
    """Ids are filled as in the reference: parent step > active thread / root run."""

    @client.step(type="tool")
    def tool(x: int, y: int = 2) -> dict[str, int]:
        assert client.get_current_step() is not None
        return {"sum": x + y}

    @client.step
    def leaf(text: str) -> str:
        return text.upper()

    @client.run
    def agent_run(question: str) -> str:
        tool(1)
        return leaf(question)

    with client.thread(name="conversation", tags=["t"]) as thread:
        assert client.get_current_thread() is thread
        assert agent_run("hi") == "HI"
        agent_run("again")
    assert client.get_current_thread() is None

    steps = [i for i in sink.items if isinstance(i, Step)]
    runs = [s for s in steps if s.type == StepType.RUN]
    assert len(steps) == 6 and len(runs) == 2
    for run in runs:
        assert run.thread_id == thread.id and run.parent_id is None and run.root_run_id is None
        children = [s for s in steps if s.parent_id == run.id]
        assert {c.name for c in children} == {"tool", "leaf"}
        for child in children:
            assert child.thread_id == thread.id and child.root_run_id == run.id
            assert child.start_time and child.end_time and child.start_time <= child.end_time
    tool_step = next(s for s in steps if s.name == "tool")
    assert tool_step.type == StepType.TOOL
    assert tool_step.input == {"x": 1, "y": 2} and tool_step.output == {"sum": 3}
    leaf_step = next(s for s in steps if s.name == "leaf")
    assert leaf_step.input == {"text": "hi"} and leaf_step.output == {"content": "HI"}
    # the thread upsert goes through the sink, after its steps
    assert isinstance(sink.items[-1], Thread) and sink.items[-1].id == thread.id
    assert sink.items[-1].name == "conversation" and sink.items[-1].tags == ["t"]


def test_context_managers_sync_and_nested_root_run(client: LiteralClient, sink: MemorySink) -> None:
    """A run inside a run is not the root; the outer one stays root until it exits."""
    with client.run(name="outer") as outer:
        assert client.get_current_root_run() is outer
        with client.run(name="inner") as inner:
            assert client.get_current_root_run() is outer
            with client.step(name="s", metadata={"k": 1}, tags=["a"]) as s:
                s.output = {"content": "set by user"}
        assert client.get_current_root_run() is outer
        with client.step(name="after"):
            pass
    assert client.get_current_root_run() is None and client.get_current_step() is None
    steps = sink.steps
    assert steps["inner"].root_run_id == outer.id and steps["inner"].parent_id == outer.id
    assert steps["s"].root_run_id == outer.id and steps["s"].parent_id == inner.id
    assert steps["s"].metadata == {"k": 1} and steps["s"].tags == ["a"]
    assert steps["s"].output == {"content": "set by user"}
    assert steps["after"].root_run_id == outer.id
    assert steps["outer"].root_run_id is None


@pytest.mark.anyio
async def test_async_functions_and_context_managers() -> None:
    """Async decorators and ``async with`` behave like their sync twins."""
    sink = MemorySink()
    client = AsyncLiteralClient(api_key="unused", sink=sink)

    @client.step(name="fetch")
    async def fetch(n: int) -> list[int]:
        await asyncio.sleep(0)
        return list(range(n))

    @client.thread
    async def conversation() -> str:
        async with client.run(name="r") as run:
            await fetch(3)
            return run.id

    run_id = await conversation()
    steps = sink.steps
    assert steps["fetch"].parent_id == run_id and steps["fetch"].root_run_id == run_id
    assert steps["fetch"].output == {"content": [0, 1, 2]}
    assert steps["r"].thread_id is not None and steps["fetch"].thread_id == steps["r"].thread_id
    assert isinstance(sink.items[-1], Thread)
    result = await client.flush(timeout=1.0)
    assert isinstance(result, FlushResult) and sink.flushes == [1.0]


def test_generator_step_spans_the_iteration_but_hides_from_consumer(
    client: LiteralClient, sink: MemorySink
) -> None:
    """The step of a generator is current only while its body runs."""
    seen_in_body: list[str | None] = []

    @client.step
    def inner() -> int:
        return 1

    @client.step(type="llm")
    def stream(n: int) -> Iterator[str]:
        for i in range(n):
            current = client.get_current_step()
            seen_in_body.append(current.name if current else None)
            inner()
            yield f"tok{i} "

    with client.run(name="consumer") as run:
        seen_by_consumer = []
        for token in stream(3):
            current = client.get_current_step()
            seen_by_consumer.append(current.name if current else None)
            assert token.startswith("tok")
    assert seen_in_body == ["stream"] * 3
    assert seen_by_consumer == ["consumer"] * 3
    gen_step = sink.steps["stream"]
    assert gen_step.output == {"content": "tok0 tok1 tok2 "}
    assert gen_step.input == {"n": 3} and gen_step.parent_id == run.id
    inner_steps = [s for s in sink.items if isinstance(s, Step) and s.name == "inner"]
    assert len(inner_steps) == 3 and all(s.parent_id == gen_step.id for s in inner_steps)
    assert all(s.root_run_id == run.id for s in inner_steps)


def test_generator_closed_early_and_failing(client: LiteralClient, sink: MemorySink) -> None:
    """``break`` ends the step without error; an exception inside is recorded and raised."""

    @client.step
    def numbers() -> Iterator[int]:
        yield from range(10)

    for n in numbers():
        if n == 1:
            break
    assert sink.steps["numbers"].output == {"content": [0, 1]}
    assert sink.steps["numbers"].error is None

    @client.step
    def broken() -> Iterator[int]:
        yield 1
        raise KeyError("missing")

    with pytest.raises(KeyError):
        list(broken())
    assert sink.steps["broken"].error == "'missing'"
    assert client.get_current_step() is None


@pytest.mark.anyio
async def test_async_generator_step(sink: MemorySink) -> None:
    """Async generators: the step spans the iteration; send/athrow pass through."""
    client = AsyncLiteralClient(api_key="unused", sink=sink)

    @client.step
    async def tokens() -> AsyncIterator[str]:
        for t in ("a", "b"):
            assert client.get_current_step() is not None
            yield t

    got = [t async for t in tokens()]
    assert got == ["a", "b"]
    assert sink.steps["tokens"].output == {"content": "ab"}
    assert client.get_current_step() is None


def test_os_threads_start_with_an_empty_context(client: LiteralClient, sink: MemorySink) -> None:
    """A new OS thread sees no step unless the context is copied."""

    @client.step
    def work(tag: str) -> str:
        return tag

    with client.run(name="main") as run:
        plain = threading.Thread(target=work, args=("plain",))
        ctx = contextvars.copy_context()
        copied = threading.Thread(target=ctx.run, args=(work, "copied"))
        plain.start()
        copied.start()
        plain.join()
        copied.join()
    steps = {s.input["tag"]: s for s in sink.items if isinstance(s, Step) and s.name == "work"}
    assert steps["plain"].parent_id is None and steps["plain"].root_run_id is None
    assert steps["copied"].parent_id == run.id and steps["copied"].root_run_id == run.id


@pytest.mark.anyio
async def test_concurrent_tasks_do_not_see_each_other(sink: MemorySink) -> None:
    """Sibling asyncio tasks inherit their creator's step, never each other's."""
    client = AsyncLiteralClient(api_key="unused", sink=sink)
    gate = asyncio.Event()

    @client.step
    async def child(i: int) -> int:
        me = client.get_current_step()
        await gate.wait()  # every child is open at the same time
        assert client.get_current_step() is me
        return i

    @client.step
    async def task(i: int) -> int:
        return await child(i)

    async with client.run(name="fanout") as run:
        pending = [asyncio.create_task(task(i)) for i in range(20)]
        await asyncio.sleep(0)
        gate.set()
        assert sorted(await asyncio.gather(*pending)) == list(range(20))
    steps = [s for s in sink.items if isinstance(s, Step)]
    tasks = {s.id: s for s in steps if s.name == "task"}
    children = [s for s in steps if s.name == "child"]
    assert len(tasks) == 20 and len(children) == 20
    assert all(t.parent_id == run.id and t.root_run_id == run.id for t in tasks.values())
    for c in children:
        parent = tasks[c.parent_id or ""]
        assert parent.input == c.input and c.root_run_id == run.id


def test_user_exception_is_recorded_and_reraised_unchanged(
    client: LiteralClient, sink: MemorySink
) -> None:
    """Same exception object, traceback reaching the user's frame, error on the step."""
    boom = ValueError("bad input")

    @client.step
    def fails() -> None:
        raise boom

    with pytest.raises(ValueError) as info:
        fails()
    assert info.value is boom
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "fails"
    assert sink.steps["fails"].error == "bad input"
    with pytest.raises(ZeroDivisionError), client.step(name="cm"):
        _ = 1 / 0
    assert sink.steps["cm"].error == "division by zero"

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    @client.step
    def odd() -> None:
        raise Unprintable

    with pytest.raises(Unprintable):
        odd()
    assert sink.steps["odd"].error == "<Unprintable>"


def test_hook_failures_never_reach_user_code() -> None:
    """A raising sink, a closed real pipeline, bad arguments: counted, never raised."""
    broken = LiteralClient(api_key="unused", sink=ExplodingSink())

    @broken.step(not_a_step_field=1)
    def fine(x: int) -> int:
        return x * 2

    assert fine(21) == 42
    assert broken.message("hello", thread_id="t") is not None
    assert broken.flush() is None
    assert broken.flush_and_stop() is None
    stats = broken.hook_stats()
    assert stats["sink_error"] == 2 and stats["unknown_step_argument"] == 1
    assert stats["flush_failed"] == 1 and stats["shutdown_failed"] == 1

    pipeline = Pipeline(api_key="unused", url="http://127.0.0.1:9", start=False)
    pipeline.shutdown(timeout=1)
    closed = LiteralClient(api_key="unused", sink=pipeline)
    with closed.thread(), closed.run(name="r"):
        closed.score("quality", 1.0)
    assert closed.hook_stats()["enqueue_rejected"] == 3  # step, score, thread
    assert pipeline.stats().dropped


def test_pipeline_start_failure_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere: the lazy pipeline cannot start; user code still runs."""
    monkeypatch.delenv("LITERAL_API_KEY", raising=False)
    client = LiteralClient(config=object())

    @client.step
    def f() -> int:
        return 1

    assert f() == 1 and f() == 1
    stats = client.hook_stats()
    assert stats["pipeline_start_failed"] == 1 and stats["dropped_no_sink"] == 2


def test_disabled_client_queues_nothing_but_runs_everything() -> None:
    """Disabled: no pipeline is ever created; context helpers still work."""
    client = LiteralClient(disabled=True)

    @client.step
    def f(x: int) -> int:
        step = client.get_current_step()
        assert step is not None and step.name == "f"
        client.score("s", 1.0)
        return x

    with client.thread():
        assert f(3) == 3
        client.message("hi")
    assert client.sink is None and not client._holder.started
    assert client.flush() is None and client.hook_stats() == {}


def test_scores_on_current_step_and_bad_values(client: LiteralClient, sink: MemorySink) -> None:
    """A score names the current step; NaN/inf/unknown type/no step -> None, counted."""
    with client.step(name="graded") as step, capture_logs() as logs:
        score = client.score("quality", 0.5, type="AI", comment="ok", tags=["x"])
        assert client.score("nan", math.nan) is None
        assert client.score("inf", math.inf) is None
        assert client.score("bad", "not a number") is None  # type: ignore[arg-type]
        assert client.score("kind", 1.0, type="ROBOT") is None
    assert client.score("orphan", 1.0) is None
    assert client.score("explicit", 1.0, step_id="s1") is not None
    assert isinstance(score, Score) and score.step_id == step.id and score.type == "AI"
    assert [i.name for i in sink.items if isinstance(i, Score)] == ["quality", "explicit"]
    stats = client.hook_stats()
    assert stats["score_value_not_finite"] == 2 and stats["score_value_invalid"] == 1
    logged = [e for e in logs if e["event"] == "score_value_not_finite"]
    assert logged[0]["log_level"] == "warning" and logged[0]["score"] == "nan"
    assert stats["score_type_invalid"] == 1 and stats["score_without_step"] == 1


def test_message_release_environment_and_generation(
    sink: MemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages resolve ids like steps; release lands in metadata; generations attach."""
    monkeypatch.setenv("LITERAL_ENV", "prod")  # restored (or removed) after the test
    client = LiteralClient(api_key="k", sink=sink, release=" v1.2 ", environment="staging")
    import os

    assert os.environ["LITERAL_ENV"] == "staging"
    generation = ChatGeneration(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with client.thread(metadata={"user": "u1"}) as thread, client.run(name="r") as run:
        msg = client.message("hello", type="user_message", metadata={"a": 1})
        with client.step(name="llm", type="llm", generation=generation) as llm:
            llm.output = {"content": "answer"}
    assert msg.thread_id == thread.id and msg.parent_id == run.id and msg.root_run_id == run.id
    assert msg.output == {"content": "hello"} and msg.start_time == msg.end_time
    assert msg.metadata == {"a": 1, "release": "v1.2"}
    assert sink.steps["llm"].generation is generation
    assert sink.steps["r"].metadata == {"release": "v1.2"}
    upserted = sink.items[-1]
    assert isinstance(upserted, Thread) and upserted.metadata == {"release": "v1.2", "user": "u1"}
    lonely = client.message("no thread")
    assert lonely.thread_id is None and client.hook_stats()["message_without_thread_or_parent"] == 1


def test_start_step_end_and_double_end(client: LiteralClient, sink: MemorySink) -> None:
    """``start_step`` + ``step.end()`` (reference style); a second end is ignored."""
    step = client.start_step(name="manual", type="retrieval")
    assert client.get_current_step() is step
    step.end()  # type: ignore[attr-defined]
    step.end()  # type: ignore[attr-defined]
    assert client.get_current_step() is None
    assert [s.name for s in sink.items] == ["manual"]
    assert client.hook_stats()["step_ended_twice_or_not_started"] == 1


def test_input_capture_signatures(client: LiteralClient, sink: MemorySink) -> None:
    """Bound arguments with defaults; ``self`` skipped; varargs; capture can be turned off."""

    class Agent:
        @client.step
        def act(self, task: str, *, retries: int = 3) -> str:
            return task

    @client.step
    def variadic(a: int, *rest: int, **options: Any) -> int:
        return a

    @client.step(capture_input=False, capture_output=False)
    def secret(password: str) -> str:
        return password

    Agent().act("t")
    Agent().act(task="kw", retries=1)
    variadic(1, 2, 3, flag=True)
    secret("hunter2")
    acts = [s for s in sink.items if s.name == "act"]
    assert acts[0].input == {"task": "t", "retries": 3}
    assert acts[1].input == {"task": "kw", "retries": 1}
    assert sink.steps["variadic"].input == {"a": 1, "rest": (2, 3), "options": {"flag": True}}
    assert sink.steps["secret"].input is None and sink.steps["secret"].output is None


def test_reset_context_to_sync_and_flush_and_stop(sink: MemorySink) -> None:
    """``reset_context`` forgets; ``to_sync`` shares the pipeline; stop closes it."""
    client = AsyncLiteralClient(api_key="k", sink=sink, release="r1")
    sync = client.to_sync()
    with sync.run(name="r"):
        client.reset_context()
        assert client.get_current_step() is None
    assert sync.global_metadata == {"release": "r1"}
    assert sync.sink is client.sink is sink
    assert sync.flush(timeout=2) == FlushResult(delivered=1)
    client.flush_and_stop()
    assert sink.closed


@pytest.mark.anyio
async def test_one_context_manager_entered_by_concurrent_tasks(sink: MemorySink) -> None:
    """A shared ``client.step(...)``/``client.thread(...)`` object serves each task its own."""
    client = AsyncLiteralClient(api_key="unused", sink=sink)
    shared_step = client.step(name="shared")
    shared_thread = client.thread(name="shared thread")
    first_in = asyncio.Event()
    second_in = asyncio.Event()

    async def first() -> tuple[str, str]:
        async with shared_thread as thread, shared_step as step:
            first_in.set()
            await second_in.wait()
        return thread.id, step.id

    async def second() -> tuple[str, str]:
        await first_in.wait()
        async with shared_thread as thread, shared_step as step:
            second_in.set()
            await asyncio.sleep(0.01)  # exits after the first task
            assert client.get_current_step() is step
        return thread.id, step.id

    (t1, s1), (t2, s2) = await asyncio.gather(first(), second())
    steps = {s.id: s for s in sink.items if isinstance(s, Step)}
    assert steps[s1].thread_id == t1 and steps[s2].thread_id == t2 and t1 != t2
    assert steps[s1].end_time is not None and steps[s2].end_time is not None
    assert sum(isinstance(i, Thread) for i in sink.items) == 2


def test_api_clients_are_ours_and_lazy(sink: MemorySink) -> None:
    """``client.api`` is the agent's API client (sync or async), built on first access."""
    from agent._api import AsyncLiteralAPI, LiteralAPI

    sync = LiteralClient(api_key="k", url="http://127.0.0.1:9", sink=sink)
    assert sync._api is None
    assert isinstance(sync.api, LiteralAPI) and sync.api is sync.api
    async_client = AsyncLiteralClient(api_key="k", url="http://127.0.0.1:9", sink=sink)
    assert isinstance(async_client.api, AsyncLiteralAPI)
    assert isinstance(async_client.to_sync().api, LiteralAPI)


def test_daemon_transport_delivers_through_a_real_daemon(tmp_path: Any) -> None:
    """``transport="daemon"``: the hook's items reach a real daemon listener (socket from
    the configuration); an unknown transport is refused at construction."""
    from agent._config import AgentConfig, DaemonConfig
    from agent.daemon import DaemonSink
    from agent.daemon._backend import MemoryBackend
    from agent.daemon._server import ServerSettings
    from agent.daemon._sockets import bind_unix
    from agent.daemon._thread import DaemonThread

    path = tmp_path / "d.sock"
    backend = MemoryBackend()
    daemon = DaemonThread(backend, [bind_unix(path)], ServerSettings()).start()
    try:
        config = AgentConfig(daemon=DaemonConfig(socket=str(path)))
        client = LiteralClient(config=config, transport="daemon")

        @client.step(type="tool")
        def tool(x: int) -> int:
            client.score("ok", 1.0)
            return x

        with client.thread(name="via daemon") as thread:
            tool(7)
        assert isinstance(client.sink, DaemonSink)
        result = client.flush(timeout=5)
        assert result is not None and result.pending == 0
        assert backend.wait_for(3, 5)
        client.flush_and_stop(timeout=2)
    finally:
        daemon.stop()
    score, step, upsert = backend.items  # the score is sent when given, the step at its end
    assert step["name"] == "tool" and step["threadId"] == thread.id and step["input"] == {"x": 7}
    assert score["stepId"] == step["id"] and upsert["id"] == thread.id
    assert client.hook_stats() == {}
    with pytest.raises(ValueError, match="transport"):
        LiteralClient(transport="carrier pigeon")


@pytest.mark.anyio
async def test_async_generator_closed_early_and_failing(sink: MemorySink) -> None:
    """``break`` out of an async generator ends its step; an error inside is recorded."""
    client = AsyncLiteralClient(api_key="unused", sink=sink)

    @client.step
    async def numbers() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    agen = numbers()
    async for n in agen:
        if n == 2:
            break
    await agen.aclose()  # type: ignore[attr-defined]
    assert sink.steps["numbers"].output == {"content": [0, 1, 2]}
    assert sink.steps["numbers"].error is None and client.get_current_step() is None

    @client.step
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise LookupError("gone")

    with pytest.raises(LookupError):
        async for _ in broken():
            pass
    assert sink.steps["broken"].error == "gone"


def test_start_step_ended_inside_a_later_thread_keeps_that_thread(
    client: LiteralClient, sink: MemorySink
) -> None:
    """Ending a manually started step removes only that step from the context."""
    step = client.start_step(name="manual")
    with client.thread(name="later") as thread:
        client.end_step(step)
        assert client.get_current_thread() is thread
        assert client.get_current_step() is None
    assert client.get_current_thread() is None
    assert [i.name for i in sink.items] == ["manual", "later"]


def test_many_os_threads_each_build_their_own_tree(client: LiteralClient, sink: MemorySink) -> None:
    """Eight OS threads nest runs and steps at the same time: no tree borrows another's ids."""

    @client.step
    def leaf(depth: int) -> int:
        return depth

    @client.step
    def middle(worker: int) -> int:
        return sum(leaf(d) for d in range(3))

    @client.run
    def job(worker: int) -> int:
        return sum(middle(worker) for _ in range(20))

    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        with client.thread(name=f"worker {worker}"):
            job(worker)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = {s.id: s for s in sink.items if isinstance(s, Step)}
    assert len(steps) == 8 * (1 + 20 + 60)
    for step in steps.values():
        if step.name == "job":
            assert step.parent_id is None and step.root_run_id is None
            continue
        parent = steps[step.parent_id or ""]
        assert parent.thread_id == step.thread_id
        run = steps[step.root_run_id or ""]
        assert run.name == "job" and run.thread_id == step.thread_id
        assert parent.name == ("middle" if step.name == "leaf" else "job")


def test_handed_over_steps_are_frozen_harmlessly(client: LiteralClient, sink: MemorySink) -> None:
    """After its end a step's empty lists are one shared frozen list: a late append changes
    nothing, raises nothing and is counted; appends made while open are kept."""
    from agent._hook_frozen import FROZEN_EMPTY, FROZEN_STATS

    before = FROZEN_STATS.get("step_mutated_after_end")
    with client.step(name="late") as late:
        pass
    with client.step(name="kept") as kept:
        kept.attachments.append(Attachment(name="a.txt", url="https://example.com/a"))
    late.attachments.append(Attachment(name="too late"))
    late.scores += [Score(name="too late")]
    late.attachments.extend([Attachment(name="also late")])
    assert late.attachments == [] and late.scores == [] and FROZEN_EMPTY == []
    assert FROZEN_STATS.get("step_mutated_after_end") - before == 3
    assert [a.name for a in kept.attachments] == ["a.txt"]
    assert late.to_dict()["attachments"] == [] and sink.steps["late"] is late


def test_step_ids_are_rfc4122_v4_and_unique_across_counter_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ids stay valid version-4 UUIDs, distinct and correctly formatted across the boundary
    where the cached high part of the counter changes (every 4096 ids)."""
    import uuid

    from agent import _hook_ids

    monkeypatch.setattr(_hook_ids, "_counter", itertools.count(4096 * 7 - 3))
    monkeypatch.setattr(_hook_ids, "_block", (-1, ""))
    ids = [_hook_ids.new_step_id() for _ in range(10)]
    assert len(set(ids)) == 10
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    counters = [int(value.replace("-", "")[-12:], 16) for value in ids]
    assert counters == list(range(4096 * 7 - 3, 4096 * 7 + 7))


def test_step_times_are_wire_formatted_utc_and_ordered(
    client: LiteralClient, sink: MemorySink
) -> None:
    """start/end times are ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, within a few microseconds of the
    system clock, and never run backwards over many short steps."""
    import datetime

    @client.step
    def tick() -> None:
        return None

    before = datetime.datetime.now(datetime.UTC)
    for _ in range(3000):
        tick()
    after = datetime.datetime.now(datetime.UTC)
    stamps: list[str] = []
    for item in sink.items:
        assert isinstance(item, Step)
        stamps += [item.start_time or "", item.end_time or ""]
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    parsed = [
        datetime.datetime.strptime(s, fmt).replace(tzinfo=datetime.UTC) for s in stamps
    ]
    slack = datetime.timedelta(microseconds=2)
    assert all(before - slack <= p <= after + slack for p in parsed)
    assert all(a <= b for a, b in itertools.pairwise(parsed))
    assert all(len(s) == 27 for s in stamps)


def test_decorated_call_and_context_manager_build_the_same_steps(
    client: LiteralClient, sink: MemorySink
) -> None:
    """The decorated-function fast path (``HookCore._call``), ``with client.step(...)``
    (``StepBlock``) and the generic open/close (``start_step``, generators) fill the same
    fields: ids, metadata, tags, extra fields, root run handling, output capture and errors."""
    client.global_metadata = {"release": "r1"}
    kwargs: dict[str, Any] = {"metadata": {"k": 1}, "tags": ["t"], "error": None}

    @client.run(name="root_fn", **kwargs)
    def root_fn() -> dict[str, int]:
        return {"answer": 42}

    @client.step(name="failing_fn", type="tool", **kwargs)
    def failing_fn() -> None:
        raise KeyError("boom")

    @client.run(name="root_gen", **kwargs)
    def root_gen() -> Iterator[int]:
        yield 1

    with client.thread(name="conversation") as thread:
        with client.step(name="parent", type="run"):
            root_fn()
            with client.run(name="root_cm", **kwargs) as cm_step:
                cm_step.output = {"answer": 42}
            with pytest.raises(KeyError):
                failing_fn()
            with pytest.raises(KeyError), client.step(name="failing_cm", type="tool", **kwargs):
                raise KeyError("boom")
            # the generic path (HookCore._open_step): start_step and generators
            started = client.start_step(name="root_started", type="run", **kwargs)
            started.output = {"answer": 42}
            client.end_step(started)
            assert list(root_gen()) == [1]
    steps = sink.steps
    parent = steps["parent"]
    for fn_name, cm_name in (
        ("root_fn", "root_cm"),
        ("failing_fn", "failing_cm"),
        ("root_fn", "root_started"),
        ("root_fn", "root_gen"),
    ):
        fn, cm = steps[fn_name], steps[cm_name]
        assert fn.parent_id == cm.parent_id == parent.id
        assert fn.thread_id == cm.thread_id == thread.id
        assert fn.root_run_id == cm.root_run_id == parent.id
        assert fn.metadata == cm.metadata == {"k": 1, "release": "r1"}
        assert fn.tags == cm.tags == ["t"]
        assert fn.type == cm.type
        assert fn.start_time and fn.end_time and cm.start_time and cm.end_time
    assert steps["root_fn"].output == steps["root_cm"].output == {"answer": 42}
    assert steps["failing_fn"].error == steps["failing_cm"].error == "'boom'"
    assert client.get_current_step() is None and client.get_current_thread() is None
    assert client.hook_stats() == {}


def test_inline_step_blocks_reuse_their_spec_safely(
    client: LiteralClient, sink: MemorySink
) -> None:
    """``with client.step(name=..., type=...)`` written inline (its spec reused from a cache)
    still builds distinct, correctly nested steps; other arguments are not mixed up; an
    invalid type is counted at every call."""
    for _ in range(2):
        with client.step(name="outer", type="run") as outer:
            with client.step(name="inner", type="tool") as inner:
                assert client.get_current_step() is inner
            with client.step(name="inner", type="tool", tags=["x"]) as tagged:
                pass
            with client.step(name="inner", type="llm") as llm:
                pass
    steps = [i for i in sink.items if isinstance(i, Step)]
    assert len(steps) == 8 and len({s.id for s in steps}) == 8
    assert inner.parent_id == outer.id and inner.type == StepType.TOOL and inner.tags is None
    assert tagged.tags == ["x"] and llm.type == StepType.LLM and outer.type == StepType.RUN
    for _ in range(3):
        with client.step(name="odd", type="not-a-type") as odd:
            pass
    assert odd.type == StepType.UNDEFINED
    assert client.hook_stats() == {"invalid_step_type": 3}


def test_one_step_manager_shared_by_many_os_threads(
    client: LiteralClient, sink: MemorySink
) -> None:
    """A module-level ``client.step(...)`` object entered by many OS threads at once (with a
    tiny switch interval to force interleavings): every block closes its own step, children
    get their own thread's block as parent, and every thread's context ends empty."""
    import sys

    shared = client.step(name="shared", type="tool")
    errors: list[str] = []
    pairs: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            with shared as outer:
                with client.step(name="child") as child:
                    pass
                if client.get_current_step() is not outer:
                    errors.append("wrong current step")
            with lock:
                pairs.append((outer.id, child.parent_id or ""))
        if client.get_current_step() is not None:
            errors.append("context not empty")

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert all(outer_id == parent_id for outer_id, parent_id in pairs)
    outers = [i for i in sink.items if isinstance(i, Step) and i.name == "shared"]
    assert len(outers) == 400 and len({s.id for s in outers}) == 400
    assert all(s.end_time is not None for s in outers)
    assert client.hook_stats() == {}
