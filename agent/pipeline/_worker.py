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
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from agent._exceptions import (
    RateLimitedError,
)
from agent.pipeline._batcher import (
    Batch,
    BatchBuilder,
)
from agent.pipeline._deadletter import DeadLetterFile
from agent.pipeline._delivery import Delivery, Hurried, Outcome, message_of
from agent.pipeline._events import Event
from agent.pipeline._exporter import Exporter
from agent.pipeline._queue import SUPPRESS, EventQueue, FlushMarker, OverflowPolicy
from agent.pipeline._retry import backoff_delay
from agent.pipeline._settings import Settings
from agent.pipeline._spill import SpoolSide
from agent.pipeline._spool import Spool, SpoolError
from agent.pipeline._stats import Counters, DropReason

__all__ = ["Worker"]

log = structlog.get_logger("agent.pipeline")

_SPILL_BATCHES = 4  # batches written with one spool append (one record, one write)
_SPILL_ROUNDS = 32  # appends per scheduling round before yielding to the loop


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
        self.spill = SpoolSide(settings, counters)
        self.spool: Spool | None = None
        self._retry_after = 0.0  # the server's last Retry-After hint, for the probe
        self.delivery = Delivery(
            policy=settings.retry,
            batch_size=settings.batch_size,
            batch_bytes=settings.batch_bytes,
            sleep=self._sleep,
            keep_going=self._keep_going,
            on_retry=self._on_retry,
            on_failure=self._note_failure,
        )
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
        self.spool = self.spill.open()
        self.queue.spill_backpressure = (
            self.spool is not None and self.queue.policy is OverflowPolicy.SPILL
        )
        exporter: Exporter | None = None
        try:
            exporter = self.exporter_factory()
        except Exception as exc:
            self.delivery.exporter_error = message_of(exc)
            log.error(
                "pipeline.exporter_failed",
                error=self.delivery.exporter_error,
                action="events are kept (spool) until a pipeline with a working client runs",
            )
        self.delivery.exporter = exporter
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
            want = size * (max_batches - len(out)) - len(builder)
            items = queue.take(max(1, want))
            if not items:
                break
            batches, self._seq = builder.extend(items, self._seq, self._marker_reached)
            out.extend(batches)
        if close_partial and len(out) < max_batches:
            batch = builder.close(self._seq)
            if batch is not None:
                out.append(batch)
        self._partial_since = None if not len(builder) and not queue.dq else time.monotonic()
        measured, count = builder.take_measure()
        queue.observe_sizes(measured, count)
        queue.wake_at = max(1, min(size, queue.limit))
        return out

    def _marker_reached(self, marker: FlushMarker, seq: int) -> None:
        with self.markers_lock:
            marker.seq_end = seq
            self._markers_waiting -= 1
        self._reached.append(marker)

    def _pump(self, now: float) -> None:
        queue = self.queue
        depth = len(queue.dq) + queue.extra  # queued items (chunks count their events)
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
                if len(queue.dq) + queue.extra <= low:
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
        outcome = Outcome()
        resolved = False
        try:
            with anyio.CancelScope() as scope:
                batch.cancel = scope
                await self.delivery.deliver(batch.events, outcome, threads_in=batch.threads)
            if scope.cancelled_caught:
                outcome = Outcome.kept(batch.events)
            self._finish_fresh(batch, outcome)
            resolved = True
        finally:
            if not resolved:  # cancelled from outside (hard stop): keep the events
                self._finish_fresh(batch, Outcome.kept(batch.events))

    def _finish_fresh(self, batch: Batch, outcome: Outcome) -> None:
        if self._in_flight.pop(id(batch), None) is None:
            return
        self._in_flight_events -= len(batch)
        batch.cancel = None
        self._account_delivered(outcome.delivered)
        dropped = self._dead_letter(outcome.dead)
        spooled = 0
        if outcome.undelivered:
            if len(outcome.undelivered) == len(batch.events):
                spooled, lost = self._spill_batch(batch, reason=self._spill_reason(outcome.error))
            else:
                part = Batch(outcome.undelivered, None, 0)
                spooled, lost = self._spill_batch(part, reason=self._spill_reason(outcome.error))
            dropped += lost
        self._resolve(batch, outcome.delivered, spooled, dropped)
        self._set_wake()

    def _spill_reason(self, error: BaseException | None) -> str:
        if isinstance(error, Hurried):
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
            raise Hurried()

    # ------------------------------------------------------------------ backend state

    def _note_failure(self, exc: BaseException) -> None:
        if isinstance(exc, Hurried) or not self.backend_up:
            return
        self.backend_up = False
        self._assumed_up = False
        self._down_since = time.monotonic()
        if isinstance(exc, RateLimitedError) and exc.retry_after:
            self._retry_after = exc.retry_after
        log.warning(
            "pipeline.backend_down",
            error=message_of(exc),
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

    def _spill_batch(self, batch: Batch, *, reason: str) -> tuple[int, int]:
        """Write a batch to the spool; return (spooled events, lost events)."""
        return self.spill.spill([batch], reason=reason)[0]

    def _spill_fresh(self, batches: list[Batch], *, reason: str) -> None:
        for batch, (spooled, lost) in zip(
            batches, self.spill.spill(batches, reason=reason), strict=True
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
                self.spill.spilling_logged = False
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
        return self.spill.read_batch(self.builder.batch_size, self.settings.batch_bytes)

    async def _replay_one(self, *, probe: bool) -> None:
        batch = self._read_replay_batch()
        if batch is None:
            return
        self._replays[id(batch)] = batch
        self._in_flight_events += len(batch)
        await self._send_replay(batch, retry=not probe)

    async def _send_replay(self, batch: Batch, retry: bool = True) -> None:
        outcome = Outcome()
        resolved = False
        try:
            with anyio.CancelScope() as scope:
                batch.cancel = scope
                await self.delivery.deliver(batch.events, outcome, retry=retry, nbytes=batch.nbytes)
            if scope.cancelled_caught:
                outcome = Outcome.kept(batch.events)
            self._finish_replay(batch, outcome)
            resolved = True
        finally:
            if not resolved:
                self._finish_replay(batch, Outcome.kept(batch.events))

    def _finish_replay(self, batch: Batch, outcome: Outcome) -> None:
        if self._replays.pop(id(batch), None) is None:
            return
        self._in_flight_events -= len(batch)
        self.spill.settle(batch, outcome)
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
            self._finish_fresh(batch, Outcome.kept(batch.events))
        for batch in list(self._replays.values()):
            self._finish_replay(batch, Outcome.kept(batch.events))
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
