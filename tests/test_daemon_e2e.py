"""End to end with real processes: producers -> `literal-agent run` -> the real collector.

Every check reads the collector's SQLite database: an event counts as delivered only once
its id is stored there. Waits poll with deadlines; nothing sleeps a fixed time to wait for
a state.
"""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_process import agent_env, wait_ready

from agent.daemon._protocol import MAGIC, Ack, Batch, StepEvent, encode_frame
from agent.daemon._transport import read_reply
from agent.pipeline._spool import inspect_spool
from agent.testing import CollectorThread

pytestmark = pytest.mark.slow


def stored_ids(collector: CollectorThread, table: str = "step") -> set[str]:
    db = Path(collector.data_dir) / "collector.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in conn.execute(f"SELECT id FROM {table}")}
    finally:
        conn.close()


def wait_stored(
    collector: CollectorThread, ids: set[str], timeout: float = 45.0, table: str = "step"
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = ids - stored_ids(collector, table)
        if not missing:
            return
        assert time.monotonic() < deadline, f"{len(missing)} of {len(ids)} never stored"
        time.sleep(0.05)


class DaemonProc:
    """`literal-agent run` as a subprocess, restartable on the same socket and spool."""

    def __init__(self, tmp_path: Path, url: str, api_key: str, *extra: str) -> None:
        self.socket = tmp_path / "agent.sock"
        self.spool = tmp_path / "spool"
        self.argv = [sys.executable, "-m", "agent", "run", "--socket", str(self.socket), *extra]
        self.env = agent_env(
            tmp_path,
            LITERAL_API_URL=url,
            LITERAL_API_KEY=api_key,
            LITERAL_AGENT_SPOOL_DIRECTORY=str(self.spool),
            LITERAL_AGENT_DAEMON_DRAIN_TIMEOUT="3",
            LITERAL_AGENT_PIPELINE_FLUSH_INTERVAL="0.05",
            LITERAL_AGENT_RETRY_DEADLINE="1",
            LITERAL_AGENT_RETRY_MAX_BACKOFF="0.2",
            LITERAL_AGENT_LOGGING_LEVEL="warning",
        )
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> DaemonProc:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        wait_ready(self.proc)
        return self

    def signal(self, signum: int, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProc]]:
    made: list[DaemonProc] = []
    yield made
    for daemon in made:
        daemon.close()


PRODUCER = """
import sys
from agent._models import Step
from agent.daemon import DaemonSink
address, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sink = DaemonSink(address, ack=True, batch_size=200)
for i in range(count):
    assert sink.enqueue(Step(id=f"{prefix}-{i}", name="work", type="tool", input={"i": i}))
result = sink.shutdown(30.0)
assert result.pending == 0, (result, sink.stats())
print(sink.stats()["acked"])
"""


def run_producers(address: Path, prefixes: list[str], count: int) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(address), prefix, str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for prefix in prefixes
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert int(out.strip()) == count


SHELL_LINES = (
    '{"type":"thread","id":"shell-thread","name":"from the shell"}\n'
    '{"type":"step","id":"shell-1","name":"echo","stepType":"run","threadId":"shell-thread"}\n'
    '{"type":"generation","id":"shell-gen","parentId":"shell-1",'
    '"generation":{"type":"CHAT","model":"m","messages":[{"role":"user","content":"hi"}]}}\n'
    '{"type":"score","id":"shell-score","name":"ok","value":1,"stepId":"shell-1"}\n'
)


def shell_producer(address: Path) -> None:
    """`printf ... | socat - UNIX-CONNECT:sock` when socat exists, else a raw python socket."""
    if shutil.which("socat"):
        cmd = f"printf '%s' '{SHELL_LINES}' | socat -t 5 - UNIX-CONNECT:{address}"
        subprocess.run(["sh", "-c", cmd], check=True, timeout=30)
        return
    one_liner = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
        "s.sendall(sys.argv[2].encode()); s.shutdown(socket.SHUT_WR); s.recv(1)"
    )
    subprocess.run(
        [sys.executable, "-c", one_liner, str(address), SHELL_LINES], check=True, timeout=30
    )


def test_producer_processes_and_a_shell_feed_one_daemon_into_the_collector(
    tmp_path: Path, fresh_sqlite_collector: CollectorThread, daemons: list[DaemonProc]
) -> None:
    """3 Python producer processes (DaemonSink) + a shell producer -> every event stored."""
    daemon = DaemonProc(tmp_path, fresh_sqlite_collector.url, fresh_sqlite_collector.api_key)
    daemons.append(daemon.start())
    shell = threading.Thread(target=shell_producer, args=(daemon.socket,))
    shell.start()
    run_producers(daemon.socket, ["a", "b", "c"], 1000)
    shell.join(30)
    expected = {f"{p}-{i}" for p in "abc" for i in range(1000)} | {"shell-1", "shell-gen"}
    wait_stored(fresh_sqlite_collector, expected)
    wait_stored(fresh_sqlite_collector, {"shell-thread"}, table="thread")
    wait_stored(fresh_sqlite_collector, {"shell-score"}, table="score")
    assert daemon.signal(signal.SIGTERM) == 0


def test_sigterm_drains_spools_the_rest_and_the_next_run_delivers_it(
    tmp_path: Path, fresh_sqlite_collector: CollectorThread, daemons: list[DaemonProc]
) -> None:
    """Backend down: SIGTERM exits within drain_timeout with the rest in the spool;
    the next run (backend up) delivers all of it."""
    with socket.socket() as probe:  # a port nobody listens on: the backend is down
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    first = DaemonProc(tmp_path, dead_url, fresh_sqlite_collector.api_key)
    daemons.append(first.start())
    run_producers(first.socket, ["x", "y"], 1000)  # acked = in the daemon's memory
    started = time.monotonic()
    assert first.signal(signal.SIGTERM) == 0
    assert time.monotonic() - started < 3 + 5  # drain_timeout + process exit margin
    report = inspect_spool(first.spool)
    assert report.records > 0 and not report.in_use
    second = DaemonProc(tmp_path, fresh_sqlite_collector.url, fresh_sqlite_collector.api_key)
    daemons.append(second.start())
    wait_stored(fresh_sqlite_collector, {f"{p}-{i}" for p in "xy" for i in range(1000)})
    assert second.signal(signal.SIGTERM) == 0


class AckingProducer(threading.Thread):
    """Sends batches with ack=True as fast as the daemon acks them; reconnects forever.

    Only ids in acknowledged batches are recorded: those are the ones promised durable.
    """

    def __init__(self, address: Path) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.acked: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.next_id = 0

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(5)
                    sock.connect(str(self.address))
                    sock.sendall(MAGIC)
                    self._pump(sock)
            except OSError:
                self.stop.wait(0.01)

    def _pump(self, sock: socket.socket) -> None:
        in_flight: dict[int, list[str]] = {}
        seq = 0
        while not self.stop.is_set():
            while len(in_flight) < 4:
                seq += 1
                ids = [f"k{self.next_id + j}" for j in range(100)]
                self.next_id += 100
                events = [StepEvent(id=i, name="durable", input="x" * 500) for i in ids]
                sock.sendall(encode_frame(Batch(events=events, seq=seq, ack=True)))
                in_flight[seq] = ids
            reply = read_reply(sock)
            assert isinstance(reply, Ack) and reply.durable and reply.rejected == 0
            ids = in_flight.pop(reply.seq)
            if reply.accepted == len(ids):
                with self.lock:
                    self.acked.update(ids)


def test_disk_mode_sigkill_under_load_loses_no_acknowledged_event(
    tmp_path: Path, fresh_sqlite_collector: CollectorThread, daemons: list[DaemonProc]
) -> None:
    """disk durability: SIGKILL the daemon under load 3 times; every acked id is stored."""

    def make() -> DaemonProc:
        return DaemonProc(
            tmp_path,
            fresh_sqlite_collector.url,
            fresh_sqlite_collector.api_key,
            "--durability",
            "disk",
        )

    daemon = make()
    daemons.append(daemon.start())
    producer = AckingProducer(daemon.socket)
    producer.start()
    try:
        for _round in range(3):
            target = producer.count() + 1500
            deadline = time.monotonic() + 30
            while producer.count() < target:
                assert time.monotonic() < deadline, "producer made no progress"
                time.sleep(0.01)
            assert daemon.proc is not None
            os.kill(daemon.proc.pid, signal.SIGKILL)
            daemon.proc.wait(10)
            daemon = make()
            daemons.append(daemon.start())
    finally:
        producer.stop.set()
        producer.join(10)
    acked = set(producer.acked)
    assert len(acked) >= 4500
    wait_stored(fresh_sqlite_collector, acked, timeout=60)
    assert daemon.signal(signal.SIGTERM) == 0


def _spooled(directory: Path, ids: list[str]) -> None:
    """Put steps in a spool the way the daemon's disk mode does (backend down)."""
    from agent.pipeline import Pipeline, Settings

    pipeline = Pipeline(
        settings=Settings(spool_directory=directory, url="http://127.0.0.1:9", api_key="k")
    )
    assert pipeline.enqueue_durable([{"id": i, "name": "spooled", "type": "run"} for i in ids])
    pipeline.shutdown(0.5)


def agent_cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_spool_inspect_replay_and_purge_commands(
    tmp_path: Path, fresh_sqlite_collector: CollectorThread
) -> None:
    """`spool inspect` sees the records, `replay` delivers them, `purge` deletes them."""
    spool = tmp_path / "spool"
    _spooled(spool, [f"r{i}" for i in range(300)])
    env = agent_env(
        tmp_path,
        LITERAL_API_URL=fresh_sqlite_collector.url,
        LITERAL_API_KEY=fresh_sqlite_collector.api_key,
    )
    inspect = agent_cli("spool", "inspect", "--dir", str(spool), env=env)
    assert inspect.returncode == 0 and "records" in inspect.stdout
    assert inspect_spool(spool).records > 0
    # stderr on a terminal (a real pty): the progress bar is drawn there
    master, slave = pty.openpty()
    replay = subprocess.run(
        [sys.executable, "-m", "agent", "spool", "replay", "--dir", str(spool)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        timeout=60,
        check=False,
    )
    os.close(slave)
    drawn = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(master, 65536):
            drawn += chunk
    os.close(master)
    assert replay.returncode == 0, drawn
    assert "replayed 1 of 1 records" in replay.stdout
    assert b"[" + b"#" * 30 + b"]" in drawn  # the bar reached 100%
    wait_stored(fresh_sqlite_collector, {f"r{i}" for i in range(300)}, timeout=10)
    assert inspect_spool(spool).records == 0

    other = tmp_path / "other"
    _spooled(other, ["p1", "p2"])
    purge = agent_cli("spool", "purge", "--yes", "--dir", str(other), env=env)
    assert purge.returncode == 0 and "purged" in purge.stdout
    assert inspect_spool(other).records == 0
