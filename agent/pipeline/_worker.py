"""The worker: one thread running an anyio (asyncio) loop that owns batching, sending,
retries, spilling, replay, and the flush and shutdown deadlines.

Producers never touch anything here: they append to the :class:`EventQueue` and, once per
full batch, wake this loop with ``call_soon_threadsafe``. Each scheduling round:

1. while the backend is up and the spool holds records, replay them oldest first (they go
   before new data); a record is acked only once delivered;
2. form batches from the queue (full ones, or a partial one once ``flush_interval`` passed
   or a flush is waiting) and send up to ``max_in_flight`` of them concurrently;
3. spill to the spool when the backend is down, when the queue is half full and cannot be
   sent fast enough (overflow policy ``spill``), or when a flush/shutdown deadline is near.

A batch that keeps failing with retryable errors until its retry deadline marks the backend
*down*: it and everything after it goes to the spool, and a probe re-tries the oldest spooled
record with backoff until the backend answers, then replay starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from agent._exceptions import (
    AuthenticationError,
    BadRequestError,
    GraphQLError,
    HTTPStatusError,
    LiteralError,
    RateLimitedError,
    RequestTooLargeError,
)
from agent.pipeline._batcher import (
    Batch,
    BatchBuilder,
    decode_record,
    encode_record,
)
from agent.pipeline._batcher import (
    encode_event as _encode_event,
)
from agent.pipeline._deadletter import DeadLetterFile
from agent.pipeline._events import Event, is_thread
from agent.pipeline._exporter import Exporter
from agent.pipeline._queue import SUPPRESS, EventQueue, FlushMarker, OverflowPolicy
from agent.pipeline._retry import backoff_delay, is_retryable, make_retrying
from agent.pipeline._settings import Settings
from agent.pipeline._spool import Spool, SpoolError, SpoolLockedError
from agent.pipeline._stats import Counters, DropReason

__all__ = ["Worker"]

log = structlog.get_logger("agent.pipeline")

_SPILL_BATCHES = 4  # batches written with one spool append (one record, one write)
_SPILL_ROUNDS = 32  # appends per scheduling round before yielding to the loop


class _Hurried(Exception):  # noqa: N818 - a state, not an error
    """A flush or shutdown deadline is near: stop retrying, spill."""


class _NoExporter(Exception):  # noqa: N818 - a state, not an error
    """The API client could not be built (e.g. no API key): keep the events."""


@dataclass(slots=True)
class _Outcome:
    delivered: int = 0
    dead: list[tuple[Event, str, int | None]] = field(default_factory=list)
    undelivered: list[Event] = field(default_factory=list)
    error: BaseException | None = None


def _status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, HTTPStatusError) else None


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, LiteralError) else f"{type(exc).__name__}: {exc}"


class Worker:
    """Owns everything after the queue. Created per process (a forked child gets a new one)."""

    def __init__(
        self,
        settings: Settings,
        queue: EventQueue,
        counters: Counters,
        builder: BatchBuilder,
        exporter_factory: Callable[[], Exporter],
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.counters = counters
        self.builder = builder
        self.exporter_factory = exporter_factory
        self.deadletter = DeadLetterFile(settings.dead_letter) if settings.dead_letter else None
        self.started = threading.Event()
        self.finished = threading.Event()
        self.thread: threading.Thread | None = None
        self.ident: int | None = None
        self.spool: Spool | None = None
        self.spool_error: str | None = None
        self.exporter_error: str | None = None
        self.exporter: Exporter | None = None
        self._retry_after = 0.0  # the server's last Retry-After hint, for the probe
        self.backend_up = True
        self._assumed_up = False  # backend_up assumed after an outage, not yet seen
        self._down_since = 0.0
        self.markers: list[FlushMarker] = []  # active flushes (any thread; markers_lock)
        self.markers_lock = threading.Lock()
        self._markers_waiting = 0  # put in the queue, not reached yet (markers_lock)
        self._reached: list[FlushMarker] = []
        self._in_flight: dict[int, Batch] = {}  # fresh batches being sent
        self._replays: dict[int, Batch] = {}  # spool records being sent
        self._in_flight_events = 0
        self._seq = 0  # queue items taken (sequence of the last one)
        self._partial_since: float | None = None
        self._stop_at: float | None = None  # hard stop (monotonic)
        self._stop_hurry_at: float | None = None
        self._hurrying = False
        self._spilling_logged = False
        self._replaying_logged = False
        self._replayed_since_up = 0
        self._probe_running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_evt: anyio.Event | None = None
        self._hurry_evt: anyio.Event | None = None
        self._stop_evt: anyio.Event | None = None
        self._tg: Any = None
        self._last_drop_log = 0.0
        self._logged_drops: dict[str, int] = {}

    # ------------------------------------------------------------------ thread side

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="literal-agent-pipeline", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        SUPPRESS.set(True)  # the worker's own logging never feeds a pipeline
        self.ident = threading.get_ident()
        try:
            anyio.run(self._main, backend="asyncio")
        except BaseException as exc:  # pragma: no cover - a bug; never kill the app
            log.error("pipeline.worker_crashed", error=repr(exc))
        finally:
            self.queue.set_waker(None)
            self.started.set()
            self.finished.set()

    def wake(self) -> None:
        """Wake the loop (any thread)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._set_wake)

    def _set_wake(self) -> None:
        if self._wake_evt is not None:
            self._wake_evt.set()

    def request_stop(self, hurry_at: float, stop_at: float) -> None:
        """Ask the loop to finish by ``stop_at`` (monotonic), spilling from ``hurry_at``."""
        self._stop_hurry_at = hurry_at
        self._stop_at = stop_at
        self.wake()

    def add_marker(self, marker: FlushMarker) -> None:
        with self.markers_lock:
            marker.pending_at_call = self.queue.depth() + self._in_flight_events + len(self.builder)
            self.markers.append(marker)
            self._markers_waiting += 1

    @property
    def in_flight_events(self) -> int:
        return self._in_flight_events

    # ------------------------------------------------------------------ loop

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake_evt = anyio.Event()
        self._hurry_evt = anyio.Event()
        self._stop_evt = anyio.Event()
        self.queue.set_waker(self.wake)
        self._open_spool()
        exporter: Exporter | None = None
        try:
            exporter = self.exporter_factory()
        except Exception as exc:
            self.exporter_error = _message(exc)
            log.error(
                "pipeline.exporter_failed",
                error=self.exporter_error,
                action="events are kept (spool) until a pipeline with a working client runs",
            )
        self.exporter = exporter
        self.started.set()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._schedule()
                tg.cancel_scope.cancel()
        finally:
            self._final_drain()
            if exporter is not None:
                with anyio.move_on_after(0.5, shield=True):
                    with contextlib.suppress(Exception):
                        await exporter.aclose()
            if self.spool is not None:
                try:
                    self.spool.close()
                except Exception as exc:
                    log.error("pipeline.spool_close_failed", error=repr(exc))
            self._complete_all_markers(timed_out=False)

    async def _schedule(self) -> None:
        interval = max(0.001, self.settings.flush_interval)
        while True:
            self._wake_evt = anyio.Event()
            self.queue.wake_pending = False
            now = time.monotonic()
            if self._stop_at is not None:
                assert self._stop_evt is not None
                self._stop_evt.set()
                if now >= self._stop_at:
                    return
            try:
                self._update_hurry(now)
                self._pump(now)
                self._maybe_replay()
                self._check_markers()
                self._log_drops(now)
            except Exception as exc:  # a bug must not stop delivery for good
                log.error("pipeline.worker_error", error=repr(exc))
                await anyio.sleep(0.1)
            if self._stop_at is not None and self._idle():
                return
            timeout = self._next_timeout(now, interval)
            if timeout > 0:
                with anyio.move_on_after(timeout):
                    await self._wake_evt.wait()
            else:
                await anyio.lowlevel.checkpoint()

    def _idle(self) -> bool:
        return (
            not self.queue.dq
            and not len(self.builder)
            and not self._in_flight
            and not self._replays
        )

    def _next_timeout(self, now: float, interval: float) -> float:
        timeout = 1.0
        sending = self._free_slots() > 0 or not self.backend_up or self._hurrying
        if sending and (len(self.builder) or self.queue.dq):
            # a partial batch is due after flush_interval (a completed send, a full batch
            # or a flush wakes the loop earlier); with no free slot, only a wake-up helps
            since = self._partial_since if self._partial_since is not None else now
            timeout = min(timeout, max(0.0, since + interval - now))
        with self.markers_lock:
            for m in self.markers:
                timeout = min(timeout, max(0.0, self._hurry_at(m) - now) + 0.001)
        if self._stop_at is not None:
            timeout = min(timeout, max(0.0, self._stop_at - now))
            if self._stop_hurry_at is not None and not self._hurrying:
                timeout = min(timeout, max(0.0, self._stop_hurry_at - now) + 0.001)
        return timeout

    @staticmethod
    def _hurry_at(marker: FlushMarker) -> float:
        total = marker.deadline - marker.created
        return marker.deadline - min(1.0, 0.3 * max(0.0, total))

    def _update_hurry(self, now: float) -> None:
        if self.spool is None:
            return  # nowhere to put undelivered events: keep trying until the deadline
        hurry = self._stop_hurry_at is not None and now >= self._stop_hurry_at
        if not hurry:
            with self.markers_lock:
                hurry = any(now >= self._hurry_at(m) and not m.done.is_set() for m in self.markers)
        if hurry and not self._hurrying:
            self._hurrying = True
            assert self._hurry_evt is not None
            self._hurry_evt.set()
            for batch in [*self._in_flight.values(), *self._replays.values()]:
                if batch.cancel is not None:
                    batch.cancel.cancel()
        elif not hurry and self._hurrying:
            self._hurrying = False
            self._hurry_evt = anyio.Event()

    def _free_slots(self) -> int:
        return self.settings.max_in_flight - len(self._in_flight) - len(self._replays)

    def _must_drain(self) -> bool:
        return self._markers_waiting > 0 or self._stop_at is not None or self._hurrying

    # ------------------------------------------------------------------ forming batches

    def _take_batches(self, max_batches: int, *, close_partial: bool) -> list[Batch]:
        """Take items from the queue into batches (at most about ``max_batches``)."""
        out: list[Batch] = []
        builder = self.builder
        size = builder.batch_size
        queue = self.queue
        while len(out) < max_batches:
            items = queue.take(size - len(builder) if len(builder) < size else size)
            if not items:
                break
            for item in items:
                if type(item) is FlushMarker:
                    batch = builder.close(self._seq)
                    if batch is not None:
                        out.append(batch)
                    with self.markers_lock:
                        item.seq_end = self._seq
                        self._markers_waiting -= 1
                    self._reached.append(item)
                    continue
                self._seq += 1
                batch = builder.add(item, self._seq)
                if batch is not None:
                    out.append(batch)
        if close_partial and len(out) < max_batches:
            batch = builder.close(self._seq)
            if batch is not None:
                out.append(batch)
        self._partial_since = None if not len(builder) and not queue.dq else time.monotonic()
        measured, count = builder.take_measure()
        queue.observe_sizes(measured, count)
        queue.wake_at = max(1, min(size, queue.limit))
        return out

    def _pump(self, now: float) -> None:
        queue = self.queue
        depth = len(queue.dq)
        if not depth and not len(self.builder):
            return
        spool = self.spool
        if self._partial_since is None:
            self._partial_since = now
        interval_due = now - self._partial_since >= self.settings.flush_interval
        urgent = self._must_drain()
        close_partial = urgent or interval_due
        if spool is not None and (self._hurrying or not self.backend_up):
            reason = "backend_down" if not self._hurrying else "deadline"
            for _ in range(_SPILL_ROUNDS):
                batches = self._take_batches(_SPILL_BATCHES, close_partial=True)
                if not batches:
                    break
                self._spill_fresh(batches, reason=reason)
            return
        backlog = spool is not None and self.backend_up and len(spool) > 0
        limit = queue.limit
        high = (
            spool is not None
            and queue.policy is OverflowPolicy.SPILL
            and depth >= max(1, limit // 2)
        )
        if not backlog:
            free = self._free_slots()
            if free > 0 and (depth >= self.builder.batch_size or close_partial):
                for batch in self._take_batches(free, close_partial=close_partial):
                    self._start_send(batch)
        if high:
            low = max(1, limit // 4)
            for _ in range(_SPILL_ROUNDS):
                if len(queue.dq) <= low:
                    break
                batches = self._take_batches(_SPILL_BATCHES, close_partial=False)
                if not batches:
                    break
                self._spill_fresh(batches, reason="memory_full")

    # ------------------------------------------------------------------ sending

    def _start_send(self, batch: Batch) -> None:
        self._in_flight[id(batch)] = batch
        self._in_flight_events += len(batch)
        self._tg.start_soon(self._send_fresh, batch)

    async def _send_fresh(self, batch: Batch) -> None:
        outcome = _Outcome()
        resolved = False
        try:
            with anyio.CancelScope() as scope:
                batch.cancel = scope
                await self._deliver(batch.events, outcome)
            if scope.cancelled_caught:
                outcome = _Outcome(undelivered=list(batch.events), error=_Hurried())
            self._finish_fresh(batch, outcome)
            resolved = True
        finally:
            if not resolved:  # cancelled from outside (hard stop): keep the events
                self._finish_fresh(
                    batch, _Outcome(undelivered=list(batch.events), error=_Hurried())
                )

    def _finish_fresh(self, batch: Batch, outcome: _Outcome) -> None:
        if self._in_flight.pop(id(batch), None) is None:
            return
        self._in_flight_events -= len(batch)
        batch.cancel = None
        self._account_delivered(outcome.delivered)
        dropped = self._dead_letter(outcome.dead)
        spooled = 0
        if outcome.undelivered:
            if len(outcome.undelivered) == len(batch.events) and batch.encoded is not None:
                spooled, lost = self._spill_batch(batch, reason=self._spill_reason(outcome.error))
            else:
                part = Batch(outcome.undelivered, None, 0)
                spooled, lost = self._spill_batch(part, reason=self._spill_reason(outcome.error))
            dropped += lost
        self._resolve(batch, outcome.delivered, spooled, dropped)
        self._set_wake()

    def _spill_reason(self, error: BaseException | None) -> str:
        if isinstance(error, _Hurried):
            return "deadline"
        return "backend_down"

    def _account_delivered(self, n: int) -> None:
        if n:
            self.counters.sent += n
            self.counters.batches += 1
            if self._assumed_up:
                self._assumed_up = False
                self.backend_up = False
            if not self.backend_up:
                self._set_up()

    def _dead_letter(self, dead: list[tuple[Event, str, int | None]]) -> int:
        """Write rejected events to the dead-letter file; return how many were lost instead."""
        if not dead:
            return 0
        written = 0
        if self.deadletter is not None:
            try:
                written = self.deadletter.write(dead)
            except OSError as exc:
                log.error(
                    "pipeline.dead_letter_failed",
                    error=str(exc),
                    path=str(self.deadletter.path),
                    events=len(dead),
                )
        self.counters.dead_lettered += written
        if written:
            log.warning(
                "pipeline.dead_lettered",
                events=written,
                reason=dead[0][1][:200],
                path=str(self.deadletter.path) if self.deadletter else None,
            )
        lost = len(dead) - written
        self.counters.drop(DropReason.DEAD_LETTER_FAILED, lost)
        return len(dead)  # dead-lettered or lost: resolved, not delivered

    async def _deliver(
        self, events: list[Event], outcome: _Outcome, *, retry: bool = True, nbytes: int = 0
    ) -> None:
        """Deliver events: steps in ``send_steps`` chunks of at most ``batch_size`` events and
        about ``batch_bytes`` (spool records can hold many batches), then thread upserts."""
        steps = [e for e in events if not is_thread(e)]
        threads = [e for e in events if is_thread(e)] if len(steps) != len(events) else []
        chunk = self.builder.batch_size
        if nbytes and events:
            chunk = max(1, min(chunk, self.settings.batch_bytes * len(events) // nbytes))
        for start in range(0, len(steps), chunk):
            await self._deliver_steps(steps[start : start + chunk], outcome, retry=retry)
        exporter = self.exporter
        for thread in threads:
            if outcome.error is not None or exporter is None:
                outcome.undelivered.append(thread)
                continue
            try:
                await self._call(exporter.upsert_thread, thread, retry=retry)
            except Exception as exc:
                if self._undeliverable(exc):
                    self._note_failure(exc)
                    outcome.error = exc
                    outcome.undelivered.append(thread)
                else:
                    outcome.dead.append((thread, _message(exc), _status(exc)))
            else:
                outcome.delivered += 1

    async def _deliver_steps(self, steps: list[Event], outcome: _Outcome, *, retry: bool) -> None:
        exporter = self.exporter
        if outcome.error is not None or exporter is None:
            outcome.undelivered.extend(steps)
            if outcome.error is None:
                outcome.error = _NoExporter(self.exporter_error or "no API client")
            return
        try:
            failures = await self._call(exporter.send_steps, steps, retry=retry)
        except Exception as exc:
            if self._undeliverable(exc):
                self._note_failure(exc)
                outcome.error = exc
                outcome.undelivered.extend(steps)
                return
            # 413, 400, a document-level GraphQL error, an encoding failure: split to
            # isolate what the server refuses; a single step goes to the dead-letter file
            if len(steps) == 1:
                outcome.dead.append((steps[0], _message(exc), _status(exc)))
                return
            if not isinstance(exc, RequestTooLargeError | BadRequestError | GraphQLError):
                log.warning("pipeline.batch_rejected", error=_message(exc), events=len(steps))
            mid = len(steps) // 2
            await self._deliver_steps(steps[:mid], outcome, retry=retry)
            await self._deliver_steps(steps[mid:], outcome, retry=retry)
            return
        if failures:
            outcome.dead.extend((steps[i], msg, None) for i, msg in sorted(failures.items()))
        outcome.delivered += len(steps) - len(failures)

    def _undeliverable(self, exc: BaseException) -> bool:
        """The events are fine but cannot be delivered now (spill them)."""
        return is_retryable(exc) or isinstance(exc, AuthenticationError | _Hurried | _NoExporter)

    async def _call(self, fn: Callable[..., Any], arg: Any, *, retry: bool) -> Any:
        if not retry:
            return await fn(arg)
        retrying = make_retrying(
            self.settings.retry,
            sleep=self._sleep,
            keep_going=self._keep_going,
            on_retry=self._on_retry,
        )
        return await retrying(fn, arg)

    def _keep_going(self) -> bool:
        if self._hurrying:
            return False
        return self.backend_up or self.spool is None

    def _on_retry(self, exc: BaseException | None) -> None:
        self.counters.retried += 1

    async def _sleep(self, delay: float) -> None:
        hurry = self._hurry_evt
        assert hurry is not None
        with anyio.move_on_after(delay):
            await hurry.wait()
        if hurry.is_set():
            raise _Hurried()

    # ------------------------------------------------------------------ backend state

    def _note_failure(self, exc: BaseException) -> None:
        if isinstance(exc, _Hurried) or not self.backend_up:
            return
        self.backend_up = False
        self._assumed_up = False
        self._down_since = time.monotonic()
        if isinstance(exc, RateLimitedError) and exc.retry_after:
            self._retry_after = exc.retry_after
        log.warning(
            "pipeline.backend_down",
            error=_message(exc),
            action="spilling to disk" if self.spool is not None else "retrying in memory",
        )
        if self.spool is not None and not self._probe_running and self._stop_at is None:
            self._probe_running = True
            self._tg.start_soon(self._probe)

    def _set_up(self) -> None:
        if self.backend_up:
            return
        self.backend_up = True
        log.info(
            "pipeline.backend_up",
            down_for=round(time.monotonic() - self._down_since, 3),
            spooled_records=len(self.spool) if self.spool is not None else 0,
        )
        self._set_wake()

    async def _probe(self) -> None:
        """While down: retry the oldest spooled record with backoff until it goes through."""
        policy = self.settings.retry
        attempt = 0
        try:
            while not self.backend_up and self._stop_at is None:
                attempt += 1
                delay = max(backoff_delay(policy, attempt), self._retry_after)
                self._retry_after = 0.0
                with anyio.move_on_after(delay):
                    await self._stop_wait()
                if self._stop_at is not None or self.backend_up:
                    return
                spool = self.spool
                if spool is None or not len(spool):
                    if spool is None or self._idle():
                        # nothing to prove it with: assume up, the next send will tell
                        self.backend_up = True
                        self._assumed_up = True
                        self._set_wake()
                        return
                    continue  # what is in flight is about to be spilled: probe with it
                await self._replay_one(probe=True)
        finally:
            self._probe_running = False

    async def _stop_wait(self) -> None:
        assert self._stop_evt is not None
        await self._stop_evt.wait()

    # ------------------------------------------------------------------ spool

    def _open_spool(self) -> None:
        directory = self.settings.spool_directory
        if directory is None:
            return
        kwargs: dict[str, Any] = {
            "max_bytes": self.settings.spool_max_bytes,
            "segment_bytes": self.settings.segment_bytes,
            "fsync_interval": self.settings.fsync_interval,
            "full_policy": self.settings.spool_full_policy,
        }
        try:
            try:
                self.spool = Spool(directory, **kwargs)
                self._adopt_orphans(directory)
            except SpoolLockedError:
                # another process (or our parent, after a fork) owns it: use our own
                # sub-spool; whoever opens the main one next adopts it
                self.spool = Spool(directory / f"proc-{os.getpid()}", **kwargs)
        except (OSError, SpoolError, ValueError) as exc:
            self.spool_error = str(exc)
            log.error(
                "pipeline.spool_unavailable",
                directory=str(directory),
                error=str(exc),
                action="undeliverable events will be dropped (counted)",
            )
            self.spool = None
            return
        self.queue.spill_backpressure = self.queue.policy is OverflowPolicy.SPILL
        if len(self.spool):
            log.info("pipeline.spool_recovered", records=len(self.spool))

    def _adopt_orphans(self, directory: Path) -> None:
        """Move records of sub-spools left by processes that are gone into the main spool."""
        main = self.spool
        assert main is not None
        for sub in sorted(directory.glob("proc-*")):
            if not sub.is_dir():
                continue
            try:
                orphan = Spool(sub, fsync_interval=None)
            except (SpoolLockedError, OSError, SpoolError):
                continue  # still in use
            moved = 0
            try:
                while True:
                    records = orphan.read(256)
                    if not records:
                        break
                    moved += main.append([data for _, data in records])
                    orphan.ack([ref for ref, _ in records])
                main.flush()
            finally:
                orphan.close()
            with contextlib.suppress(OSError):
                for leftover in sub.iterdir():
                    leftover.unlink()
                sub.rmdir()
            if moved:
                log.info("pipeline.spool_adopted", directory=str(sub), records=moved)

    def _spill_batch(self, batch: Batch, *, reason: str) -> tuple[int, int]:
        """Write a batch to the spool; return (spooled events, lost events)."""
        return self._spill_batches([batch], reason=reason)[0]

    def _spill_batches(self, batches: list[Batch], *, reason: str) -> list[tuple[int, int]]:
        """Write batches to the spool with one append (one write, one GIL release): return
        (spooled events, lost events) for each."""
        spool = self.spool
        if spool is None:
            for batch in batches:
                self.counters.drop(DropReason.NO_SPOOL, len(batch))
            return [(0, len(b)) for b in batches]
        # one record for all of them: one checksum and one write (each releases the GIL,
        # and a busy producer thread then keeps it for a whole switch interval)
        parts: list[bytes] = []
        count = 0
        for batch in batches:
            encoded = batch.encoded
            if encoded is None:
                encoded = batch.encoded = [_encode_event(e) for e in batch.events]
            parts.extend(encoded)
            count += len(encoded)
        accepted = spool.append([encode_record(parts)]) if count else 0
        out: list[tuple[int, int]] = []
        for batch in batches:
            n = len(batch)
            if accepted:
                self.counters.spilled += n
                out.append((n, 0))
            else:
                self.counters.drop(DropReason.SPOOL_FULL, n)
                out.append((0, n))
        if accepted and not self._spilling_logged:
            self._spilling_logged = True
            log.warning("pipeline.spill_started", reason=reason, directory=str(spool.directory))
        return out

    def _spill_fresh(self, batches: list[Batch], *, reason: str) -> None:
        for batch, (spooled, lost) in zip(
            batches, self._spill_batches(batches, reason=reason), strict=True
        ):
            self._resolve(batch, 0, spooled, lost)

    def _maybe_replay(self) -> None:
        spool = self.spool
        if (
            spool is None
            or not self.backend_up
            or self._hurrying
            or self._stop_at is not None
            or not len(spool)
        ):
            if (
                spool is not None
                and not len(spool)
                and self._replaying_logged
                and not self._replays
            ):
                self._replaying_logged = False
                self._spilling_logged = False
                log.info("pipeline.replay_done", replayed=self._replayed_since_up)
                self._replayed_since_up = 0
            return
        while self._free_slots() > 0:
            batch = self._read_replay_batch()
            if batch is None:
                break
            if not self._replaying_logged:
                self._replaying_logged = True
                log.info("pipeline.replay_started", records=len(spool))
            self._replays[id(batch)] = batch
            self._in_flight_events += len(batch)
            self._tg.start_soon(self._send_replay, batch)

    def _read_replay_batch(self) -> Batch | None:
        spool = self.spool
        assert spool is not None
        events: list[Event] = []
        refs: list[Any] = []
        size = self.builder.batch_size
        budget = self.settings.batch_bytes
        nbytes = 0
        while len(events) < size and budget > 0:
            records = spool.read(1, budget)
            if not records:
                break
            ref, data = records[0]
            budget -= len(data)
            nbytes += len(data)
            try:
                decoded = decode_record(data)
            except Exception as exc:
                log.warning("pipeline.spool_record_unreadable", error=repr(exc))
                self.counters.drop(DropReason.INVALID)
                spool.ack([ref])
                continue
            refs.append(ref)
            events.extend(decoded)
        if not refs:
            return None
        return Batch(events, None, nbytes, refs=refs)

    async def _replay_one(self, *, probe: bool) -> None:
        batch = self._read_replay_batch()
        if batch is None:
            return
        self._replays[id(batch)] = batch
        self._in_flight_events += len(batch)
        await self._send_replay(batch, retry=not probe)

    async def _send_replay(self, batch: Batch, retry: bool = True) -> None:
        outcome = _Outcome()
        resolved = False
        try:
            with anyio.CancelScope() as scope:
                batch.cancel = scope
                await self._deliver(batch.events, outcome, retry=retry, nbytes=batch.nbytes)
            if scope.cancelled_caught:
                outcome = _Outcome(undelivered=list(batch.events), error=_Hurried())
            self._finish_replay(batch, outcome)
            resolved = True
        finally:
            if not resolved:
                self._finish_replay(
                    batch, _Outcome(undelivered=list(batch.events), error=_Hurried())
                )

    def _finish_replay(self, batch: Batch, outcome: _Outcome) -> None:
        if self._replays.pop(id(batch), None) is None:
            return
        self._in_flight_events -= len(batch)
        spool = self.spool
        if spool is None:  # pragma: no cover - replays only exist with a spool
            return
        with contextlib.suppress(SpoolError):
            if outcome.undelivered and not outcome.delivered and not outcome.dead:
                spool.release(batch.refs)
            else:
                if outcome.undelivered:
                    self._spill_batch(Batch(outcome.undelivered, None, 0), reason="backend_down")
                spool.ack(batch.refs)
        self._account_delivered(outcome.delivered)
        self.counters.replayed += outcome.delivered
        self._replayed_since_up += outcome.delivered
        self._dead_letter(outcome.dead)
        self._set_wake()

    # ------------------------------------------------------------------ flush bookkeeping

    def _resolve(self, batch: Batch, delivered: int, spooled: int, dropped: int) -> None:
        if batch.seq_end < 0:
            return
        with self.markers_lock:
            for m in self.markers:
                if m.seq_end < 0 or batch.seq_end <= m.seq_end:
                    m.tally[0] += delivered
                    m.tally[1] += spooled
                    m.tally[2] += dropped

    def _check_markers(self) -> None:
        if not self._reached:
            return
        still: list[FlushMarker] = []
        for m in self._reached:
            if any(b.seq_end <= m.seq_end for b in self._in_flight.values()):
                still.append(m)
                continue
            if self.spool is not None and m.tally[1]:
                with contextlib.suppress(SpoolError):
                    self.spool.flush()
            self._complete(m, timed_out=False)
        self._reached = still

    def _complete(self, marker: FlushMarker, *, timed_out: bool) -> None:
        with self.markers_lock, contextlib.suppress(ValueError):
            self.markers.remove(marker)
        marker.done.set()

    def _complete_all_markers(self, *, timed_out: bool) -> None:
        with self.markers_lock:
            markers = list(self.markers)
        for m in markers:
            self._complete(m, timed_out=timed_out)

    def _final_drain(self) -> None:
        """At stop: whatever is still in memory goes to the spool (or is counted lost)."""
        for batch in list(self._in_flight.values()):
            self._finish_fresh(batch, _Outcome(undelivered=list(batch.events), error=_Hurried()))
        for batch in list(self._replays.values()):
            self._finish_replay(batch, _Outcome(undelivered=list(batch.events), error=_Hurried()))
        while True:
            batches = self._take_batches(64, close_partial=True)
            if not batches:
                break
            if self.spool is not None:
                self._spill_fresh(batches, reason="shutdown")
                continue
            for batch in batches:
                self.counters.drop(DropReason.SHUTDOWN_TIMEOUT, len(batch))
                self._resolve(batch, 0, 0, len(batch))
        for m in self._reached:
            self._complete(m, timed_out=False)
        self._reached = []

    def _log_drops(self, now: float) -> None:
        if now - self._last_drop_log < 10.0:
            return
        dropped = self.counters.dropped_snapshot()
        if dropped != self._logged_drops:
            changed = {k: v - self._logged_drops.get(k, 0) for k, v in dropped.items()}
            changed = {k: v for k, v in changed.items() if v}
            if changed:
                log.warning("pipeline.events_dropped", new=changed, total=dropped)
            self._logged_drops = dropped
            self._last_drop_log = now
