"""`literal-agent up`: collector on SQLite + daemon in one command, stopped by Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_daemon_process import agent_env

from agent.daemon._protocol import Ack, Batch, StepEvent
from agent.daemon._transport import DaemonClient

pytestmark = pytest.mark.slow


def test_up_prints_where_things_are_delivers_and_stops_both_on_ctrl_c(tmp_path: Path) -> None:
    """The printed socket, URL and key file work; SIGINT stops daemon then collector, exit 0."""
    data_dir = tmp_path / "collector"
    sock_path = tmp_path / "up.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "up",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--socket",
            str(sock_path),
        ],
        env=agent_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 40
        while not any(line.startswith("Ctrl-C") for line in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"up exited: {lines}"
            assert time.monotonic() < deadline, f"not up in time: {lines}"
            lines.append(line)
        text = "".join(lines)
        assert f"daemon socket:    {sock_path}" in text
        url = re.search(r"collector URL:\s+(\S+)", text)
        key_file = re.search(r"API key file:\s+(\S+)", text)
        assert url and key_file
        key = Path(key_file.group(1)).read_text().strip()
        assert httpx.get(f"{url.group(1)}/health", timeout=5).status_code == 200

        with DaemonClient(str(sock_path)) as client:
            events = [StepEvent(id=f"up-{i}", name="via up") for i in range(50)]
            assert client.request(Batch(events=events, seq=1, ack=True)) == Ack(seq=1, accepted=50)
        db = data_dir / "collector.db"
        deadline = time.monotonic() + 30
        while True:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                stored = conn.execute("SELECT count(*) FROM step WHERE id LIKE 'up-%'").fetchone()[
                    0
                ]
            finally:
                conn.close()
            if stored == 50:
                break
            assert time.monotonic() < deadline, f"only {stored} of 50 stored"
            time.sleep(0.05)
        assert key  # the printed key file holds the key the collector accepts
        r = httpx.post(
            f"{url.group(1)}/api/graphql",
            json={"query": "query { __typename }"},
            headers={"x-api-key": key},
            timeout=5,
        )
        assert r.status_code == 200

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        assert proc.wait(30) == 0
        host, port = url.group(1).removeprefix("http://").rsplit(":", 1)
        with socket.socket() as probe, pytest.raises(OSError):
            probe.connect((host, int(port)))  # the collector is gone too
        assert not sock_path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
