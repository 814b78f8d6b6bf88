"""Python producers of the daemon: a blocking client, and :class:`DaemonSink` for the hook.

:class:`DaemonClient` is a plain blocking connection speaking the binary framing (control
commands, ``literal-agent send``, tests). :class:`DaemonSink` is what the library hook uses
instead of an in-process pipeline (``LiteralClient(sink=DaemonSink())``): ``enqueue`` is
O(1) into a bounded buffer and never blocks or raises; a background thread encodes batches
and writes binary frames, reconnecting with backoff while the daemon is away (the buffer
keeps at most ``max_buffer`` events meanwhile; what does not fit is dropped and counted).
With ``ack=True`` sent batches are kept until the daemon acknowledges them and are re-sent
after a reconnect (at-least-once; ingest is an idempotent upsert by id).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Final

import msgspec
import structlog

from agent._models import Score, Step, Thread
from agent.daemon._protocol import (
    HEADER,
    MAGIC,
    Ack,
    ErrorReply,
    Reply,
    decode_reply_msgpack,
    encode_frame,
)

__all__ = ["DaemonClient", "DaemonSink", "connect", "item_to_event"]

log = structlog.get_logger(__name__)

_encoder = msgspec.msgpack.Encoder()
_STAT_KEYS: Final = (
    "enqueued",
    "sent",
    "frames",
    "acked",
    "rejected",
    "connects",
    "connect_failures",
    "send_failures",
    "connection_lost",
    "resent_batches",
    "dropped.buffer_full",
    "dropped.closed",
    "dropped.invalid_item",
    "dropped.shutdown",
)
_MAX_BACKOFF: Final = 2.0


def connect(address: str | None = None, timeout: float = 5.0) -> socket.socket:
    """Connect to ``unix:PATH`` / ``PATH`` / ``tcp:HOST:PORT`` (default: the configured socket)."""
    if address is None:
        from agent._config import load_config

        config = load_config()
        address = config.daemon.resolved_socket
    if address.startswith("tcp:"):
        from agent.daemon._sockets import parse_hostport

        sock = socket.create_connection(parse_hostport(address[4:]), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    path = address.removeprefix("unix:")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("daemon closed the connection")
        chunks += chunk
    return bytes(chunks)


def read_reply(sock: socket.socket) -> Reply:
    """Read one reply frame."""
    (size,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    return decode_reply_msgpack(_recv_exactly(sock, size))


class DaemonClient:
    """A blocking binary-framing connection: ``with DaemonClient() as c: c.request(Status())``."""

    def __init__(self, address: str | None = None, timeout: float = 30.0) -> None:
        self.sock = connect(address, timeout)
        self.sock.sendall(MAGIC)
        self.errors: list[ErrorReply] = []

    def request(self, message: msgspec.Struct) -> Reply:
        """Send one request and return its reply (error replies for earlier frames are kept)."""
        self.sock.sendall(encode_frame(message))
        return self.reply()

    def reply(self) -> Reply:
        """The next reply that is not an error about an event (those go to ``errors``)."""
        while True:
            reply = read_reply(self.sock)
            if isinstance(reply, ErrorReply) and reply.index is not None:
                self.errors.append(reply)
                continue
            return reply

    def send(self, data: bytes) -> None:
        """Send pre-encoded frames."""
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- items -> events


def item_to_event(item: object) -> dict[str, Any] | None:
    """The protocol event (a dict) for what a producer enqueues; None if it is not one."""
    if isinstance(item, Step):
        data = item.to_dict()
        data["stepType"] = data.pop("type", None)
        data["type"] = "step"
        return data
    if isinstance(item, Score):
        data = item.to_dict()
        data["scoreType"] = data.pop("type", None)
        data["type"] = "score"
        return data
    if isinstance(item, Thread):
        return {
            "type": "thread",
            "id": item.id,
            "name": item.name,
            "metadata": item.metadata,
            "tags": item.tags,
            "participantId": item.participant_id,
            "participantIdentifier": item.participant_identifier,
        }
    if isinstance(item, dict):
        data = dict(item)
        kind = data.pop("__kind__", "step")
        if kind == "thread":
            if "participant_id" in data:
                data["participantId"] = data.pop("participant_id")
            data["type"] = "thread"
            return data
        if kind not in ("step", "score"):
            return None
        data[f"{kind}Type"] = data.pop("type", None)
        data["type"] = kind
        return data
    return None


# --------------------------------------------------------------------------- the sink


class DaemonSink:
    """A pipeline ``Sink`` that ships events to the local daemon.

    ``address``: ``unix:PATH``, ``PATH`` or ``tcp:HOST:PORT`` (default: the configured
    socket). ``max_buffer``: most events held while the daemon is slow or away.
    ``batch_size``/``flush_interval``: a frame is written when that many events are
    buffered or that many seconds passed. ``ack``: keep batches until acknowledged.
    ``idle_close``: close an unused connection after that many seconds (it reconnects on
    demand), before the daemon's ``idle_timeout`` (60 s) closes it.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        max_buffer: int = 100_000,
        batch_size: int = 512,
        flush_interval: float = 0.05,
        ack: bool = False,
        connect_timeout: float = 1.0,
        idle_close: float = 30.0,
    ) -> None:
        if address is None:
            from agent._config import load_config

            address = load_config().daemon.resolved_socket
        self.address = address
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.ack = ack
        self.connect_timeout = connect_timeout
        self.idle_close = idle_close
        self._last_send = time.monotonic()
        self.counters: collections.Counter[str] = collections.Counter()
        self._buffer: collections.deque[object] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._busy = 0  # items taken from the buffer and not yet written (or acked)
        self._start()
        _SINKS.add(self)

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> DaemonSink:
        """A sink for the configured daemon (``[daemon] socket``; ``None``: load_config())."""
        if config is None:
            from agent._config import load_config

            config = load_config()
        return cls(config.daemon.resolved_socket, **kwargs)

    # ------------------------------------------------------------------ producer side

    def enqueue(self, item: object) -> bool:
        """Buffer one item for the daemon; False (and counted) when it had to be dropped."""
        buffer = self._buffer
        if self._closed:
            self.counters["dropped.closed"] += 1
            return False
        if len(buffer) >= self.max_buffer:
            self.counters["dropped.buffer_full"] += 1
            return False
        buffer.append(item)
        self.counters["enqueued"] += 1
        if len(buffer) >= self.batch_size:
            self._wake.set()
        return True

    def flush(self, timeout: float | None = 5.0) -> Any:
        """Wait until everything enqueued so far is written (acked with ``ack=True``)."""
        deadline = time.monotonic() + (5.0 if timeout is None else timeout)
        self._wake.set()
        with self._idle:
            while self._buffer or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.set()
                self._idle.wait(min(left, 0.05))
            pending = len(self._buffer) + self._busy
        return _flush_result(delivered=self.counters["sent"], pending=pending)

    def shutdown(self, timeout: float | None = 5.0) -> Any:
        """Flush within ``timeout``, then stop the thread; later enqueues are dropped."""
        result = self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(max(0.1, 5.0 if timeout is None else timeout))
        dropped = len(self._buffer)
        if dropped:
            self.counters["dropped.shutdown"] += dropped
            self._buffer.clear()
        return result

    close = shutdown

    def stats(self) -> dict[str, Any]:
        """Counters (enqueued, sent, acked, dropped by reason, reconnects) and gauges."""
        out: dict[str, Any] = dict.fromkeys(_STAT_KEYS, 0)
        out.update(self.counters)
        out["buffered"] = len(self._buffer)
        out["connected"] = self._sock is not None
        return out

    # ------------------------------------------------------------------ worker side

    def _start(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._unacked: collections.OrderedDict[int, tuple[bytes, int]] = collections.OrderedDict()
        self._thread = threading.Thread(target=self._run, name="literal-daemon-sink", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child: a fresh buffer and thread, nothing inherited is sent twice."""
        self._buffer = collections.deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._busy = 0
        self.counters = collections.Counter()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.detach()
        if not self._closed:
            self._start()

    def _run(self) -> None:
        backoff = 0.05
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._buffer or self._unacked:
                if self._sock is None and not self._connect():
                    if self._closed:
                        return
                    time.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                backoff = 0.05
                if not self._send_some():
                    continue
            with self._idle:
                self._idle.notify_all()
            if self._closed:
                self._disconnect()
                return
            if self._sock is not None and time.monotonic() - self._last_send > self.idle_close:
                self._disconnect()  # before the daemon's idle_timeout closes it under us

    def _connect(self) -> bool:
        try:
            sock = connect(self.address, self.connect_timeout)
            sock.sendall(MAGIC)
        except OSError:
            self.counters["connect_failures"] += 1
            return False
        sock.settimeout(None)
        self._sock = sock
        self.counters["connects"] += 1
        for data, _count in self._unacked.values():  # re-send what was never acknowledged
            try:
                sock.sendall(data)
            except OSError:
                self._disconnect()
                return False
            self.counters["resent_batches"] += 1
        return True

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _take(self) -> list[object]:
        items: list[object] = []
        buffer = self._buffer
        with self._lock:
            while buffer and len(items) < self.batch_size:
                items.append(buffer.popleft())
            self._busy += len(items)
        return items

    def _done(self, count: int) -> None:
        with self._idle:
            self._busy -= count
            if not self._buffer and not self._busy:
                self._idle.notify_all()

    def _send_some(self) -> bool:
        """Write one batch (and read replies); False after losing the connection."""
        assert self._sock is not None
        if (self.ack and len(self._unacked) >= 8) or not self._buffer:
            return self._read_replies(block=True)
        items = self._take()
        events = []
        for item in items:
            event = item_to_event(item)
            if event is None:
                self.counters["dropped.invalid_item"] += 1
            else:
                events.append(event)
        self._seq += 1
        body = _encoder.encode(
            {"type": "batch", "seq": self._seq, "ack": self.ack, "events": events}
        )
        data = HEADER.pack(len(body)) + body
        if self.ack:
            self._unacked[self._seq] = (data, len(items))
        try:
            self._sock.sendall(data)
        except OSError:
            self.counters["send_failures"] += 1
            self._disconnect()
            if not self.ack:  # put the batch back: it is sent again after the reconnect
                with self._lock:
                    self._buffer.extendleft(reversed(items))
                    self._busy -= len(items)
            return False
        self.counters["sent"] += len(events)
        self.counters["frames"] += 1
        self._last_send = time.monotonic()
        if not self.ack:
            self._done(len(items))
        return self._read_replies(block=False)

    def _read_replies(self, *, block: bool) -> bool:
        sock = self._sock
        assert sock is not None
        while True:
            ready, _, _ = select.select([sock], [], [], self.flush_interval if block else 0)
            if not ready:
                return True
            try:
                reply = read_reply(sock)
            except (OSError, ConnectionError, msgspec.DecodeError):
                self.counters["connection_lost"] += 1
                self._disconnect()
                return False
            match reply:
                case Ack(seq=seq, accepted=accepted, rejected=rejected):
                    entry = self._unacked.pop(seq, None)
                    self.counters["acked"] += accepted
                    self.counters["rejected"] += rejected
                    if entry is not None:
                        self._done(entry[1])
                case ErrorReply(code=code):
                    self.counters[f"daemon_error.{code}"] += 1
                    log.warning("daemon_sink.rejected", code=code, reason=reply.reason)
                case _:
                    pass
            block = False


def _flush_result(*, delivered: int, pending: int) -> Any:
    try:
        from agent.pipeline import FlushResult
    except ImportError:  # pragma: no cover - the pipeline ships with the agent
        return {"delivered": delivered, "spooled": 0, "pending": pending, "timed_out": pending > 0}
    return FlushResult(delivered=delivered, spooled=0, pending=pending, timed_out=pending > 0)


_SINKS: weakref.WeakSet[DaemonSink] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for sink in list(_SINKS):
        sink._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def drain(items: Iterable[object]) -> list[dict[str, Any]]:
    """Events for items (helper for ``send`` and tests); invalid ones are skipped."""
    return [e for e in map(item_to_event, items) if e is not None]
