"""The daemon's listener: accepts connections, decodes either framing, feeds the backend.

One asyncio task per connection. The first byte picks the framing (NUL: binary, anything
else: NDJSON). Replies (acks, errors, control answers) are written in request order by a
per-connection writer task, so a ``disk``-mode ack that waits for an fsync does not stop
the connection from reading the next frames (at most :data:`MAX_IN_FLIGHT` submissions in
flight per connection: backpressure beyond that).

Bad input never affects another event or connection: a bad line or frame gets an
:class:`~agent.daemon._protocol.ErrorReply` naming it and is counted by its ``code``;
a bad event inside a batch is rejected alone (the rest of the batch is accepted).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec
import structlog

from agent.daemon._backend import Backend
from agent.daemon._protocol import (
    HEADER,
    MAGIC,
    Ack,
    Batch,
    ErrorReply,
    Event,
    Flush,
    GenerationEvent,
    Ping,
    Pong,
    Request,
    ScoreEvent,
    Status,
    StatusReply,
    StepEvent,
    Sync,
    ThreadEvent,
    classify_error,
    encode_frame,
    encode_json_line,
    events_to_dicts,
    fast_step_batch,
)

__all__ = ["MAX_IN_FLIGHT", "DaemonServer", "ServerSettings"]

log = structlog.get_logger(__name__)

#: Submissions (batches, or NDJSON chunks) awaiting their durability per connection.
MAX_IN_FLIGHT: Final = 8
_READ_SIZE: Final = 1 << 18

Durability = Literal["memory", "disk"]


@dataclass(frozen=True)
class ServerSettings:
    """What the listener enforces; replaced as a whole on SIGHUP."""

    durability: Durability = "memory"
    max_frame_bytes: int = 1 << 20
    max_connections: int = 256
    idle_timeout: float = 60.0


class _LooseBatch(msgspec.Struct, tag_field="type", tag="batch", rename="camel"):
    """A batch whose events are kept raw, to reject bad events one by one."""

    events: list[msgspec.Raw]
    seq: int = 0
    ack: bool = False


_json_request: msgspec.json.Decoder[Request] = msgspec.json.Decoder(Request)
_msgpack_request: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
_msgpack_event: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)
_msgpack_loose = msgspec.msgpack.Decoder(_LooseBatch)
_KIND: Final[dict[type, str]] = {
    StepEvent: "events.step",
    GenerationEvent: "events.generation",
    ScoreEvent: "events.score",
    ThreadEvent: "events.thread",
}


class DaemonServer:
    """Serves the protocol on listening sockets and feeds a :class:`Backend`."""

    def __init__(self, backend: Backend, settings: ServerSettings | None = None) -> None:
        self.backend = backend
        self.settings = settings or ServerSettings()
        self.counters: collections.Counter[str] = collections.Counter()
        self.active = 0
        self.started = time.time()
        self.addresses: list[str] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="daemon-io")

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        """Serve on already-bound listening sockets (Unix or TCP)."""
        for sock in sockets:
            sock.setblocking(False)
            if sock.family == socket.AF_UNIX:
                server = await asyncio.start_unix_server(self._handle, sock=sock, limit=_READ_SIZE)
            else:
                server = await asyncio.start_server(self._handle, sock=sock, limit=_READ_SIZE)
            self._servers.append(server)
            self.addresses.append(_describe(sock))

    async def close(self, grace: float = 1.0) -> None:
        """Stop accepting, give connections ``grace`` seconds to finish, then cancel them."""
        for server in self._servers:
            server.close()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for writer in list(self._writers):
                writer.transport.abort()  # the handlers see EOF and end on their own
            if pending:
                _done, pending = await asyncio.wait(pending, timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for server in self._servers:
            await server.wait_closed()
        self._executor.shutdown(wait=False, cancel_futures=False)

    def stats(self) -> dict[str, Any]:
        """The daemon's own counters, JSON-ready."""
        return {
            "durability": self.settings.durability,
            "listening": list(self.addresses),
            "uptime_s": round(time.time() - self.started, 3),
            "connections_active": self.active,
            **dict(sorted(self.counters.items())),
        }

    def run_blocking(self, fn: Callable[[], Any]) -> Awaitable[Any]:
        """Run a blocking backend call on the daemon's I/O threads."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # ------------------------------------------------------------------ connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.counters["connections_accepted"] += 1
        self.active += 1
        try:
            if self.active > self.settings.max_connections:
                self.counters["connections_rejected"] += 1
                self.counters["error.too_many_connections"] += 1
                reply = ErrorReply(code="too_many_connections", reason="connection limit reached")
                writer.write(encode_json_line(reply))
                return
            await _Connection(self, reader, writer).run()
        except (ConnectionError, OSError) as exc:
            log.debug("daemon.connection_error", error=str(exc))
        finally:
            self.active -= 1
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    return f"tcp:{name[0]}:{name[1]}"


class _Connection:
    """One client: the read loop of its framing, and the ordered writer of its replies."""

    def __init__(
        self, server: DaemonServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.counters = server.counters
        self.reader = reader
        self.writer = writer
        self.binary = False
        self.durable = server.settings.durability == "disk"
        self.replies: asyncio.Queue[Awaitable[bytes | None] | bytes | None] = asyncio.Queue(
            maxsize=64
        )
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.unsynced: list[asyncio.Future[int]] = []
        self.accepted_unsynced = 0
        self.rejected_unsynced = 0

    async def run(self) -> None:
        first = await self._read()
        if first is None:
            return
        self.counters["connections_binary" if first[:1] == b"\x00" else "connections_ndjson"] += 1
        writer_task = asyncio.create_task(self._write_replies())
        try:
            if first[:1] == b"\x00":
                self.binary = True
                await self._binary(bytearray(first))
            else:
                await self._ndjson(bytearray(first))
        finally:
            await self.replies.put(None)
            await writer_task

    async def _read(self) -> bytes | None:
        """The next chunk; ``b""`` at EOF; None on idle timeout (counted)."""
        try:
            async with asyncio.timeout(self.server.settings.idle_timeout):
                data = await self.reader.read(_READ_SIZE)
        except TimeoutError:
            self.counters["idle_timeouts"] += 1
            return None
        self.counters["bytes_received"] += len(data)
        return data

    # ------------------------------------------------------------------ replies

    async def _write_replies(self) -> None:
        broken = False
        while True:
            item = await self.replies.get()
            if item is None:
                return
            data = item if isinstance(item, bytes) else await item
            if data and not broken:
                try:
                    self.writer.write(data)
                    async with asyncio.timeout(self.server.settings.idle_timeout):
                        await self.writer.drain()
                except (ConnectionError, OSError):
                    broken = True  # keep consuming so the reader never blocks on us
                except TimeoutError:  # a client that never reads its replies
                    broken = True
                    self.counters["write_timeouts"] += 1
                    self.writer.transport.abort()

    def _encode(self, message: msgspec.Struct) -> bytes:
        return encode_frame(message) if self.binary else encode_json_line(message)

    async def _error(self, code: str, reason: str, **where: int | None) -> None:
        self.counters[f"error.{code}"] += 1
        log.debug("daemon.bad_input", code=code, reason=reason, **where)
        await self.replies.put(self._encode(ErrorReply(code=code, reason=reason, **where)))

    # ------------------------------------------------------------------ submission

    async def _submit(self, events: Sequence[Event]) -> asyncio.Future[int]:
        """Hand events to the backend; the future resolves to how many were accepted."""
        for kind, count in collections.Counter(map(type, events)).items():
            self.counters[_KIND[kind]] += count
        return await self._submit_items(events_to_dicts(events))

    async def _submit_items(
        self, events: list[dict[str, Any]], *, validated: bool = False, nbytes: int = 0
    ) -> asyncio.Future[int]:
        """Hand pipeline dicts to the backend (memory: at once; disk: on an I/O thread).

        ``validated``: wire step dicts from the fast decoder (``nbytes``: the frame's size).
        """
        loop = asyncio.get_running_loop()
        if not self.durable:
            future: asyncio.Future[int] = loop.create_future()
            accepted = self.server.backend.submit(events, validated=validated, nbytes=nbytes)
            self._count_accepted(len(events), accepted)
            future.set_result(accepted)
            return future
        await self.in_flight.acquire()
        backend = self.server.backend
        inner = loop.run_in_executor(
            self.server._executor,
            functools.partial(backend.submit_durable, events, validated=validated),
        )

        def done(fut: asyncio.Future[int]) -> None:
            self.in_flight.release()
            if not fut.cancelled() and fut.exception() is None:
                self._count_accepted(len(events), fut.result())

        inner.add_done_callback(done)
        return inner

    def _count_accepted(self, total: int, accepted: int) -> None:
        self.counters["events_accepted"] += accepted
        if accepted < total:
            self.counters["events_refused"] += total - accepted

    def _track(self, fut: asyncio.Future[int]) -> None:
        """Remember a submission until the next sync (done ones are folded into a count)."""
        if fut.done() and not self.unsynced:
            self.accepted_unsynced += _result(fut)
            return
        self.unsynced.append(fut)
        if len(self.unsynced) > 2 * MAX_IN_FLIGHT:
            keep: list[asyncio.Future[int]] = []
            for pending in self.unsynced:
                if pending.done() and not keep:
                    self.accepted_unsynced += _result(pending)
                else:
                    keep.append(pending)
            self.unsynced = keep

    async def _ack(
        self, futures: list[asyncio.Future[int]], seq: int, rejected: int, accepted: int = 0
    ) -> bytes | None:
        for fut in futures:
            try:
                accepted += await fut
            except Exception as exc:  # a failing backend refuses, it does not kill the link
                log.warning("daemon.submit_failed", error=str(exc))
        ack = Ack(seq=seq, accepted=accepted, rejected=rejected, durable=self.durable)
        self.counters["acks_sent"] += 1
        return self._encode(ack)

    async def _control(self, message: Status | Flush | Ping) -> None:
        server = self.server
        match message:
            case Status():
                pipeline = await server.run_blocking(server.backend.stats)
                reply: msgspec.Struct = StatusReply(daemon=server.stats(), pipeline=pipeline)
                await self.replies.put(self._encode(reply))
            case Flush(timeout=timeout):
                fut = server.run_blocking(lambda: server.backend.flush(timeout))
                await self.replies.put(self._after(fut))
            case Ping():
                await self.replies.put(self._encode(Pong()))
        self.counters[f"control.{type(message).__name__.lower()}"] += 1

    async def _after(self, fut: Awaitable[Any]) -> bytes:
        return self._encode(await fut)

    # ------------------------------------------------------------------ binary framing

    async def _binary(self, buf: bytearray) -> None:
        limit = self.server.settings.max_frame_bytes
        frame = 0
        skip = 0
        while len(buf) < len(MAGIC):
            data = await self._read()
            if not data:
                return
            buf += data
        if bytes(buf[: len(MAGIC)]) != MAGIC:
            await self._error("bad_preface", f"binary preface must be {MAGIC!r}", frame=0)
            return
        pos = len(MAGIC)
        while True:
            while True:
                if skip:
                    drop = min(skip, len(buf) - pos)
                    pos += drop
                    skip -= drop
                    if skip:
                        break
                if len(buf) - pos < HEADER.size:
                    break
                (size,) = HEADER.unpack_from(buf, pos)
                if size > limit:
                    frame += 1
                    reason = f"frame of {size} bytes exceeds the {limit}-byte limit (skipped)"
                    await self._error("frame_too_large", reason, frame=frame)
                    pos += HEADER.size
                    skip = size
                    continue
                if len(buf) - pos - HEADER.size < size:
                    break
                frame += 1
                start = pos + HEADER.size
                body = bytes(buf[start : start + size])
                pos = start + size
                await self._frame(frame, body)
            del buf[:pos]
            pos = 0
            data = await self._read()
            if data is None:
                return
            if not data:
                if buf or skip:
                    await self._mid_frame(frame + 1, len(buf))
                return
            buf += data

    async def _mid_frame(self, frame: int, got: int) -> None:
        reason = f"connection closed in the middle of a frame ({got} bytes of it received)"
        await self._error("disconnected_mid_frame", reason, frame=frame)

    async def _frame(self, frame: int, body: bytes) -> None:
        self.counters["frames"] += 1
        fast = fast_step_batch(body)
        if fast is not None:
            items, seq, ack = fast
            self.counters["events.step"] += len(items)
            fut = await self._submit_items(items, validated=True, nbytes=len(body))
            if ack:
                await self.replies.put(self._ack([fut], seq, 0))
            return
        try:
            message = _msgpack_request.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await self._bad_frame(frame, body, exc)
            return
        match message:
            case Batch(events=events, seq=seq, ack=ack):
                fut = await self._submit(events)
                if ack:
                    await self.replies.put(self._ack([fut], seq, 0))
            case StepEvent() | GenerationEvent() | ScoreEvent() | ThreadEvent():
                self._track(await self._submit([message]))
            case Sync(id=sync_id):
                await self._sync(sync_id)
            case Status() | Flush() | Ping():
                await self._control(message)

    async def _bad_frame(self, frame: int, body: bytes, exc: Exception) -> None:
        try:
            loose = _msgpack_loose.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            code = classify_error(exc)
            if code == "malformed":
                code = "truncated_frame" if "truncated" in str(exc) else "invalid_msgpack"
            await self._error(code, str(exc), frame=frame)
            return
        good: list[Event] = []
        for index, raw in enumerate(loose.events):
            try:
                good.append(_msgpack_event.decode(raw))
            except (msgspec.ValidationError, msgspec.DecodeError) as event_exc:
                code = classify_error(event_exc)
                reason = f"event {index}: {event_exc}"
                await self._error(code, reason, frame=frame, index=index, seq=loose.seq)
        rejected = len(loose.events) - len(good)
        fut = await self._submit(good)
        if loose.ack:
            await self.replies.put(self._ack([fut], loose.seq, rejected))

    # ------------------------------------------------------------------ NDJSON framing

    async def _ndjson(self, buf: bytearray) -> None:
        limit = self.server.settings.max_frame_bytes
        line = 0
        discarding = False
        while True:
            pending: list[Event] = []
            start = 0
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                if discarding:
                    discarding = False
                elif end - start > limit:
                    line += 1
                    reason = f"line longer than the {limit}-byte limit (skipped)"
                    self.rejected_unsynced += 1
                    await self._error("line_too_long", reason, line=line)
                else:
                    line += 1
                    await self._line(line, bytes(buf[start:end]), pending)
                start = end + 1
            del buf[:start]
            if len(buf) > limit and not discarding:
                line += 1
                reason = f"line longer than the {limit}-byte limit (skipped)"
                self.rejected_unsynced += 1
                await self._error("line_too_long", reason, line=line)
                discarding = True
            if discarding:
                buf.clear()
            if pending:
                self._track(await self._submit(pending))
            data = await self._read()
            if data is None:
                return
            if not data:
                if buf.strip() and not discarding:  # a last line without its newline
                    pending = []
                    await self._line(line + 1, bytes(buf), pending)
                    if pending:
                        self._track(await self._submit(pending))
                return
            buf += data

    async def _line(self, line: int, text: bytes, pending: list[Event]) -> None:
        if not text.strip():
            return
        self.counters["lines"] += 1
        try:
            message = _json_request.decode(text)
        except msgspec.ValidationError as exc:
            self.rejected_unsynced += 1
            await self._error(classify_error(exc), str(exc), line=line)
            return
        except msgspec.DecodeError as exc:
            self.rejected_unsynced += 1
            await self._error("invalid_json", str(exc), line=line)
            return
        match message:
            case StepEvent() | GenerationEvent() | ScoreEvent() | ThreadEvent():
                pending.append(message)
            case Batch(events=events):
                pending.extend(events)
            case Sync(id=sync_id):
                if pending:
                    self._track(await self._submit(list(pending)))
                    pending.clear()
                await self._sync(sync_id)
            case Status() | Flush() | Ping():
                if pending:
                    self._track(await self._submit(list(pending)))
                    pending.clear()
                await self._control(message)

    async def _sync(self, sync_id: int) -> None:
        futures, self.unsynced = self.unsynced, []
        rejected, self.rejected_unsynced = self.rejected_unsynced, 0
        accepted, self.accepted_unsynced = self.accepted_unsynced, 0
        await self.replies.put(self._ack(futures, sync_id, rejected, accepted))


def _result(fut: asyncio.Future[int]) -> int:
    if fut.cancelled() or fut.exception() is not None:
        return 0
    return fut.result()
