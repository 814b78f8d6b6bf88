"""The daemon's wire protocol against a real listener on a Unix socket under tmp_path.

The server runs in-process (a real asyncio listener on a real socket) and feeds a
MemoryBackend, a real in-process double; every client here is a raw socket.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from agent._models import Score, Step, StepType, Thread
from agent.daemon._backend import MemoryBackend
from agent.daemon._protocol import (
    HEADER,
    MAGIC,
    Ack,
    Batch,
    ErrorReply,
    Flush,
    Flushed,
    Ping,
    Pong,
    Status,
    StatusReply,
    StepEvent,
    decode_reply_json,
    decode_reply_msgpack,
    encode_frame,
)
from agent.daemon._server import ServerSettings
from agent.daemon._sockets import SocketInUseError, bind_unix
from agent.daemon._thread import DaemonThread


class Daemon:
    def __init__(self, path: Path, backend: MemoryBackend, thread: DaemonThread) -> None:
        self.path = path
        self.backend = backend
        self.thread = thread

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.thread.server.counters)

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(self.path))
        return sock

    def wait_counter(self, name: str, value: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.thread.server.counters[name] < value:
            assert time.monotonic() < deadline, f"{name} never reached {value}: {self.counters}"
            time.sleep(0.005)


def _start(tmp_path: Path, **settings: object) -> Iterator[Daemon]:
    path = tmp_path / "run" / "agent.sock"
    backend = MemoryBackend()
    sock = bind_unix(path)
    thread = DaemonThread(backend, [sock], ServerSettings(**settings))  # type: ignore[arg-type]
    with thread:
        yield Daemon(path, backend, thread)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    yield from _start(tmp_path, max_frame_bytes=64 * 1024, idle_timeout=0.5)


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_lines(sock: socket.socket, count: int) -> list[dict[str, object]]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def read_frame(sock: socket.socket) -> object:
    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            assert chunk, "connection closed"
            out += chunk
        return out

    (size,) = HEADER.unpack(exactly(4))
    return decode_reply_msgpack(exactly(size))


def frame(payload: object) -> bytes:
    body = msgspec.msgpack.encode(payload)
    return HEADER.pack(len(body)) + body


# --------------------------------------------------------------------------- sockets


def test_socket_created_with_mode_0660_in_a_private_directory(tmp_path: Path) -> None:
    """The socket is 0660 and its new parent directory 0750."""
    path = tmp_path / "new" / "agent.sock"
    sock = bind_unix(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    finally:
        sock.close()


def test_socket_directory_checks(tmp_path: Path) -> None:
    """A new directory inside a world-writable one is 0700; an open-to-all one is refused."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    sock = bind_unix(shared / "literal-agent-1" / "agent.sock")
    sock.close()
    assert stat.S_IMODE((shared / "literal-agent-1").stat().st_mode) == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(SocketInUseError, match="writable by anyone"):
        bind_unix(open_dir / "agent.sock")


def test_stale_socket_is_replaced_live_one_and_regular_file_are_not(tmp_path: Path) -> None:
    """A dead socket file is removed; a live socket or a regular file is refused."""
    path = tmp_path / "agent.sock"
    stale = bind_unix(path)
    stale.close()  # the file stays, nobody listens
    live = bind_unix(path)
    try:
        with pytest.raises(SocketInUseError, match="another daemon"):
            bind_unix(path)
    finally:
        live.close()
    other = tmp_path / "file"
    other.write_text("keep me")
    with pytest.raises(SocketInUseError, match="not a socket"):
        bind_unix(other)
    assert other.read_text() == "keep me"


# --------------------------------------------------------------------------- NDJSON


def test_ndjson_events_of_every_kind_become_model_objects(daemon: Daemon) -> None:
    """step, generation, score and thread lines are accepted and converted."""
    lines = [
        {"type": "step", "id": "s1", "name": "x", "stepType": "tool", "threadId": "t1"},
        {
            "type": "generation",
            "id": "g1",
            "generation": {"type": "CHAT", "model": "gpt", "messages": [{"role": "user"}]},
        },
        {"type": "score", "name": "acc", "value": 0.5, "stepId": "s1", "scoreType": "CODE"},
        {"type": "thread", "id": "t1", "name": "conv", "participantIdentifier": "bob"},
        {"type": "sync", "id": 7},
    ]
    with daemon.connect() as sock:
        sock.sendall(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
        (ack,) = read_lines(sock, 1)
    assert ack == {"type": "ack", "seq": 7, "accepted": 4}
    step, gen, score, thread = daemon.backend.items
    assert step["type"] == "tool" and step["threadId"] == "t1" and step["id"] == "s1"
    assert gen["type"] == "llm" and gen["generation"]["model"] == "gpt"
    assert gen["generation"]["type"] == "CHAT" and gen["name"] == "gpt"
    assert score["__kind__"] == "score" and score["stepId"] == "s1" and score["value"] == 0.5
    assert score["type"] == "CODE"
    assert thread == {
        "__kind__": "thread",
        "id": "t1",
        "name": "conv",
        "participantIdentifier": "bob",
    }
    # what the pipeline makes of them is what the model says
    assert Step.from_dict(step).type == StepType.TOOL
    assert Step.from_dict(gen).generation is not None
    assert Score.from_dict(score).step_id == "s1"
    assert Thread.from_dict(thread).name == "conv"


def test_ndjson_last_line_without_newline_is_accepted(daemon: Daemon) -> None:
    """`printf '{...}' | nc -U` (no trailing newline) still delivers the event."""
    with daemon.connect() as sock:
        sock.sendall(b'{"type":"step","name":"x"}')
        sock.shutdown(socket.SHUT_WR)
        assert read_line(sock) == b""
    assert daemon.backend.wait_for(1, 5)


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        (b"this is not json", "invalid_json", "JSON"),
        (b'{"type":"bogus","name":"x"}', "unknown_type", "$.type"),
        (b'{"name":"x"}', "unknown_type", "type"),
        (b'{"type":"step","name":42}', "invalid_field", "$.name"),
        (b'{"type":"score","name":"x","value":"high"}', "invalid_field", "$.value"),
    ],
)
def test_ndjson_bad_line_is_named_counted_and_isolated(
    daemon: Daemon, line: bytes, code: str, reason: str
) -> None:
    """A bad line gets an error naming its number; the lines around it are accepted."""
    good = b'{"type":"step","name":"ok"}\n'
    with daemon.connect() as sock, daemon.connect() as other:
        sock.sendall(good + line + b"\n" + good + b'{"type":"sync","id":1}\n')
        error, ack = read_lines(sock, 2)
        other.sendall(good + b'{"type":"sync","id":2}\n')
        (other_ack,) = read_lines(other, 1)
    assert error["type"] == "error" and error["line"] == 2 and error["code"] == code
    assert reason in str(error["reason"])
    assert ack == {"type": "ack", "seq": 1, "accepted": 2, "rejected": 1}
    assert other_ack["accepted"] == 1
    assert daemon.counters[f"error.{code}"] == 1
    assert len(daemon.backend.items) == 3


def test_ndjson_line_over_the_limit_is_skipped(daemon: Daemon) -> None:
    """A line longer than max_frame_bytes is refused; the next line still counts."""
    huge = b'{"type":"step","name":"' + b"x" * (100 * 1024) + b'"}\n'
    with daemon.connect() as sock:
        sock.sendall(huge + b'{"type":"step","name":"after"}\n{"type":"sync"}\n')
        error, ack = read_lines(sock, 2)
    assert error["code"] == "line_too_long" and error["line"] == 1
    assert ack["accepted"] == 1
    assert [i.get("name") for i in daemon.backend.items] == ["after"]


def test_control_over_ndjson(daemon: Daemon) -> None:
    """status, flush and ping work on a text connection too."""
    with daemon.connect() as sock:
        sock.sendall(b'{"type":"ping"}\n{"type":"status"}\n{"type":"flush","timeout":1}\n')
        pong, status, flushed = (
            decode_reply_json(json.dumps(x).encode()) for x in read_lines(sock, 3)
        )
    assert isinstance(pong, Pong)
    assert isinstance(status, StatusReply) and status.daemon["connections_ndjson"] == 1
    assert isinstance(flushed, Flushed)


def test_idle_client_is_closed_cleanly_and_counted(daemon: Daemon) -> None:
    """A client that connects and sends nothing is closed after idle_timeout."""
    with daemon.connect() as sock:
        assert sock.recv(10) == b""  # EOF, not a reset
    daemon.wait_counter("idle_timeouts", 1)


# --------------------------------------------------------------------------- binary


def binary(daemon: Daemon) -> socket.socket:
    sock = daemon.connect()
    sock.sendall(MAGIC)
    return sock


def test_binary_batch_with_ack(daemon: Daemon) -> None:
    """A batch frame is accepted whole and acknowledged with its sequence number."""
    events = [StepEvent(name=f"s{i}") for i in range(100)]
    with binary(daemon) as sock:
        sock.sendall(encode_frame(Batch(events=events, seq=42, ack=True)))
        ack = read_frame(sock)
        sock.sendall(encode_frame(Ping()) + encode_frame(Status()) + encode_frame(Flush(timeout=1)))
        pong, status, flushed = read_frame(sock), read_frame(sock), read_frame(sock)
    assert ack == Ack(seq=42, accepted=100)
    assert isinstance(pong, Pong) and isinstance(flushed, Flushed)
    assert isinstance(status, StatusReply) and status.daemon["events.step"] == 100
    assert len(daemon.backend.items) == 100


def test_binary_fast_path_and_general_path_agree(daemon: Daemon) -> None:
    """A steps-only batch (fast path) and a mixed one (general path) give the same dicts."""
    step = {
        "type": "step",
        "id": "s",
        "name": "n",
        "stepType": "llm",
        "input": {"a": [1, 2]},
        "generation": {"type": "COMPLETION", "model": "m", "prompt": "p"},
        "scores": [{"id": "sc", "name": "q", "value": 1.0, "type": "AI"}],
    }
    thread = {"type": "thread", "id": "t"}
    with binary(daemon) as sock:
        sock.sendall(frame({"type": "batch", "ack": True, "events": [step]}))
        assert isinstance(read_frame(sock), Ack)
        sock.sendall(frame({"type": "batch", "ack": True, "events": [step, thread]}))
        assert isinstance(read_frame(sock), Ack)
    fast, general, _thread = daemon.backend.items
    assert fast == general
    assert fast["type"] == "llm" and fast["generation"]["prompt"] == "p"
    assert fast["scores"][0]["name"] == "q"


def test_binary_bad_event_in_batch_is_rejected_alone(daemon: Daemon) -> None:
    """One event of the wrong shape is named by index; the others of the batch are accepted."""
    events = [
        {"type": "step", "name": "a"},
        {"type": "step", "name": 5},
        {"type": "nope"},
        {"type": "step", "name": "d"},
    ]
    with binary(daemon) as sock:
        sock.sendall(frame({"type": "batch", "seq": 3, "ack": True, "events": events}))
        e1, e2, ack = read_frame(sock), read_frame(sock), read_frame(sock)
    assert isinstance(e1, ErrorReply) and (e1.code, e1.frame, e1.index) == ("invalid_field", 1, 1)
    assert isinstance(e2, ErrorReply) and (e2.code, e2.index) == ("unknown_type", 2)
    assert ack == Ack(seq=3, accepted=2, rejected=2)


def test_binary_frame_over_the_limit_is_skipped_and_the_next_accepted(daemon: Daemon) -> None:
    """An oversized frame is answered with frame_too_large; the stream stays in sync."""
    big = {"type": "batch", "events": [{"type": "step", "input": "x" * (80 * 1024)}]}
    with binary(daemon) as sock:
        sock.sendall(frame(big) + encode_frame(Batch(events=[StepEvent()], seq=2, ack=True)))
        error, ack = read_frame(sock), read_frame(sock)
    assert isinstance(error, ErrorReply) and error.code == "frame_too_large" and error.frame == 1
    assert ack == Ack(seq=2, accepted=1)
    assert daemon.counters["error.frame_too_large"] == 1


def test_binary_truncated_frame_body(daemon: Daemon) -> None:
    """A frame whose msgpack body is cut short is named and counted; the next frame works."""
    body = msgspec.msgpack.encode({"type": "batch", "events": [{"type": "step"}]})[:-3]
    with binary(daemon) as sock:
        sock.sendall(HEADER.pack(len(body)) + body + encode_frame(Ping()))
        error, pong = read_frame(sock), read_frame(sock)
    assert isinstance(error, ErrorReply) and error.code == "truncated_frame" and error.frame == 1
    assert isinstance(pong, Pong)


def test_binary_client_disconnecting_mid_frame(daemon: Daemon) -> None:
    """Earlier frames are kept; the partial one is counted; the daemon keeps serving."""
    whole = encode_frame(Batch(events=[StepEvent(name="kept")]))
    partial = encode_frame(Batch(events=[StepEvent(name="lost")]))[:-5]
    with binary(daemon) as sock:
        sock.sendall(whole + partial)
        sock.shutdown(socket.SHUT_WR)
        error = read_frame(sock)
    assert isinstance(error, ErrorReply) and error.code == "disconnected_mid_frame"
    assert error.frame == 2
    with binary(daemon) as sock:  # hard close this time: nobody left to answer
        sock.sendall(partial)
    daemon.wait_counter("error.disconnected_mid_frame", 2)
    assert [i.get("name") for i in daemon.backend.items] == ["kept"]


def test_binary_bad_preface(daemon: Daemon) -> None:
    """A connection starting with NUL but not the magic is refused and closed."""
    with daemon.connect() as sock:
        sock.sendall(b"\x00XX\x09" + encode_frame(Ping()))
        error = read_frame(sock)
    assert isinstance(error, ErrorReply) and error.code == "bad_preface"


def test_connection_limit(tmp_path: Path) -> None:
    """Past max_connections a client is told so and closed; the others keep working."""
    for d in _start(tmp_path, max_connections=1):
        with binary(d) as first:
            first.sendall(encode_frame(Ping()))
            assert isinstance(read_frame(first), Pong)
            with d.connect() as second:
                reply = json.loads(read_line(second))
                assert reply["code"] == "too_many_connections"
            first.sendall(encode_frame(Ping()))
            assert isinstance(read_frame(first), Pong)


def test_disk_mode_acks_only_after_durable_submit(tmp_path: Path) -> None:
    """In disk mode the ack says durable and counts what submit_durable stored."""
    for d in _start(tmp_path, durability="disk"):
        with binary(d) as sock:
            for seq in range(20):
                sock.sendall(encode_frame(Batch(events=[StepEvent()] * 5, seq=seq, ack=True)))
            acks = [read_frame(sock) for _ in range(20)]
        assert acks == [Ack(seq=s, accepted=5, durable=True) for s in range(20)]
        assert d.backend.durable_batches == 20


def test_socket_file_mode_is_kept_after_listen(daemon: Daemon) -> None:
    """The running daemon's socket stays 0660."""
    assert stat.S_IMODE(os.stat(daemon.path).st_mode) == 0o660
