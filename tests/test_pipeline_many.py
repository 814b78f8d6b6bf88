"""``Pipeline.enqueue_many`` (chunks: one queue operation for many events) and the
batch-level spool encoding, against the real collector on loopback and real spool files."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import dead_port, settings, stored, wait_for

from agent._models import Score, Step, Thread
from agent.pipeline import DropReason, OverflowPolicy, Pipeline, suppressed
from agent.pipeline._batcher import decode_record, encode_events
from agent.pipeline._queue import Chunk
from agent.pipeline._spool import Spool
from agent.testing import CollectorThread


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def factory(url: str, **kw: Any) -> Pipeline:
        start = kw.pop("start", True)
        directory = kw.pop("directory", tmp_path)
        p = Pipeline(settings=settings(directory, url, **kw), start=start)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.shutdown(2.0)


def wire_steps(n: int, name: str = "many") -> list[dict[str, Any]]:
    """Step dicts in wire form, as the daemon's decoder builds them."""
    return [
        {"id": str(uuid.uuid4()), "type": "run", "name": name, "metadata": {"i": i}}
        for i in range(n)
    ]


def queued_ids(p: Pipeline) -> list[str]:
    """The ids in the queue, oldest first, chunks flattened."""
    out: list[str] = []
    for item in p._queue.dq:
        items = item.items if type(item) is Chunk else [item]
        out.extend(e["id"] for e in items)
    return out


@pytest.mark.parametrize("validated", [True, False])
def test_enqueue_many_delivers_exactly_the_ids_given(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline], validated: bool
) -> None:
    """Chunks of both kinds reach the collector: every id given, nothing else, one flush."""
    p = make(sqlite_collector.url, batch_size=100)
    events = wire_steps(1000)
    chunks = [events[i : i + 256] for i in range(0, len(events), 256)]
    assert [p.enqueue_many(c, validated=validated, nbytes=200 * len(c)) for c in chunks] == [
        len(c) for c in chunks
    ]
    result = p.flush(10)
    assert (result.delivered, result.timed_out) == (1000, False)
    ids = [e["id"] for e in events]
    assert stored(sqlite_collector.data_dir, ids) == set(ids)
    stats = p.stats()
    assert (stats.enqueued, stats.sent, stats.dropped) == (1000, 1000, {})


def test_unvalidated_chunk_normalises_each_item_and_counts_invalid(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    """Without ``validated`` every kind is accepted and bad items are counted, not sent."""
    p = make(sqlite_collector.url)
    step = Step(name="from-model")
    thread = Thread(id=str(uuid.uuid4()), name="t")
    score = Score(name="s", value=1.0, step_id=step.id)
    plain = wire_steps(3)
    items: list[Any] = [step, thread, score, *plain, 42, {"name": "no id"}]
    assert p.enqueue_many(items) == len(items)  # accepted into the queue...
    result = p.flush(10)
    assert result.timed_out is False
    # ...and the two bad ones are counted by the worker
    assert p.stats().dropped == {DropReason.INVALID: 2}
    ids = [step.id, *(e["id"] for e in plain)]
    assert stored(sqlite_collector.data_dir, ids) == set(ids)


def test_validated_chunks_are_cut_at_batch_size(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    """Chunks of 256 make batches of exactly ``batch_size`` (one request each)."""
    p = make(sqlite_collector.url, batch_size=100, start=False)
    events = wire_steps(1000)
    for i in range(0, 1000, 256):
        p.enqueue_many(events[i : i + 256], validated=True, nbytes=256 * 150)
    assert p.stats().queue_depth == 1000
    p.start()
    assert p.flush(10).delivered == 1000
    assert p.stats().batches == 10


def test_validated_chunks_are_cut_at_batch_bytes(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline]
) -> None:
    """The chunk's wire size bounds batches by bytes too: 1 KB events, 10 KB batches."""
    p = make(sqlite_collector.url, batch_size=500, batch_bytes=10_000, start=False)
    events = wire_steps(100)
    p.enqueue_many(events, validated=True, nbytes=100 * 1000)
    p.start()
    assert p.flush(10).delivered == 100
    assert p.stats().batches == 10


@pytest.mark.parametrize(
    ("policy", "accepted", "dropped", "left"),
    [
        (OverflowPolicy.DROP_NEWEST, 10, {DropReason.QUEUE_FULL: 5}, range(0, 10)),
        (OverflowPolicy.DROP_OLDEST, 15, {DropReason.DROP_OLDEST: 5}, range(5, 15)),
        (OverflowPolicy.BLOCK, 10, {DropReason.BLOCK_TIMEOUT: 5}, range(0, 10)),
        (OverflowPolicy.SPILL, 10, {DropReason.QUEUE_FULL: 5}, range(0, 10)),
    ],
)
def test_enqueue_many_overflow_policies(
    tmp_path: Path, policy: OverflowPolicy, accepted: int, dropped: dict[str, int], left: range
) -> None:
    """Chunks are bounded by their events: each policy cuts them event by event, and every
    refused or evicted event is counted with its reason."""
    p = Pipeline(
        settings=settings(
            tmp_path, "http://127.0.0.1:9", max_queue_events=10, overflow=policy, block_timeout=0.01
        ),
        start=False,
    )
    events = [{"id": f"e{i}"} for i in range(15)]
    got = [p.enqueue_many(events[i : i + 4], validated=True) for i in range(0, 15, 4)]
    assert sum(got) == accepted
    stats = p.stats()
    assert stats.dropped == dropped
    assert stats.queue_depth == 10
    assert stats.enqueued == 15 if policy is OverflowPolicy.DROP_OLDEST else accepted
    assert queued_ids(p) == [f"e{i}" for i in left]
    p.shutdown(0.5)


def test_drop_oldest_chunk_larger_than_the_queue(tmp_path: Path) -> None:
    """A chunk bigger than the whole queue keeps its newest events only."""
    p = Pipeline(
        settings=settings(
            tmp_path, "http://127.0.0.1:9", max_queue_events=10, overflow=OverflowPolicy.DROP_OLDEST
        ),
        start=False,
    )
    p.enqueue({"id": "single"})
    assert p.enqueue_many([{"id": f"e{i}"} for i in range(25)], validated=True) == 10
    assert queued_ids(p) == [f"e{i}" for i in range(15, 25)]
    assert p.stats().dropped == {DropReason.DROP_OLDEST: 16}
    p.shutdown(0.5)


def test_enqueue_many_refused_after_shutdown_and_when_suppressed(tmp_path: Path) -> None:
    """Never raises: after shutdown, inside ``suppressed()`` or for an odd argument."""
    p = Pipeline(settings=settings(tmp_path, "http://127.0.0.1:9"), start=False)
    with suppressed():
        assert p.enqueue_many(wire_steps(3), validated=True) == 0
    assert p.enqueue_many([]) == 0
    assert p.enqueue_many(None) == 0  # type: ignore[arg-type]
    p.shutdown(0.5)
    assert p.enqueue_many(wire_steps(4)) == 0
    assert p.stats().dropped == {DropReason.REENTRANT: 3, DropReason.SHUTDOWN: 4}


def test_chunks_spilled_while_down_are_replayed_by_the_next_run(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline], tmp_path: Path
) -> None:
    """Backend down: chunks go to the spool as whole-batch records; the next pipeline on
    the same spool delivers every id."""
    down = make(f"http://127.0.0.1:{dead_port()}", batch_size=100)
    events = wire_steps(700)
    for i in range(0, 700, 256):
        down.enqueue_many(events[i : i + 256], validated=True, nbytes=256 * 120)
    result = down.flush(1.5)
    assert result.spooled + result.delivered == 700
    down.shutdown(2.0)
    up = make(sqlite_collector.url, batch_size=100)
    wait_for(lambda: up.stats().replayed == 700)
    ids = [e["id"] for e in events]
    assert stored(sqlite_collector.data_dir, ids) == set(ids)


def test_batch_encoding_leaves_out_what_msgpack_cannot_carry(tmp_path: Path) -> None:
    """One encoder call per record; an event it cannot encode is dropped alone, counted."""
    good = wire_steps(3)
    bad = {"id": "bad", "metadata": {"huge": 2**70}}
    assert decode_record(encode_events(good)) == good
    p = Pipeline(settings=settings(tmp_path, "http://127.0.0.1:9"), start=False)
    record = encode_events([good[0], bad, *good[1:]], p._counters)
    assert decode_record(record) == good
    assert p.stats().dropped == {DropReason.INVALID: 1}
    p.shutdown(0.5)


def test_enqueue_durable_validated_writes_one_record(
    sqlite_collector: CollectorThread, make: Callable[..., Pipeline], tmp_path: Path
) -> None:
    """Disk durability with validated dicts: one record (one array) per call, replayed."""
    p = make(f"http://127.0.0.1:{dead_port()}", start=True)
    assert p.wait_ready(10)
    events = wire_steps(50, name="durable")
    assert p.enqueue_durable(events, validated=True)
    assert p.stats().spilled == 50
    p.shutdown(2.0)
    with Spool(tmp_path / "spool", fsync_interval=None) as spool:
        records = spool.read(100)
    decoded = list(chain.from_iterable(decode_record(data) for _, data in records))
    assert [e["id"] for e in decoded] == [e["id"] for e in events]
    up = make(sqlite_collector.url)
    wait_for(lambda: up.stats().replayed == 50)
    ids = [e["id"] for e in events]
    assert stored(sqlite_collector.data_dir, ids) == set(ids)


def test_spill_backpressure_holds_a_fast_producer_instead_of_dropping(
    tmp_path: Path, make: Callable[..., Pipeline]
) -> None:
    """Backend down, a 200-event queue and a producer in a tight loop: it is held back while
    the worker spills (``producer_waits``, ``producer_wait_max_ms``) and nothing is lost."""
    p = make(f"http://127.0.0.1:{dead_port()}", max_queue_events=200, batch_size=50)
    assert p.wait_ready(10)
    events = wire_steps(20_000)
    assert all(p.enqueue(e) for e in events)
    assert p.flush(10).timed_out is False
    stats = p.stats()
    assert stats.dropped == {}
    assert stats.producer_waits > 0
    assert 0 < stats.producer_wait_max_ms < 500
    assert stats.spilled == 20_000
