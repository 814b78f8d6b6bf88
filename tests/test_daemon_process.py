"""`literal-agent run` as a real process: ready line, signals, systemd notify and activation.

These runs use ``--discard`` (events are accepted and counted, nothing is sent) so they test
the process and its sockets alone; tests/test_daemon_e2e.py feeds the real collector.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.daemon._protocol import Ack, Batch, Ping, Pong, Status, StatusReply, StepEvent
from agent.daemon._transport import DaemonClient

READY = "literal-agent daemon listening on "


def agent_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LITERAL_", "NOTIFY_", "LISTEN_"))
    }
    env.update(
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_RUNTIME_DIR=str(tmp_path / "runtime"),
        LITERAL_AGENT_LOGGING_FORMAT="json",
        **extra,
    )
    return env


def wait_ready(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    """Read stdout until the ready line (the process prints nothing else on stdout)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(READY):
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {proc.returncode}: {proc.stderr and proc.stderr.read()}"
            )
    raise AssertionError("daemon not ready in time")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def start(
    procs: list[subprocess.Popen[str]], argv: list[str], env: dict[str, str], **kwargs: object
) -> subprocess.Popen[str]:
    proc: subprocess.Popen[str] = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )
    procs.append(proc)
    return proc


def test_run_serves_and_stops_cleanly_on_sigterm(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """Ready line names the socket; events are acked; SIGTERM exits 0 and removes the socket."""
    sock_path = tmp_path / "runtime" / "literal-agent" / "agent.sock"
    proc = start(spawn, [sys.executable, "-m", "agent", "run", "--discard"], agent_env(tmp_path))
    line = wait_ready(proc)
    assert f"unix:{sock_path}" in line and "durability memory" in line
    assert oct(sock_path.stat().st_mode & 0o777) == oct(0o660)
    with DaemonClient(str(sock_path)) as client:
        assert client.request(Batch(events=[StepEvent()] * 10, seq=1, ack=True)) == Ack(
            seq=1, accepted=10
        )
        status = client.request(Status())
    assert isinstance(status, StatusReply) and status.daemon["events_accepted"] == 10
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert not sock_path.exists()


def test_cli_status_and_flush_against_a_running_daemon(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """`literal-agent status` prints tables; `flush` reports; both exit 0."""
    sock_path = tmp_path / "s.sock"
    env = agent_env(tmp_path)
    proc = start(
        spawn, [sys.executable, "-m", "agent", "run", "--discard", "--socket", str(sock_path)], env
    )
    wait_ready(proc)
    status = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--socket", str(sock_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert "connections_accepted" in status.stdout and "pipeline" in status.stdout
    flush = subprocess.run(
        [sys.executable, "-m", "agent", "flush", "--socket", str(sock_path), "--timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert flush.returncode == 0, flush.stderr
    assert flush.stdout.startswith("delivered")
    missing = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--socket", str(tmp_path / "none.sock")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 1 and "no daemon answers" in missing.stderr


def test_cli_send_pipes_ndjson_and_reports_bad_lines(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """`literal-agent send` reports accepted/rejected counts and names bad lines."""
    sock_path = tmp_path / "s.sock"
    env = agent_env(tmp_path)
    proc = start(
        spawn, [sys.executable, "-m", "agent", "run", "--discard", "--socket", str(sock_path)], env
    )
    wait_ready(proc)
    data = (
        b'{"type":"step","name":"a"}\nnot json\n'
        b'{"type":"score","name":"s","value":1,"stepId":"x"}\n'
    )
    sent = subprocess.run(
        [sys.executable, "-m", "agent", "send", "--socket", str(sock_path)],
        env=env,
        input=data,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert sent.returncode == 1
    assert b"accepted 2 events, rejected 1" in sent.stdout
    assert b"line 2: invalid_json" in sent.stderr


def test_sighup_reloads_limits_live(tmp_path: Path, spawn: list[subprocess.Popen[str]]) -> None:
    """After SIGHUP a new max_frame_bytes applies to new connections."""
    sock_path = tmp_path / "s.sock"
    config = tmp_path / "agent.toml"
    config.write_text(f'[daemon]\nsocket = "{sock_path}"\nmax_frame_bytes = 1048576\n')
    env = agent_env(tmp_path)
    proc = start(
        spawn, [sys.executable, "-m", "agent", "run", "--discard", "--config", str(config)], env
    )
    wait_ready(proc)
    big = Batch(events=[StepEvent(input="x" * 200_000)], seq=1, ack=True)
    with DaemonClient(str(sock_path)) as client:
        assert isinstance(client.request(big), Ack)
    config.write_text(f'[daemon]\nsocket = "{sock_path}"\nmax_frame_bytes = 65536\n')
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        with DaemonClient(str(sock_path)) as client:
            reply = client.request(big)
        if not isinstance(reply, Ack):
            assert reply.code == "frame_too_large"  # type: ignore[union-attr]
            break
        assert time.monotonic() < deadline, "reload never applied"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(20)
    return sock


def test_sd_notify_ready_watchdog_stopping(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """Under a (real datagram) NOTIFY_SOCKET the daemon sends READY, WATCHDOG and STOPPING."""
    notify = _notify_socket(tmp_path)
    env = agent_env(tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="200000")
    proc = start(
        spawn,
        [sys.executable, "-m", "agent", "run", "--discard", "--socket", str(tmp_path / "s.sock")],
        env,
    )
    wait_ready(proc)
    seen: list[str] = []
    while not any("WATCHDOG=1" in m for m in seen) or not any("READY=1" in m for m in seen):
        seen.append(notify.recv(4096).decode())
    proc.send_signal(signal.SIGTERM)
    while not any("STOPPING=1" in m for m in seen):
        seen.append(notify.recv(4096).decode())
    assert proc.wait(20) == 0
    ready = next(m for m in seen if "READY=1" in m)
    assert f"MAINPID={proc.pid}" in ready


def test_socket_activation_with_listen_fds(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """A socket bound by the 'service manager' is passed as fd 3 with LISTEN_FDS/LISTEN_PID."""
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    # Clients may connect before the daemon even runs: systemd's queueing behaviour.
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.connect(str(path))
    # A small exec wrapper does what systemd does: dup to fd 3, set LISTEN_PID to the pid
    # that will run the daemon (exec keeps it), LISTEN_FDS=1.
    wrapper = (
        "import os, sys\n"
        "fd = int(sys.argv[1])\n"
        "os.dup2(fd, 3)\n"
        "os.environ['LISTEN_FDS'] = '1'\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "argv = ['-m', 'agent', 'run', '--discard', '--socket', sys.argv[2]]\n"
        "os.execv(sys.executable, [sys.executable, *argv])\n"
    )
    unused = tmp_path / "not-created.sock"
    proc = start(
        spawn,
        [sys.executable, "-c", wrapper, str(listener.fileno()), str(unused)],
        agent_env(tmp_path),
        pass_fds=(listener.fileno(),),
    )
    line = wait_ready(proc)
    assert f"unix:{path}" in line
    assert not unused.exists()  # it did not bind its own socket
    from agent.daemon._protocol import MAGIC, encode_frame
    from agent.daemon._transport import read_reply

    early.settimeout(10)
    early.sendall(MAGIC + encode_frame(Ping()))
    assert isinstance(read_reply(early), Pong)
    early.close()
    with DaemonClient(str(path)) as client:
        assert isinstance(client.request(Ping()), Pong)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    listener.close()


def test_tcp_listener_next_to_the_unix_socket(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    """--tcp HOST:PORT adds a loopback listener; the ready line names both addresses."""
    sock_path = tmp_path / "s.sock"
    argv = [sys.executable, "-m", "agent", "run", "--discard", "--socket", str(sock_path)]
    proc = start(spawn, [*argv, "--tcp", "127.0.0.1:0"], agent_env(tmp_path))
    line = wait_ready(proc)
    found = re.search(r"tcp:(127\.0\.0\.1:\d+)", line)
    assert found and f"unix:{sock_path}" in line
    with DaemonClient(f"tcp:{found.group(1)}") as client:
        assert client.request(Batch(events=[StepEvent()], seq=5, ack=True)) == Ack(
            seq=5, accepted=1
        )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_spool_purge_refuses_a_spool_in_use_and_keeps_its_records(tmp_path: Path) -> None:
    """`spool purge` on a spool another process holds open exits 1 with a message naming the
    directory (no traceback) and deletes nothing; once closed, it purges every record."""
    from agent.pipeline._spool import Spool, inspect_spool

    directory = tmp_path / "spool"
    spool = Spool(directory, fsync_interval=None)
    spool.append([b"one", b"two", b"three"], durable=True)
    command = [sys.executable, "-m", "agent", "spool", "purge", "--yes", "--dir", str(directory)]
    env = agent_env(tmp_path)

    def purge() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=30
        )

    try:
        busy = purge()
    finally:
        spool.close()
    assert busy.returncode == 1
    assert f"{directory} is in use by a running agent" in busy.stderr
    assert "Traceback" not in busy.stderr
    assert inspect_spool(directory).records == 3
    done = purge()
    assert done.returncode == 0, done.stderr
    assert "purged 3 records" in done.stdout
    assert inspect_spool(directory).records == 0
