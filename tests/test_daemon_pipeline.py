"""The daemon's listener feeding a real Pipeline (``PipelineBackend``: one ``enqueue_many``
per frame) over a real Unix socket, delivering to the real collector on loopback."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_protocol import frame, read_frame
from test_pipeline import settings, stored, wait_for

from agent.daemon._backend import PipelineBackend
from agent.daemon._protocol import MAGIC, Ack
from agent.daemon._server import ServerSettings
from agent.daemon._sockets import bind_unix
from agent.daemon._thread import DaemonThread
from agent.pipeline import DropReason, OverflowPolicy, Pipeline
from agent.testing import CollectorThread


def serve(tmp_path: Path, pipeline: Pipeline, durability: str) -> Iterator[Path]:
    path = tmp_path / "run" / "agent.sock"
    sock = bind_unix(path)
    server_settings = ServerSettings(durability=durability)  # type: ignore[arg-type]
    with DaemonThread(PipelineBackend(pipeline), [sock], server_settings):
        yield path


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    sock.sendall(MAGIC)
    return sock


def steps(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "step", "id": str(uuid.uuid4()), "name": "d", "stepType": "llm", "tags": ["x"]}
        for _ in range(n)
    ]


@pytest.fixture
def pipelines() -> Iterator[list[Pipeline]]:
    made: list[Pipeline] = []
    yield made
    for p in made:
        p.shutdown(2.0)


def test_memory_mode_frames_reach_the_collector_exactly(
    tmp_path: Path, sqlite_collector: CollectorThread, pipelines: list[Pipeline]
) -> None:
    """Steps-only frames (fast path, validated chunks) and a mixed frame (general path)
    are acked whole and every id given is stored, nothing else."""
    p = Pipeline(settings=settings(tmp_path, sqlite_collector.url, batch_size=100))
    pipelines.append(p)
    batches = [steps(256) for _ in range(4)]
    thread_id = str(uuid.uuid4())
    mixed = [*steps(3), {"type": "thread", "id": thread_id, "name": "t"}]
    for path in serve(tmp_path, p, "memory"):
        with connect(path) as sock:
            for seq, events in enumerate(batches):
                sock.sendall(frame({"type": "batch", "seq": seq, "ack": True, "events": events}))
            sock.sendall(frame({"type": "batch", "seq": 9, "ack": True, "events": mixed}))
            acks = [read_frame(sock) for _ in range(5)]
        assert acks == [Ack(seq=s, accepted=256) for s in range(4)] + [Ack(seq=9, accepted=4)]
        assert p.flush(10).timed_out is False
    ids = [e["id"] for events in [*batches, mixed[:3]] for e in events]
    assert stored(sqlite_collector.data_dir, ids) == set(ids)
    assert p.stats().sent == len(ids) + 1  # and the thread upsert


def test_memory_mode_ack_counts_what_a_full_queue_refused(
    tmp_path: Path, pipelines: list[Pipeline]
) -> None:
    """A frame that does not fit is cut: the ack's ``accepted`` is what the queue took and
    the pipeline counts the rest as ``queue_full``."""
    p = Pipeline(
        settings=settings(
            tmp_path,
            "http://127.0.0.1:9",
            max_queue_events=300,
            overflow=OverflowPolicy.DROP_NEWEST,
        ),
        start=False,
    )
    pipelines.append(p)
    for path in serve(tmp_path, p, "memory"):
        with connect(path) as sock:
            for seq in range(2):
                body = {"type": "batch", "seq": seq, "ack": True, "events": steps(200)}
                sock.sendall(frame(body))
            acks = [read_frame(sock) for _ in range(2)]
    assert acks == [Ack(seq=0, accepted=200), Ack(seq=1, accepted=100)]
    stats = p.stats()
    assert (stats.queue_depth, stats.dropped) == (300, {DropReason.QUEUE_FULL: 100})


def test_disk_mode_frames_are_durable_then_replayed(
    tmp_path: Path, sqlite_collector: CollectorThread, pipelines: list[Pipeline]
) -> None:
    """Disk mode: each frame is one spool record (fsynced before the ack), replayed to the
    collector."""
    p = Pipeline(settings=settings(tmp_path, sqlite_collector.url, batch_size=100))
    pipelines.append(p)
    batches = [steps(128) for _ in range(3)]
    for path in serve(tmp_path, p, "disk"):
        with connect(path) as sock:
            for seq, events in enumerate(batches):
                sock.sendall(frame({"type": "batch", "seq": seq, "ack": True, "events": events}))
            acks = [read_frame(sock) for _ in range(3)]
        assert acks == [Ack(seq=s, accepted=128, durable=True) for s in range(3)]
        wait_for(lambda: p.stats().replayed == 384)
    ids = [e["id"] for events in batches for e in events]
    assert stored(sqlite_collector.data_dir, ids) == set(ids)
