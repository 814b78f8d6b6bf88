"""DaemonSink, the Python producer transport, against a real in-process daemon listener."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent._models import Score, Step, StepType, Thread
from agent.daemon import DaemonSink
from agent.daemon._backend import MemoryBackend
from agent.daemon._server import ServerSettings
from agent.daemon._sockets import bind_tcp, bind_unix
from agent.daemon._thread import DaemonThread
from agent.pipeline import Sink


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.005)


def serve(path: Path, backend: MemoryBackend, **settings: object) -> DaemonThread:
    return DaemonThread(backend, [bind_unix(path)], ServerSettings(**settings)).start()  # type: ignore[arg-type]


def test_is_a_pipeline_sink_and_delivers_every_kind(tmp_path: Path) -> None:
    """Steps (with generation), scores, threads and dicts arrive as the pipeline's dicts."""
    backend = MemoryBackend()
    path = tmp_path / "d.sock"
    daemon = serve(path, backend)
    sink = DaemonSink(str(path), flush_interval=0.01)
    try:
        assert isinstance(sink, Sink)
        assert sink.enqueue(Step(id="s1", name="tool", type=StepType.TOOL, input={"q": 1}))
        assert sink.enqueue(Score(name="acc", value=1.0, step_id="s1"))
        assert sink.enqueue(Thread(id="t1", name="conversation", participant_id="p"))
        assert sink.enqueue({"id": "d1", "name": "as dict", "type": "run"})
        assert sink.enqueue({"__kind__": "thread", "id": "t2", "participant_id": "p2"})
        result = sink.flush(5.0)
        assert result.pending == 0 and not result.timed_out
        assert backend.wait_for(5, 5)
    finally:
        sink.shutdown(2.0)
        daemon.stop()
    step, score, thread, as_dict, thread2 = backend.items
    assert step["id"] == "s1" and step["type"] == "tool" and step["input"] == {"q": 1}
    assert score["__kind__"] == "score" and score["stepId"] == "s1"
    assert thread["__kind__"] == "thread" and thread["participantId"] == "p"
    assert as_dict["type"] == "run" and as_dict["name"] == "as dict"
    assert thread2["participantId"] == "p2"
    assert sink.stats()["sent"] == 5


def test_buffers_while_the_daemon_is_down_and_reconnects(tmp_path: Path) -> None:
    """Items enqueued before the daemon exists are delivered once it listens."""
    path = tmp_path / "late.sock"
    sink = DaemonSink(str(path), flush_interval=0.01)
    try:
        for i in range(1000):
            assert sink.enqueue(Step(id=f"s{i}"))
        wait_until(lambda: sink.stats()["connect_failures"] > 0)
        backend = MemoryBackend()
        daemon = serve(path, backend)
        try:
            assert backend.wait_for(1000, 10)
            assert sink.flush(5).pending == 0
        finally:
            daemon.stop()
    finally:
        sink.shutdown(1.0)
    assert sorted(int(i["id"][1:]) for i in backend.items) == list(range(1000))


def test_bounded_buffer_counts_drops(tmp_path: Path) -> None:
    """With the daemon away, past max_buffer items are refused and counted, never raised."""
    sink = DaemonSink(str(tmp_path / "nobody.sock"), max_buffer=100, flush_interval=0.01)
    try:
        accepted = [sink.enqueue(Step()) for _ in range(150)]
        assert accepted.count(True) == 100
        assert sink.stats()["dropped.buffer_full"] == 50
        assert sink.flush(0.2).timed_out
    finally:
        sink.shutdown(0.2)
    assert sink.stats()["dropped.shutdown"] == 100
    assert sink.enqueue(Step()) is False
    assert sink.stats()["dropped.closed"] == 1


def test_ack_mode_resends_what_a_restarted_daemon_never_acknowledged(tmp_path: Path) -> None:
    """ack=True: batches are kept until acked; across a daemon restart nothing is lost."""
    path = tmp_path / "ack.sock"
    first = MemoryBackend()
    daemon = serve(path, first, durability="disk")
    sink = DaemonSink(str(path), ack=True, batch_size=50, flush_interval=0.01)
    try:
        for i in range(500):
            sink.enqueue(Step(id=f"a{i}"))
        assert sink.flush(5).pending == 0
        daemon.stop()
        for i in range(500, 1000):
            sink.enqueue(Step(id=f"a{i}"))
        second = MemoryBackend()
        daemon = serve(path, second, durability="disk")
        assert sink.flush(10).pending == 0
    finally:
        sink.shutdown(1.0)
        daemon.stop()
    ids = {i["id"] for i in first.items} | {i["id"] for i in second.items}
    assert ids == {f"a{i}" for i in range(1000)}
    assert sink.stats()["acked"] >= 1000


def test_from_config_uses_the_configured_socket(tmp_path: Path) -> None:
    """DaemonSink.from_config(cfg) connects where `literal-agent run` listens."""
    from agent._config import load_config

    path = tmp_path / "cfg.sock"
    config = load_config(env={"LITERAL_AGENT_DAEMON_SOCKET": str(path)})
    sink = DaemonSink.from_config(config, flush_interval=0.01)
    assert sink.address == str(path)
    sink.shutdown(0.1)


def test_tcp_address(tmp_path: Path) -> None:
    """The optional loopback TCP listener speaks the same protocol (tcp:HOST:PORT)."""
    backend = MemoryBackend()
    sock = bind_tcp("127.0.0.1:0")
    port = sock.getsockname()[1]
    with DaemonThread(backend, [sock]):
        sink = DaemonSink(f"tcp:127.0.0.1:{port}", ack=True, flush_interval=0.01)
        for _ in range(10):
            sink.enqueue(Step())
        assert sink.flush(5).pending == 0
        sink.shutdown(1)
    assert len(backend.items) == 10


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_starts_empty_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    """After fork the child has an empty buffer and its own thread; the parent keeps its own."""
    backend = MemoryBackend()
    path = tmp_path / "fork.sock"
    daemon = serve(path, backend)
    sink = DaemonSink(str(path), batch_size=10_000, flush_interval=30.0)
    try:
        for i in range(10):
            sink.enqueue(Step(id=f"parent-{i}"))
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                for i in range(5):
                    sink.enqueue(Step(id=f"child-{i}"))
                code = 0 if sink.flush(5).pending == 0 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sink.flush(5).pending == 0
        assert backend.wait_for(15, 5)
    finally:
        sink.shutdown(1.0)
        daemon.stop()
    ids = sorted(i["id"] for i in backend.items)
    assert ids == sorted([f"parent-{i}" for i in range(10)] + [f"child-{i}" for i in range(5)])


def test_literal_client_accepts_the_daemon_sink(tmp_path: Path) -> None:
    """LiteralClient(sink=DaemonSink(...)): the hook's steps go through the daemon."""
    from agent import LiteralClient

    backend = MemoryBackend()
    path = tmp_path / "hook.sock"
    daemon = serve(path, backend)
    try:
        client = LiteralClient(
            api_key="unused", url="http://127.0.0.1:9", sink=DaemonSink(str(path))
        )

        @client.step(type="tool", name="lookup")
        def lookup(x: int) -> int:
            return x * 2

        assert lookup(21) == 42
        client.flush_and_stop(5.0)
        assert backend.wait_for(1, 5)
    finally:
        daemon.stop()
    assert any(i.get("name") == "lookup" and i.get("type") == "tool" for i in backend.items)


def test_idle_connection_is_closed_by_the_sink_and_reopened_on_demand(tmp_path: Path) -> None:
    """An unused connection is dropped (idle_close) and a later item reconnects."""
    backend = MemoryBackend()
    path = tmp_path / "idle.sock"
    daemon = serve(path, backend)
    sink = DaemonSink(str(path), flush_interval=0.01, idle_close=0.1)
    try:
        sink.enqueue(Step(id="first"))
        assert backend.wait_for(1, 5)
        wait_until(lambda: not sink.stats()["connected"])
        sink.enqueue(Step(id="second"))
        assert backend.wait_for(2, 5)
    finally:
        sink.shutdown(1.0)
        daemon.stop()
    assert sink.stats()["connects"] == 2
