"""The pipeline against the real collector on loopback: delivery, kinds, policies, hooks."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent._api import LiteralAPI
from agent._models import ChatGeneration, Score, Step, StepType, Thread
from agent.pipeline import (
    DropReason,
    FlushResult,
    OverflowPolicy,
    Pipeline,
    PipelineStats,
    RetryPolicy,
    Settings,
    Sink,
    suppressed,
)
from agent.pipeline._deadletter import DeadLetterFile
from agent.testing import CollectorThread

FAST_RETRY = RetryPolicy(initial_backoff=0.02, max_backoff=0.1, jitter=0.01, deadline=1.0)


def settings(tmp_path: Path, url: str, api_key: str = "test-key", **kw: Any) -> Settings:
    """Pipeline settings for tests: spool and dead-letter file under ``tmp_path``."""
    base: dict[str, Any] = {
        "api_key": api_key,
        "url": url,
        "spool_directory": tmp_path / "spool",
        "dead_letter": tmp_path / "dead-letter.jsonl",
        "flush_interval": 0.05,
        "retry": FAST_RETRY,
        "batch_size": 100,
    }
    base.update(kw)
    return Settings(**base)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true or fail at the deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def stored(data_dir: Path, ids: list[str], settle: float = 0.5) -> set[str]:
    """The ids among ``ids`` present in the collector's SQLite file: read until all are, or
    until none has arrived for ``settle`` seconds (the collector answers a batch once it is
    in its ingest journal; the commit follows within milliseconds)."""
    conn = sqlite3.connect(data_dir / "collector.db")
    try:
        found: set[str] = set()
        last_change = time.monotonic()
        while True:
            before = len(found)
            missing = [i for i in ids if i not in found]
            for i in range(0, len(missing), 500):
                chunk = missing[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT id FROM step WHERE id IN ({marks})", chunk)
                found.update(r[0] for r in rows)
            if len(found) == len(set(ids)):
                return found
            now = time.monotonic()
            if len(found) != before:
                last_change = now
            elif now - last_change > settle:
                return found
            time.sleep(0.02)
    finally:
        conn.close()


def dead_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def factory(url: str, **kw: Any) -> Pipeline:
        start = kw.pop("start", True)
        preprocess = kw.pop("preprocess", None)
        p = Pipeline(settings=settings(tmp_path, url, **kw), start=start, preprocess=preprocess)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.shutdown(2.0)


def test_contract_names() -> None:
    """The names other components are coded against exist with the agreed shapes."""
    assert isinstance(Pipeline(settings=Settings(), start=False), Sink)
    r = FlushResult(delivered=1, spooled=2, pending=3, timed_out=False)
    assert (r.delivered, r.spooled, r.pending, r.timed_out) == (1, 2, 3, False)
    d = PipelineStats().as_dict()
    for key in (
        "enqueued",
        "sent",
        "retried",
        "spilled",
        "replayed",
        "dead_lettered",
        "dropped",
        "queue_depth",
        "queue_bytes",
        "spool_bytes",
        "backend_up",
    ):
        assert key in d


def test_delivers_every_kind(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    """Steps (llm with generation, messages), step dicts, scores and threads all arrive."""
    p = make(sqlite_collector.url)
    thread_id = str(uuid.uuid4())
    llm = Step(
        name="gpt",
        type=StepType.LLM,
        thread_id=thread_id,
        generation=ChatGeneration(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]),
        input={"content": "hi"},
        output={"content": "hello"},
    )
    message = Step(
        name="user", type=StepType.USER_MESSAGE, thread_id=thread_id, output={"content": "q"}
    )
    as_dict = {"id": str(uuid.uuid4()), "name": "tool", "type": "tool", "threadId": thread_id}
    score = Score(name="quality", value=0.9, step_id=llm.id)
    score_dict = {
        "__kind__": "score",
        "name": "len",
        "value": 3.0,
        "type": "CODE",
        "stepId": message.id,
    }
    thread = Thread(id=thread_id, name="conversation", tags=["t1"])
    for item in (llm, message, as_dict, thread):
        assert p.enqueue(item)
    result = p.flush(10)
    assert (result.delivered, result.timed_out) == (4, False)
    assert p.enqueue(score) and p.enqueue(score_dict)
    assert p.flush(10).delivered == 2

    api = LiteralAPI(api_key=sqlite_collector.api_key, url=sqlite_collector.url)
    got = api.get_step(llm.id)
    assert got is not None and got.generation is not None and got.generation.model == "gpt-4o"
    assert [s.name for s in got.scores] == ["quality"]
    got_thread = api.get_thread(thread_id)
    assert got_thread is not None and got_thread.name == "conversation"
    assert {s.id for s in got_thread.steps or []} >= {llm.id, message.id, as_dict["id"]}
    got_message = api.get_step(message.id)
    assert got_message is not None and [s.value for s in got_message.scores] == [3.0]
    stats = p.stats()
    assert stats.sent == 6 and stats.enqueued == 6 and stats.dropped == {}


def test_invalid_items_are_counted_not_raised(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    """Garbage never raises into the caller: it is accepted, then dropped and counted."""
    p = make(sqlite_collector.url)
    for junk in (object(), 42, {"no": "id"}, Score(name="orphan"), {"__kind__": "what", "id": "x"}):
        assert p.enqueue(junk) is True
    p.enqueue({"id": str(uuid.uuid4()), "name": "fine"})
    assert p.flush(10).delivered == 1
    assert p.stats().dropped == {DropReason.INVALID: 5}


@pytest.mark.parametrize(
    ("policy", "accepted", "dropped"),
    [
        (OverflowPolicy.DROP_NEWEST, 10, {DropReason.QUEUE_FULL: 5}),
        (OverflowPolicy.DROP_OLDEST, 15, {DropReason.DROP_OLDEST: 5}),
        (OverflowPolicy.BLOCK, 10, {DropReason.BLOCK_TIMEOUT: 5}),
        (OverflowPolicy.SPILL, 10, {DropReason.QUEUE_FULL: 5}),
    ],
)
def test_overflow_policies(
    tmp_path: Path, policy: OverflowPolicy, accepted: int, dropped: dict[str, int]
) -> None:
    """Bounded by events: each policy does what it says and counts every drop."""
    p = Pipeline(
        settings=settings(
            tmp_path, "http://127.0.0.1:9", max_queue_events=10, overflow=policy, block_timeout=0.01
        ),
        start=False,
    )
    results = [p.enqueue({"id": f"e{i}"}) for i in range(15)]
    assert sum(results) == accepted
    stats = p.stats()
    assert stats.dropped == dropped
    assert stats.queue_depth == 10
    if policy is OverflowPolicy.DROP_OLDEST:  # the oldest went, the newest stayed
        assert [item["id"] for item in p._queue.dq] == [f"e{i}" for i in range(5, 15)]
    p.shutdown(0.5)


def test_bounded_by_bytes(tmp_path: Path) -> None:
    """The byte bound turns into an event bound once the worker has measured event sizes."""
    p = Pipeline(
        settings=settings(
            tmp_path,
            "http://127.0.0.1:9",
            max_queue_bytes=100_000,
            overflow=OverflowPolicy.DROP_NEWEST,
        ),
        start=False,
    )
    q = p._queue
    q.observe_sizes(10_000 * 10, 10)  # as if the worker measured 10 KB events
    q.observe_sizes(10_000 * 10, 10)
    for _ in range(30):
        q.observe_sizes(10_000 * 10, 10)
    assert q.limit == 10
    assert sum(p.enqueue({"id": str(i)}) for i in range(20)) == 10
    p.shutdown(0.5)


def test_blocking_policy_waits_for_room(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    """``block``: a full queue makes the producer wait (bounded) until the worker drains it."""
    p = make(
        sqlite_collector.url,
        max_queue_events=50,
        overflow=OverflowPolicy.BLOCK,
        block_timeout=5.0,
        batch_size=25,
    )
    ids = [str(uuid.uuid4()) for _ in range(500)]
    assert all(p.enqueue({"id": i, "name": "b"}) for i in ids)
    assert p.flush(10).timed_out is False
    assert stored(sqlite_collector.data_dir, ids) == set(ids)


def test_preprocess_hook(sqlite_collector: CollectorThread, make: Callable[..., Pipeline]) -> None:
    """The hook sees each batch's step dicts; its result is what is sent (and spooled)."""
    seen: list[int] = []

    def redact(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append(len(steps))
        return [{**s, "input": {"content": "[REDACTED]"}} for s in steps]

    p = make(sqlite_collector.url, preprocess=redact)
    step = Step(name="pii", input={"content": "my card is 4111"})
    p.enqueue(step)
    p.flush(10)
    got = LiteralAPI(api_key=sqlite_collector.api_key, url=sqlite_collector.url).get_step(step.id)
    assert got is not None and got.input == {"content": "[REDACTED]"}
    assert seen == [1]


@pytest.mark.parametrize("bad", ["raise", "none", "not-a-list"])
def test_preprocess_failure_sends_original(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline], bad: str
) -> None:
    """A hook that raises or returns junk keeps the original batch; counted."""

    def hook(steps: list[dict[str, Any]]) -> Any:
        if bad == "raise":
            raise RuntimeError("boom")
        return None if bad == "none" else "junk"

    p = make(sqlite_collector.url, preprocess=hook)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for i in ids:
        p.enqueue({"id": i, "name": "orig"})
    assert p.flush(10).delivered == 3
    assert stored(sqlite_collector.data_dir, ids) == set(ids)
    assert p.stats().preprocess_errors >= 1


def test_per_step_failures_go_to_dead_letter(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline], tmp_path: Path
) -> None:
    """``ok: false`` for one alias: that step is dead-lettered (0600), the rest delivered."""
    p = make(sqlite_collector.url)
    good = [str(uuid.uuid4()) for _ in range(4)]
    bad = str(uuid.uuid4())
    for i in good[:2]:
        p.enqueue({"id": i, "name": "ok"})
    p.enqueue({"id": bad, "name": "bad", "type": "not-a-step-type"})
    for i in good[2:]:
        p.enqueue({"id": i, "name": "ok"})
    result = p.flush(10)
    assert (result.delivered, result.dropped) == (4, 1)
    assert stored(sqlite_collector.data_dir, good) == set(good)
    path = tmp_path / "dead-letter.jsonl"
    entries = DeadLetterFile(path).read()
    assert [e["event"]["id"] for e in entries] == [bad]
    assert entries[0]["reason"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert p.stats().dead_lettered == 1


def test_flush_with_backend_down_spools_by_deadline(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline], tmp_path: Path
) -> None:
    """Backend unreachable: flush returns by its deadline, everything is in the spool;
    the next pipeline on the same spool delivers it all."""
    p = make(
        f"http://127.0.0.1:{dead_port()}",
        retry=RetryPolicy(initial_backoff=0.02, max_backoff=0.05, jitter=0.0, deadline=0.2),
    )
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    for i in ids:
        p.enqueue({"id": i, "name": "later"})
    start = time.monotonic()
    result = p.flush(1.5)
    assert time.monotonic() - start < 1.7
    assert result.spooled == 1000 and result.pending == 0
    assert p.stats().backend_up is False
    p.shutdown(1.0)

    q = make(sqlite_collector.url)
    assert q.wait_ready(10)
    wait_for(lambda: q.stats().spool_records == 0)
    q.flush(5)
    assert stored(sqlite_collector.data_dir, ids) == set(ids)
    assert q.stats().replayed == 1000


def test_reentrant_logging_never_feeds_the_pipeline(
    make: Callable[..., Pipeline],
) -> None:
    """A log processor that enqueues: the worker's own logs are refused (counted)."""
    p = make(f"http://127.0.0.1:{dead_port()}")
    calls = []

    def feed(logger: Any, name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        calls.append(p.enqueue({"id": str(uuid.uuid4()), "name": "log"}))
        return event_dict

    old = structlog.get_config()
    structlog.configure(processors=[feed, *old["processors"]])
    try:
        p.enqueue({"id": str(uuid.uuid4())})
        p.flush(1.0)  # the worker logs backend_down / spill_started
        with suppressed():
            assert p.enqueue({"id": "x"}) is False
    finally:
        structlog.configure(**old)
    assert calls and not any(calls)
    assert p.stats().dropped[DropReason.REENTRANT] == len(calls) + 1


def test_enqueue_is_cheap_while_backend_stalls(tmp_path: Path) -> None:
    """The hot path does no I/O: with nothing answering, enqueue stays in microseconds."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(100)  # accepts connections, never answers
    try:
        p = Pipeline(
            settings=settings(
                tmp_path, f"http://127.0.0.1:{srv.getsockname()[1]}", max_queue_events=200_000
            )
        )
        samples = []
        for i in range(20_000):
            t = time.perf_counter_ns()
            p.enqueue({"id": str(i)})
            samples.append(time.perf_counter_ns() - t)
        samples.sort()
        assert samples[len(samples) // 2] < 20_000  # generous: CI machines vary
        p.shutdown(1.0)
    finally:
        srv.close()


def test_shutdown_is_idempotent_and_refuses_later_items(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    p = make(sqlite_collector.url)
    p.enqueue({"id": str(uuid.uuid4())})
    first = p.shutdown(5)
    assert first.delivered == 1 and not first.timed_out
    assert p.shutdown(5) == first
    assert p.enqueue({"id": "late"}) is False
    assert p.stats().dropped == {DropReason.SHUTDOWN: 1}


def test_enqueue_durable(sqlite_collector: CollectorThread, make: Callable[..., Pipeline]) -> None:
    """Durable mode: returns once the spool has fsynced; delivery happens by replay."""
    p = make(sqlite_collector.url)
    ids = [str(uuid.uuid4()) for _ in range(50)]
    assert p.enqueue_durable([{"id": i, "name": "durable"} for i in ids])
    wait_for(lambda: p.stats().replayed == 50)
    assert stored(sqlite_collector.data_dir, ids) == set(ids)


def test_no_api_key_keeps_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[..., Pipeline]
) -> None:
    """Without a usable API client the events are kept in the spool, never dead-lettered."""
    monkeypatch.delenv("LITERAL_API_KEY", raising=False)
    p = make("http://127.0.0.1:9", api_key=None)
    for _ in range(10):
        p.enqueue({"id": str(uuid.uuid4())})
    result = p.flush(2)
    assert (result.spooled, result.dropped) == (10, 0)
    assert p.stats().dead_lettered == 0


def test_partial_batch_goes_out_after_flush_interval(
    collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    """Fewer events than a batch, no flush: they leave once flush_interval has passed."""
    p = make(collector.url, batch_size=1000, flush_interval=0.05)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for i in ids:
        p.enqueue({"id": i})
    wait_for(lambda: p.stats().sent == 3)
    assert stored(collector.data_dir, ids) == set(ids)
    assert p.stats().batches == 1


def test_retry_policy_backoff_and_classification() -> None:
    """Exponential backoff capped at max_backoff plus jitter; what is retried and what not."""
    from agent._exceptions import (
        AuthenticationError,
        BadRequestError,
        RateLimitedError,
        RequestTooLargeError,
        ServerError,
        TransportError,
    )
    from agent.pipeline._retry import backoff_delay, is_retryable

    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.0)
    assert [round(backoff_delay(policy, n), 3) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    jittered = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.05)
    assert all(0.1 <= backoff_delay(jittered, 1) <= 0.15 for _ in range(100))
    retried = [
        TransportError("reset"),
        RateLimitedError("429", status=429, body="", retry_after=1.0),
        ServerError("503", status=503, body=""),
    ]
    not_retried = [
        BadRequestError("400", status=400, body=""),
        AuthenticationError("401", status=401, body=""),
        RequestTooLargeError("413", status=413, body=""),
    ]
    assert all(is_retryable(e) for e in retried)
    assert not any(is_retryable(e) for e in not_retried)


def test_queue_depth_and_enqueued_count_events_not_flush_markers() -> None:
    """Flush markers ride in the queue's deque but are not events: depth and the enqueued
    count (reported by stats and flush results) leave them out, before and after the take."""
    from agent.pipeline._queue import EventQueue, FlushMarker, OverflowPolicy
    from agent.pipeline._stats import Counters

    q = EventQueue(
        max_events=100,
        max_bytes=1 << 20,
        policy=OverflowPolicy.DROP_NEWEST,
        block_timeout=0.0,
        batch_size=10,
        counters=Counters(),
    )
    for i in range(3):
        assert q.put({"id": i})
    q.put_marker(FlushMarker(float("inf")))
    q.put({"id": 3})
    q.put_marker(FlushMarker(float("inf")))
    assert (q.depth(), q.enqueued) == (4, 4)
    taken = q.take(2)
    assert len(taken) == 2 and (q.depth(), q.enqueued) == (2, 4)
    taken = q.take(10)
    assert [type(item) is FlushMarker for item in taken] == [False, True, False, True]
    assert (q.depth(), q.enqueued, q.taken) == (0, 4, 4)


def test_all_acknowledged_only_for_plain_all_ok_answers(
    sqlite_collector: CollectorThread,
) -> None:
    """The exporter skips decoding an answer only when every alias plainly says ok; real
    collector answers with a refused step (first or later) or an error never qualify."""
    import httpx

    from agent._documents import add_steps_document
    from agent.pipeline._exporter import all_acknowledged

    def post(variables: dict[str, Any], n: int) -> bytes:
        body = {"query": add_steps_document(n), "variables": variables}
        headers = {"x-api-key": sqlite_collector.api_key}
        r = httpx.post(f"{sqlite_collector.url}/api/graphql", json=body, headers=headers)
        assert r.status_code == 200
        return r.content

    ok = post({"id_0": str(uuid.uuid4()), "id_1": str(uuid.uuid4())}, 2)
    assert all_acknowledged(ok, 2)
    assert not all_acknowledged(ok, 3)  # an alias missing from the answer
    bad_first = post({"id_0": str(uuid.uuid4()), "type_0": "nope", "id_1": str(uuid.uuid4())}, 2)
    bad_later = post({"id_0": str(uuid.uuid4()), "id_1": str(uuid.uuid4()), "type_1": "nope"}, 2)
    missing = post({"id_0": str(uuid.uuid4())}, 2)  # a required variable absent: an error
    for content in (bad_first, bad_later, missing):
        assert not all_acknowledged(content, 2), content
    # spacing, other shapes, a truncated or non-object body: the full path decides
    for content in (
        b'{"data": {"step0": {"ok": true, "message": null}}}',
        b'{"data":{"step0":{"ok":true,"message":null},"step1":{"ok": false}}}',
        b'{"data":{"step0":{"ok":true,"message":null}},"errors":[{"message":"x"}]}',
        b'{"data":{"step0":{"ok":true,"message":null}',
        b"",
    ):
        assert not all_acknowledged(content, 1), content


def test_refused_first_step_is_dead_lettered_rest_delivered(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline], tmp_path: Path
) -> None:
    """``ok: false`` on alias step0 (the one the fast acknowledgement check looks at)."""
    p = make(sqlite_collector.url)
    bad = str(uuid.uuid4())
    good = [str(uuid.uuid4()) for _ in range(3)]
    p.enqueue({"id": bad, "name": "bad", "type": "not-a-step-type"})
    for i in good:
        p.enqueue({"id": i, "name": "ok"})
    result = p.flush(10)
    assert (result.delivered, result.dropped) == (3, 1)
    assert stored(sqlite_collector.data_dir, good) == set(good)
    assert [e["event"]["id"] for e in DeadLetterFile(tmp_path / "dead-letter.jsonl").read()] == [
        bad
    ]
