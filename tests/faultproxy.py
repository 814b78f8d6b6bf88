"""A real TCP proxy for HTTP/1.1 that injects faults between a client and the collector.

It runs an asyncio server on 127.0.0.1 (port 0) in a background thread and forwards each
request to the upstream over its own keep-alive connection, unless a scripted *action* says
otherwise. Actions are consumed one per request (``push``), then ``default`` applies:

* ``Pass()``: forward, return the upstream's answer;
* ``Respond(status, headers, body)``: answer without forwarding (429 + Retry-After, 503...);
* ``Reset()``: close the client connection with a TCP RST (SO_LINGER 0), nothing answered;
* ``Stall(seconds)``: hold the request without answering, then close;
* ``TooLarge(limit)``: answer 413 when the body exceeds ``limit`` bytes, else forward.

Every request is recorded (time, path, body size, action, status, the step ids of a
``send_steps`` body), so tests can assert what reached the server and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["FaultProxy", "Pass", "Reset", "Respond", "Stall", "TooLarge"]


@dataclass(frozen=True)
class Pass:
    pass


@dataclass(frozen=True)
class Respond:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": "injected"}'


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class Stall:
    seconds: float


@dataclass(frozen=True)
class TooLarge:
    limit: int


Action = Pass | Respond | Reset | Stall | TooLarge

_REASONS = {200: "OK", 413: "Payload Too Large", 429: "Too Many Requests", 503: "Unavailable"}


@dataclass
class Recorded:
    time: float
    path: str
    size: int
    action: str
    status: int | None = None
    step_ids: list[str] = field(default_factory=list)


def _step_ids(body: bytes) -> list[str]:
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    variables = payload.get("variables") if isinstance(payload, dict) else None
    if not isinstance(variables, dict):
        return []
    return [v for k, v in variables.items() if k.startswith("id_") and isinstance(v, str)]


class FaultProxy:
    """``with FaultProxy(upstream_port) as proxy: ... proxy.url ...``"""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.default: Action = Pass()
        self._script: list[Action] = []
        self._lock = threading.Lock()
        self.records: list[Recorded] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ control

    def push(self, *actions: Action) -> None:
        """Apply ``actions`` to the next requests, in order."""
        with self._lock:
            self._script.extend(actions)

    def set_default(self, action: Action) -> None:
        with self._lock:
            self.default = action

    def _next(self) -> Action:
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    def forwarded_ids(self) -> Counter[str]:
        """How many times each step id reached the upstream in a request answered 200."""
        with self._lock:
            records = list(self.records)
        return Counter(
            i for r in records if r.action == "Pass" and r.status == 200 for i in r.step_ids
        )

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.records)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for writer in list(self._writers):
                writer.close()

    # ------------------------------------------------------------------ one connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                length = _content_length(head)
                body = await reader.readexactly(length) if length else b""
                path = head.split(b" ", 2)[1].decode("latin-1")
                action = self._next()
                if isinstance(action, TooLarge):
                    action = Respond(413) if len(body) > action.limit else Pass()
                record = Recorded(time.monotonic(), path, len(body), type(action).__name__)
                if path.endswith("/graphql"):
                    record.step_ids = _step_ids(body)
                with self._lock:
                    self.records.append(record)
                if isinstance(action, Respond):
                    record.status = action.status
                    writer.write(_response(action.status, action.headers, action.body))
                    await writer.drain()
                    continue
                if isinstance(action, Reset):
                    _rst(writer)
                    return
                if isinstance(action, Stall):
                    assert self._stop is not None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), action.seconds)
                    return
                if upstream is None:
                    try:
                        upstream = await asyncio.open_connection(*self.upstream)
                    except OSError:
                        _rst(writer)  # upstream down: the client sees a reset
                        return
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                await up_writer.drain()
                try:
                    answer_head = await up_reader.readuntil(b"\r\n\r\n")
                    answer_len = _content_length(answer_head)
                    answer = await up_reader.readexactly(answer_len) if answer_len else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    _rst(writer)
                    return
                record.status = int(answer_head.split(b" ", 2)[1])
                writer.write(answer_head + answer)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            if upstream is not None:
                upstream[1].close()
            with contextlib.suppress(Exception):
                writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Injected')}"]
    merged = {"content-type": "application/json", **{k.lower(): v for k, v in headers.items()}}
    merged["content-length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _rst(writer: asyncio.StreamWriter) -> None:
    sock: Any = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def ids_once(counter: Counter[str], ids: Iterable[str]) -> list[str]:
    """The ids of ``ids`` not seen exactly once in ``counter`` (empty = all good)."""
    return [i for i in ids if counter.get(i, 0) != 1]
