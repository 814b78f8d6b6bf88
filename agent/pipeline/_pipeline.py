"""The :class:`Pipeline` facade: the producer-facing :class:`Sink` over queue and worker.

Lifecycle: one worker thread per process, started by the constructor (or ``start()``).
An ``atexit`` hook shuts every live pipeline down within its ``shutdown_timeout``; after
``os.fork()`` the child's copy is emptied and gets a fresh worker on first use (nothing the
parent enqueued is sent by the child, and the child never touches the parent's spool files).
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import msgspec
import structlog

from agent._exceptions import register_secret
from agent.pipeline._batcher import Batch, BatchBuilder, Preprocess, apply_preprocess
from agent.pipeline._events import Item, normalize
from agent.pipeline._exporter import ApiExporter, Exporter
from agent.pipeline._queue import SUPPRESS, EventQueue, FlushMarker
from agent.pipeline._settings import Settings
from agent.pipeline._stats import Counters, DropReason, PipelineStats
from agent.pipeline._worker import Worker

if TYPE_CHECKING:
    from agent._config import AgentConfig

__all__ = ["FlushResult", "Pipeline", "Sink"]

log = structlog.get_logger("agent.pipeline")

_encode = msgspec.msgpack.Encoder().encode


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What became of the events that were pending when ``flush``/``shutdown`` was called.

    ``delivered``: acknowledged by the backend; ``spooled``: safe in the disk spool (sent
    later); ``pending``: still in memory when the deadline passed; ``dropped``: rejected by
    the server (dead-lettered) or lost (counted in ``stats().dropped``).
    """

    delivered: int = 0
    spooled: int = 0
    pending: int = 0
    timed_out: bool = False
    dropped: int = 0


@runtime_checkable
class Sink(Protocol):
    """What producers talk to (the in-process pipeline, or the daemon client transport)."""

    def enqueue(self, item: Item) -> bool:
        """O(1); never raises; never blocks, except when the queue is full under the
        ``block`` policy (at most ``block_timeout``), or under ``spill`` while the disk
        cannot keep up (at most ``spill_wait``, 0.5 s; in practice until the worker takes
        the next chunk to spill). False: not accepted (counted in the stats)."""
        ...

    def flush(self, timeout: float | None = None) -> FlushResult: ...

    def shutdown(self, timeout: float | None = None) -> FlushResult: ...


#: started-or-startable pipelines, until shut down: strong references, so that a pipeline
#: nobody holds any more is still flushed at exit (its worker thread is running anyway)
_LIVE: set[Pipeline] = set()
_ABANDONED: list[Any] = []  # a forked child's copies of its parent's workers: never touched


def _shutdown_all() -> None:
    pipelines = list(_LIVE)
    deadlines = {id(p): time.monotonic() + p.settings.shutdown_timeout for p in pipelines}
    for p in pipelines:
        p._begin_shutdown(deadlines[id(p)])
    for p in pipelines:
        p._finish_shutdown(deadlines[id(p)])


def _after_fork_in_child() -> None:
    for p in list(_LIVE):
        p._after_fork_in_child()


atexit.register(_shutdown_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


class Pipeline:
    """Bounded queue -> batches -> one ``send_steps`` per batch, with retry, spill and replay.

    ``enqueue`` accepts :class:`~agent._models.Step`, :class:`~agent._models.Score` (with
    ``step_id``), :class:`~agent._models.Thread` and dicts (see :mod:`agent.pipeline._events`).
    ``preprocess`` (e.g. PII redaction) receives each batch's step dicts on the worker thread
    and returns the list to send; an exception or a non-list keeps the original batch.
    """

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        api_key: str | None = None,
        url: str | None = None,
        preprocess: Preprocess | None = None,
        start: bool = True,
        exporter_factory: Callable[[], Exporter] | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings.from_config(config, api_key=api_key, url=url)
        self.settings = settings
        register_secret(settings.api_key)
        self._preprocess = preprocess
        self._exporter_factory = exporter_factory or self._default_exporter
        self._lock = threading.Lock()
        self._shutdown_result: FlushResult | None = None
        self._shutting_down = False
        self._pid = os.getpid()
        self._new_state()
        _LIVE.add(self)
        if start:
            self.start()

    def _default_exporter(self) -> Exporter:
        return ApiExporter(
            api_key=self.settings.api_key, url=self.settings.url, client_config=self.settings.client
        )

    def _new_state(self) -> None:
        """Fresh counters, batcher and worker; the queue is created once and, in a forked
        child, emptied in place (:meth:`EventQueue.reset_after_fork`): the object stays the
        same for the pipeline's life, so ``enqueue`` can be its bound ``put``."""
        s = self.settings
        self._counters = Counters()
        queue: EventQueue | None = getattr(self, "_queue", None)
        if queue is None:
            queue = self._queue = EventQueue(
                max_events=s.max_queue_events,
                max_bytes=s.max_queue_bytes,
                policy=s.overflow,
                block_timeout=s.block_timeout,
                batch_size=s.batch_size,
                counters=self._counters,
                spill_wait=s.spill_wait,
            )
            queue.on_closed = self._on_closed_put
            # the producer's hot path: one call (the queue's put), not Pipeline.enqueue ->
            # put; valid for the pipeline's life, fork included (same queue object), so
            # callers may keep the bound method (the hook's SinkHolder does)
            self.enqueue = queue.put  # type: ignore[method-assign]
        else:
            queue.reset_after_fork(self._counters)
        self._builder = BatchBuilder(
            batch_size=s.batch_size,
            batch_bytes=s.batch_bytes,
            counters=self._counters,
            preprocess=self._preprocess,
        )
        self._worker = Worker(s, self._queue, self._counters, self._builder, self._exporter_factory)
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker thread (idempotent; the constructor does it unless start=False)."""
        with self._lock:
            if self._started or self._shutting_down:
                return
            self._started = True
            self._worker.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker runs (spool opened and recovered); False on timeout."""
        if not self._started:
            return False
        return self._worker.started.wait(timeout)

    def _restart_in_child(self) -> bool:
        """In a forked child, on first use: reopen the (fresh) queue and start a worker."""
        if self._pid == os.getpid() or self._shutting_down:
            return False
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue.open = True
                self._started = True
                self._worker.start()
        return True

    def _on_closed_put(self, item: Any) -> bool:
        """``put`` on a closed queue: in a forked child, restart on first use."""
        if self._restart_in_child():
            return self._queue.put(item)
        return False

    def _after_fork_in_child(self) -> None:
        _ABANDONED.append(self._worker)
        self._lock = threading.Lock()
        if self._shutting_down:
            self._queue.reset_after_fork()
            return
        self._new_state()
        self._queue.open = False  # reopened (with a fresh worker) on first use

    # ------------------------------------------------------------------ producer API

    def enqueue(self, item: Item) -> bool:
        """Queue one item for delivery: O(1), no I/O, never raises. False: refused (counted).

        (Each instance replaces this method with its queue's bound ``put``, see
        ``_new_state``; this definition documents the contract.)
        """
        return self._queue.put(item)

    def enqueue_many(
        self, items: Sequence[Item], *, validated: bool = False, nbytes: int = 0
    ) -> int:
        """Queue many items with one queue operation; never raises; returns how many were
        accepted (the others are counted in ``stats().dropped`` by reason, as ``enqueue``
        counts them: when the queue is full the newest items are refused, or the oldest
        queued ones evicted under ``drop_oldest``).

        ``validated=True`` promises that every item is a step dict in wire form (camelCase
        keys, ``"type"`` set, a ``str`` ``"id"``, no ``"__kind__"``), as the daemon's
        decoder builds them: the worker then cuts them into batches without looking at each
        one. Otherwise each item is normalised like one ``enqueue`` (invalid ones counted
        ``invalid_item``). ``nbytes``: their msgpack size, when known (a frame's length),
        used for batch sizing and the queue's byte bound. The items are copied into the
        queue (the sequence is not kept).
        """
        try:
            if not self._queue.open:
                self._restart_in_child()
            return self._queue.put_many(list(items), trusted=validated, nbytes=nbytes)
        except Exception:  # never raise into the caller
            return 0

    def enqueue_durable(self, items: Sequence[Item], *, validated: bool = False) -> bool:
        """Write ``items`` to the spool and return once an fsync covers them (group commit).

        For the daemon's disk durability mode: this blocks on disk I/O, never call it from an
        application's hot path. Items reach the backend through replay, in order. Returns
        False when they could not be made durable (no spool: they were queued in memory
        instead; spool full or failing: counted as dropped). ``validated``: as for
        :meth:`enqueue_many` (no per-item normalisation). The record is encoded with one
        encoder call for all the items.
        """
        if not items:
            return True
        self._restart_in_child()
        if not self._started:
            self.start()
        self._worker.started.wait(10.0)
        spool = self._worker.spool
        if spool is None or self._shutting_down:
            queued = self.enqueue_many(items, validated=validated)
            return False if spool is None else queued == len(items)
        events: list[dict[str, Any]]
        if validated:
            events = cast("list[dict[str, Any]]", list(items))
        else:
            events = []
            for item in items:
                try:
                    event = normalize(item)
                except Exception:
                    event = None
                if event is None:
                    self._counters.drop(DropReason.INVALID)
                else:
                    events.append(event)
        if not events:
            return False
        batch = Batch(events, None, 0)
        if self._preprocess is not None:
            apply_preprocess(batch, self._preprocess, self._counters)
        try:
            record = batch.record(self._counters)
        except Exception:
            self._counters.drop(DropReason.INVALID, len(events))
            return False
        accepted = spool.append([record], durable=True)
        if not accepted:
            self._counters.drop(DropReason.SPOOL_FULL, len(events))
            return False
        with self._counters.lock:
            self._counters.spilled += len(events)
        self._worker.wake()
        return True

    # ------------------------------------------------------------------ flush / shutdown

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Wait until what was enqueued before the call is delivered or spooled.

        With a timeout, returns by the deadline even with the backend down: close to it,
        the undelivered events go to the spool. ``timed_out`` tells whether it was reached.
        """
        if SUPPRESS.get() or threading.get_ident() == self._worker.ident:
            return FlushResult(pending=self._queue.depth(), timed_out=True)
        self._restart_in_child()
        deadline = math.inf if timeout is None else time.monotonic() + max(0.0, timeout)
        if not self._started or self._worker.finished.is_set():
            depth = self._queue.depth()
            return FlushResult(pending=depth, timed_out=depth > 0)
        marker = FlushMarker(deadline)
        self._worker.add_marker(marker)
        self._queue.put_marker(marker)
        done = marker.done.wait(None if timeout is None else max(0.0, timeout))
        return self._result(marker, timed_out=not done)

    @staticmethod
    def _result(marker: FlushMarker, *, timed_out: bool) -> FlushResult:
        delivered, spooled, dropped = marker.tally
        pending = max(0, marker.pending_at_call - delivered - spooled - dropped) if timed_out else 0
        return FlushResult(
            delivered=delivered,
            spooled=spooled,
            pending=pending,
            timed_out=timed_out,
            dropped=dropped,
        )

    def shutdown(self, timeout: float | None = None) -> FlushResult:
        """Stop accepting events, deliver or spool what is pending, stop the worker.

        Returns within ``timeout`` (default ``shutdown_timeout``) even with the backend down.
        Idempotent: later calls return the first result.
        """
        timeout = self.settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + timeout
        marker = self._begin_shutdown(deadline)
        return self._finish_shutdown(deadline, marker)

    def _begin_shutdown(self, deadline: float) -> FlushMarker | None:
        with self._lock:
            if self._shutting_down:
                return None
            self._shutting_down = True
        _LIVE.discard(self)
        self._queue.close()
        worker = self._worker
        if not self._started:
            if not self._queue.depth():
                self._shutdown_result = FlushResult()
                return None
            self._started = True
            worker.start()
        if worker.finished.is_set():
            return None
        total = max(0.0, deadline - time.monotonic())
        marker = FlushMarker(deadline)
        worker.add_marker(marker)
        self._queue.put_marker(marker)
        hurry_at = deadline - min(1.0, 0.3 * total)
        stop_at = deadline - min(0.25, 0.1 * total)
        worker.request_stop(hurry_at, stop_at)
        self._shutdown_marker = marker
        return marker

    def _finish_shutdown(self, deadline: float, marker: FlushMarker | None = None) -> FlushResult:
        if marker is None:
            marker = getattr(self, "_shutdown_marker", None)
        worker = self._worker
        if marker is not None and self._shutdown_result is None:
            done = marker.done.wait(max(0.0, deadline - time.monotonic()))
            if worker.thread is not None and threading.get_ident() != worker.ident:
                worker.thread.join(max(0.0, deadline - time.monotonic()))
            self._shutdown_result = self._result(marker, timed_out=not done)
        elif worker.thread is not None and threading.get_ident() != worker.ident:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        return self._shutdown_result or FlushResult()

    def close(self) -> None:
        """Same as ``shutdown()``."""
        self.shutdown()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ telemetry

    def stats(self) -> PipelineStats:
        """Counters since start and current gauges."""
        c = self._counters
        q = self._queue
        spool = self._worker.spool
        spool_bytes = spool_records = spool_dropped = spool_corrupt = 0
        if spool is not None:
            try:
                st = spool.stats
            except Exception:  # pragma: no cover - closed
                st = None
            if st is not None:
                spool_bytes, spool_records = st.bytes, st.records
                spool_dropped = st.dropped_full + st.dropped_io_error
                spool_corrupt = st.corrupt_skipped
        depth = q.depth()
        return PipelineStats(
            enqueued=q.enqueued,
            sent=c.sent,
            retried=c.retried,
            spilled=c.spilled,
            replayed=c.replayed,
            dead_lettered=c.dead_lettered,
            dropped=c.dropped_snapshot(),
            preprocess_errors=c.preprocess_errors,
            batches=c.batches,
            producer_waits=q.waits,
            producer_wait_max_ms=round(q.wait_max * 1e3, 3),
            queue_depth=depth,
            queue_bytes=int(depth * q.mean_bytes),
            in_flight=self._worker.in_flight_events,
            spool_bytes=spool_bytes,
            spool_records=spool_records,
            spool_dropped=spool_dropped,
            spool_corrupt=spool_corrupt,
            backend_up=self._worker.backend_up,
        )

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<Pipeline queue={s.queue_depth} sent={s.sent} spooled={s.spool_records} "
            f"backend_up={s.backend_up}>"
        )
