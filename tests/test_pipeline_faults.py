"""The pipeline under real faults: a collector process stopped and restarted, a TCP proxy
injecting 429/503/413/resets/stalls, producers killed with SIGKILL, corrupted and full
spools, fork, and interpreter exit with the backend up and down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, Reset, Respond, Stall, TooLarge, ids_once
from test_pipeline import dead_port, settings, stored, wait_for

from agent.pipeline import Pipeline, RetryPolicy
from agent.pipeline._spool import Spool
from agent.testing import CollectorProcess, CollectorThread

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def proxy(sqlite_collector: CollectorThread) -> Iterator[FaultProxy]:
    with FaultProxy(sqlite_collector.port) as running:
        yield running


def ids(n: int, prefix: str = "") -> list[str]:
    return [f"{prefix}{uuid.uuid4()}" for _ in range(n)]


def test_collector_process_restarted_mid_stream(tmp_path: Path) -> None:
    """Stop the collector process mid-stream, keep producing, restart it on the same port:
    every step id produced is stored exactly once."""
    with CollectorProcess(tmp_path / "collector") as collector:
        p = Pipeline(
            settings=settings(
                tmp_path,
                collector.url,
                batch_size=50,
                retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.2, jitter=0.01, deadline=0.5),
            )
        )
        produced = ids(3000)
        first, second, third = produced[:1000], produced[1000:2000], produced[2000:]
        for i in first:
            p.enqueue({"id": i, "name": "before"})
        wait_for(lambda: p.stats().sent >= 500)
        collector.stop()
        for i in second:
            p.enqueue({"id": i, "name": "during"})
        wait_for(lambda: not p.stats().backend_up)
        wait_for(lambda: p.stats().spilled > 0)
        collector.start()
        for i in third:
            p.enqueue({"id": i, "name": "after"})
        wait_for(lambda: p.stats().backend_up and p.stats().spool_records == 0, timeout=20)
        result = p.flush(10)
        assert not result.timed_out
        p.shutdown(5)
        assert stored(collector.data_dir, produced) == set(produced)
        stats = p.stats()
        assert stats.replayed > 0 and stats.dropped == {}


def test_proxy_429_honours_retry_after_and_503_retries(
    tmp_path: Path, sqlite_collector: CollectorThread, proxy: FaultProxy
) -> None:
    """429 with Retry-After waits that long; 503 is retried with backoff; all delivered."""
    p = Pipeline(
        settings=settings(
            tmp_path,
            proxy.url,
            batch_size=10,
            retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.05, jitter=0.0, deadline=5.0),
        )
    )
    proxy.push(Respond(429, {"Retry-After": "0.3"}), Respond(503), Respond(503))
    produced = ids(10)
    for i in produced:
        p.enqueue({"id": i})
    assert p.flush(10).delivered == 10
    records = proxy.snapshot()
    assert [r.status for r in records[:4]] == [429, 503, 503, 200]
    assert records[1].time - records[0].time >= 0.29
    assert stored(sqlite_collector.data_dir, produced) == set(produced)
    assert p.stats().retried == 3
    p.shutdown(2)


def test_proxy_resets_and_stalls(
    tmp_path: Path, sqlite_collector: CollectorThread, proxy: FaultProxy
) -> None:
    """Connection resets and a stalled request (client timeout) are retried; nothing lost."""
    from agent._config import ClientConfig

    p = Pipeline(
        settings=settings(
            tmp_path,
            proxy.url,
            batch_size=20,
            client=ClientConfig(timeout=0.5),
            retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.05, jitter=0.0, deadline=10.0),
        )
    )
    proxy.push(Reset(), Stall(5.0), Reset())
    produced = ids(100)
    for i in produced:
        p.enqueue({"id": i})
    result = p.flush(15)
    assert (result.delivered, result.timed_out) == (100, False)
    assert stored(sqlite_collector.data_dir, produced) == set(produced)
    assert p.stats().retried >= 3
    p.shutdown(2)


def test_proxy_413_splits_batches(
    tmp_path: Path, sqlite_collector: CollectorThread, proxy: FaultProxy
) -> None:
    """413 splits the batch in halves until each half fits; nothing is sent twice."""
    proxy.set_default(TooLarge(20_000))
    p = Pipeline(settings=settings(tmp_path, proxy.url, batch_size=64))
    produced = ids(64)
    for i in produced:
        p.enqueue({"id": i, "input": {"content": "x" * 1000}})
    assert p.flush(10).delivered == 64
    assert stored(sqlite_collector.data_dir, produced) == set(produced)
    assert ids_once(proxy.forwarded_ids(), produced) == []
    assert any(r.status == 413 for r in proxy.snapshot())
    p.shutdown(2)


def test_single_step_too_large_is_dead_lettered(
    tmp_path: Path, sqlite_collector: CollectorThread, proxy: FaultProxy
) -> None:
    proxy.set_default(TooLarge(5_000))
    p = Pipeline(settings=settings(tmp_path, proxy.url, batch_size=8))
    big = str(uuid.uuid4())
    small = ids(7)
    p.enqueue({"id": big, "input": {"content": "x" * 10_000}})
    for i in small:
        p.enqueue({"id": i})
    result = p.flush(10)
    assert (result.delivered, result.dropped) == (7, 1)
    assert p.stats().dead_lettered == 1
    p.shutdown(2)


def test_auth_error_is_not_retried_but_spooled(
    tmp_path: Path, sqlite_collector: CollectorThread
) -> None:
    """401: no retry; the events wait in the spool (the key may be fixed), nothing dropped."""
    p = Pipeline(settings=settings(tmp_path, sqlite_collector.url, api_key="wrong-key"))
    for i in ids(5):
        p.enqueue({"id": i})
    result = p.flush(5)
    assert result.spooled == 5
    stats = p.stats()
    assert stats.retried == 0 and not stats.backend_up and stats.dropped == {}
    p.shutdown(2)


# ----------------------------------------------------------------------- processes

PRODUCER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agent.pipeline import Pipeline, RetryPolicy, Settings

    url, spool, prefix, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[5]
    n = int(sys.argv[4])
    p = Pipeline(settings=Settings(
        api_key="test-key", url=url, spool_directory=spool, dead_letter=spool.parent / "dl.jsonl",
        batch_size=100, flush_interval=0.05, shutdown_timeout=float(sys.argv[6]),
        retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.2, jitter=0.0, deadline=0.3)))
    for i in range(n):
        p.enqueue({"id": f"{prefix}-{i}", "name": "x", "input": {"content": "y" * 500}})
    if mode == "spill-then-hang":
        r = p.flush(10)
        print(f"spooled {r.spooled}", flush=True)
        i = n
        while True:  # keep spilling until killed
            p.enqueue({"id": f"{prefix}-extra-{i}", "input": {"content": "z" * 500}})
            i += 1
            if i % 1000 == 0:
                time.sleep(0.001)
    print("exiting", flush=True)
    # plain interpreter exit: no flush, no shutdown (the atexit hook does it)
    """
)


def run_producer(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def replay_into(tmp_path: Path, collector: CollectorThread, spool: Path) -> Pipeline:
    p = Pipeline(settings=settings(tmp_path, collector.url, spool_directory=spool))
    assert p.wait_ready(10)
    wait_for(lambda: p.stats().spool_records == 0, timeout=20)
    p.flush(5)
    return p


def test_plain_exit_without_flush_delivers_everything(
    tmp_path: Path, sqlite_collector: CollectorThread
) -> None:
    proc = run_producer(
        tmp_path, sqlite_collector.url, str(tmp_path / "spool"), "exit-up", "2000", "exit", "15"
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    produced = [f"exit-up-{i}" for i in range(2000)]
    assert len(stored(sqlite_collector.data_dir, produced)) == len(produced), out + err


def test_exit_with_backend_down_is_bounded_then_replayed(
    tmp_path: Path, sqlite_collector: CollectorThread
) -> None:
    spool = tmp_path / "spool"
    start = time.monotonic()
    proc = run_producer(
        tmp_path, f"http://127.0.0.1:{dead_port()}", str(spool), "exit-down", "5000", "exit", "2"
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - start < 2.0 + 2.0  # shutdown_timeout + interpreter start-up
    produced = [f"exit-down-{i}" for i in range(5000)]
    p = replay_into(tmp_path, sqlite_collector, spool)
    assert stored(sqlite_collector.data_dir, produced) == set(produced)
    p.shutdown(2)


def test_sigkill_while_spilling_then_replay(
    tmp_path: Path, sqlite_collector: CollectorThread
) -> None:
    """SIGKILL a producer in the middle of spilling: what it had spooled is delivered by
    the next run (the torn tail is truncated on recovery)."""
    spool = tmp_path / "spool"
    proc = run_producer(
        tmp_path,
        f"http://127.0.0.1:{dead_port()}",
        str(spool),
        "killed",
        "3000",
        "spill-then-hang",
        "2",
    )
    watchdog = threading.Timer(30, proc.kill)  # never leave it spilling forever
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = ""
        for line in proc.stdout:  # structlog's console output shares stdout
            if line.startswith("spooled"):
                break
        assert line.strip() == "spooled 3000"
        wait_for(lambda: sum(f.stat().st_size for f in spool.glob("*.spool")) > 3_000_000)
        proc.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(10)
    p = replay_into(tmp_path, sqlite_collector, spool)
    produced = [f"killed-{i}" for i in range(3000)]
    assert stored(sqlite_collector.data_dir, produced) == set(produced)
    assert p.stats().replayed > 3000
    p.shutdown(2)


def spill_offline(tmp_path: Path, spool: Path, produced: list[str], **kw: Any) -> Pipeline:
    p = Pipeline(
        settings=settings(tmp_path, f"http://127.0.0.1:{dead_port()}", spool_directory=spool, **kw)
    )
    for i in produced:
        p.enqueue({"id": i, "input": {"content": "c" * 200}})
    p.flush(3)
    p.shutdown(2)
    return p


def test_corrupted_segment_is_skipped_and_counted(
    tmp_path: Path, sqlite_collector: CollectorThread
) -> None:
    spool = tmp_path / "spool"
    produced = ids(1000)
    spill_offline(tmp_path, spool, produced, batch_size=100)
    segments = sorted(spool.glob("seg-*.spool"))
    assert segments
    data = bytearray(segments[0].read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0xFF  # flip a byte inside one record
    segments[0].write_bytes(bytes(data))
    p = Pipeline(settings=settings(tmp_path, sqlite_collector.url, spool_directory=spool))
    assert p.wait_ready(10)
    wait_for(lambda: p.stats().spool_records == 0, timeout=20)
    delivered = stored(sqlite_collector.data_dir, produced)
    # one record (up to 4 batches of 100 spilled together) lost, the rest replayed
    assert 600 <= len(delivered) < 1000
    assert p.stats().spool_corrupt == 1
    p.shutdown(2)


def test_full_spool_drops_are_counted(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    produced = ids(3000)
    p = spill_offline(
        tmp_path, spool, produced, batch_size=100, spool_max_bytes=200_000, segment_bytes=50_000
    )
    total = sum(f.stat().st_size for f in spool.glob("seg-*.spool"))
    assert total <= 200_000
    with Spool(spool) as reopened:
        kept = len(reopened)
    assert 0 < kept < 30  # at most 2000 events fit: the oldest segments were dropped
    assert p.stats().spilled == 3000  # accepted by the spool, some later evicted at its cap


def _parent_after_fork(
    p: Pipeline, pid: int, produced: list[str], proxy: FaultProxy, collector: CollectorThread
) -> None:
    """The parent's side of a fork test: the child exited 0 (its own checks passed), the
    parent's flush completes, and every id of either process was sent once and stored."""
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert p.flush(10).timed_out is False
    assert ids_once(proxy.forwarded_ids(), produced) == []
    assert stored(collector.data_dir, produced) == set(produced)


def test_fork_mid_stream(
    tmp_path: Path, sqlite_collector: CollectorThread, proxy: FaultProxy
) -> None:
    """Fork while events are queued: the child gets a fresh, empty pipeline; nothing is
    sent twice; parent's and child's events all arrive."""
    p = Pipeline(settings=settings(tmp_path, proxy.url, batch_size=50))
    before = ids(500, "parent-")
    for i in before:
        p.enqueue({"id": i})
    child_ids = [f"child-{n}" for n in range(300)]
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            assert p.stats().queue_depth == 0
            for i in child_ids:
                p.enqueue({"id": i})
            r = p.flush(10)
            code = 0 if r.delivered == 300 and not r.timed_out else 2
        finally:
            os._exit(code)
    after = ids(500, "parent-")
    for i in after:
        p.enqueue({"id": i})
    _parent_after_fork(p, pid, before + after + child_ids, proxy, sqlite_collector)
    p.shutdown(2)


def test_enqueue_held_across_fork_reaches_the_childs_worker(
    tmp_path: Path, sqlite_collector: CollectorThread, proxy: FaultProxy
) -> None:
    """``Pipeline.enqueue`` is the queue's bound ``put``; a reference taken before a fork
    (as the hook's SinkHolder keeps one) still feeds the child's fresh pipeline, whose
    counters start from zero; the parent's references keep working too."""
    from agent._hook_sink import SinkHolder

    p = Pipeline(settings=settings(tmp_path, proxy.url, batch_size=50))
    assert p.enqueue == p._queue.put
    put = p.enqueue
    holder = SinkHolder(None, sink=p)
    before = ids(200, "parent-")
    for i in before:
        put({"id": i})
    child_ids = [f"child-{n}" for n in range(300)]
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            assert p.stats().queue_depth == 0 and p.stats().enqueued == 0
            for i in child_ids[:150]:
                put({"id": i})
            for i in child_ids[150:]:
                assert holder.enqueue({"id": i})
            r = p.flush(10)
            st = p.stats()
            ok = r.delivered == 300 and not r.timed_out and st.enqueued == st.sent == 300
            code = 0 if ok else 2
        finally:
            os._exit(code)
    after = ids(200, "parent-")
    for i in after:
        holder.enqueue({"id": i})
    _parent_after_fork(p, pid, before + after + child_ids, proxy, sqlite_collector)
    assert p.stats().sent == 400
    p.shutdown(2)
    assert not put({"id": "after-shutdown"})  # closed: refused and counted
    assert p.stats().dropped.get("shutdown") == 1


def test_concurrent_producers(tmp_path: Path, sqlite_collector: CollectorThread) -> None:
    """Many threads enqueue at once: counts add up, everything delivered once."""
    p = Pipeline(settings=settings(tmp_path, sqlite_collector.url, batch_size=200))
    per_thread = [ids(2000) for _ in range(4)]

    def produce(chunk: list[str]) -> None:
        for i in chunk:
            p.enqueue({"id": i})

    threads = [threading.Thread(target=produce, args=(c,)) for c in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.flush(20).timed_out is False
    flat = [i for c in per_thread for i in c]
    assert stored(sqlite_collector.data_dir, flat) == set(flat)
    assert p.stats().enqueued == 8000
    p.shutdown(2)


def test_replay_is_oldest_first_and_before_new_data(
    tmp_path: Path, sqlite_collector: CollectorThread, proxy: FaultProxy
) -> None:
    """Spooled events go out in the order they were produced, before anything new."""
    spool = tmp_path / "spool"
    old = [f"old-{n:04d}-{uuid.uuid4()}" for n in range(1000)]
    spill_offline(tmp_path, spool, old, batch_size=100, max_in_flight=1)
    p = Pipeline(settings=settings(tmp_path, proxy.url, spool_directory=spool, max_in_flight=1))
    new = [f"new-{n:04d}-{uuid.uuid4()}" for n in range(200)]
    for i in new:
        p.enqueue({"id": i})
    assert p.wait_ready(10)
    wait_for(lambda: p.stats().spool_records == 0, timeout=20)
    assert not p.flush(10).timed_out
    sent = [i for r in proxy.snapshot() if r.status == 200 for i in r.step_ids]
    assert sent == old + new
    p.shutdown(2)


def test_pipeline_from_agent_config(tmp_path: Path, sqlite_collector: CollectorThread) -> None:
    """``Pipeline(config)`` reads every knob from the agent configuration."""
    from agent._config import load_config

    config = load_config(
        env={
            "LITERAL_API_KEY": sqlite_collector.api_key,
            "LITERAL_API_URL": sqlite_collector.url,
            "LITERAL_AGENT_PIPELINE_BATCH_SIZE": "7",
            "LITERAL_AGENT_PIPELINE_OVERFLOW": "drop_newest",
            "LITERAL_AGENT_SPOOL_DIRECTORY": str(tmp_path / "spool"),
            "LITERAL_AGENT_RETRY_MAX_ATTEMPTS": "3",
        }
    )
    p = Pipeline(config)
    assert (p.settings.batch_size, p.settings.overflow, p.settings.retry.max_attempts) == (
        7,
        "drop_newest",
        3,
    )
    assert p.settings.spool_directory == tmp_path / "spool"
    produced = ids(20)
    for i in produced:
        p.enqueue({"id": i})
    assert p.flush(10).delivered == 20
    assert p.stats().batches == 3
    assert stored(sqlite_collector.data_dir, produced) == set(produced)
    p.shutdown(2)


def test_exit_with_backend_stalled_is_bounded(tmp_path: Path, collector: CollectorThread) -> None:
    """A backend that accepts connections and never answers: the exit still finishes within
    shutdown_timeout (requests in flight are abandoned and their events spooled)."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    spool = tmp_path / "spool"
    try:
        start = time.monotonic()
        proc = run_producer(
            tmp_path,
            f"http://127.0.0.1:{srv.getsockname()[1]}",
            str(spool),
            "stalled",
            "3000",
            "exit",
            "1.5",
        )
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        srv.close()
    assert proc.returncode == 0, err
    assert elapsed < 1.5 + 2.0  # shutdown_timeout + interpreter start-up
    produced = [f"stalled-{i}" for i in range(3000)]
    p = replay_into(tmp_path, collector, spool)
    assert stored(collector.data_dir, produced) == set(produced)
    p.shutdown(2)
