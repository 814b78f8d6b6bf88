"""The bounded, thread-safe queue between producers and the worker (no I/O, no encoding).

The hot path (:meth:`EventQueue.put`) is a few attribute reads, one ``deque.append`` and,
once per full batch, a wake-up of the worker. The queue is bounded by events *and* bytes:
the worker measures what it takes out (msgpack size of one event in 16, and the in-memory size
of one in 64, so "bytes" means memory held, not wire bytes) and keeps ``limit`` (the
event count allowed) at ``min(max_events, max_bytes // mean event size)``, so the producer
only compares ``len(deque)`` with one integer. Counting is free too: the number enqueued is
what the worker took plus what is still queued.

When the queue is full the overflow policy applies (off the hot path):

* ``spill`` (default): the worker moves events to the disk spool from half full on, so the
  limit is only reached by a producer that outruns the disk; that producer then waits for
  room (at most ``spill_wait``, default 0.5 s, or ``block_timeout`` if longer; released as
  soon as the worker has taken a chunk to spill, typically within milliseconds) and only
  then is the event refused and counted (``queue_full``). Why not 50 ms: appending fresh
  pages to a file costs ~2 us per KB on a small VM (more than a tight producer loop spends
  making the event), so such a producer is held back at every chunk; on a 2-core machine
  with other busy processes the worker thread is sometimes not scheduled for more than
  50 ms, and a 50 ms budget then lost events in a 1,000,000-event outage run. The longest
  wait is reported (``producer_wait_max_ms``);
* ``drop_newest``: refuse the new event (``queue_full``);
* ``drop_oldest``: evict the oldest queued event (``drop_oldest``) and accept the new one;
* ``block``: wait up to ``block_timeout`` for room, then refuse (``block_timeout``).

Many events can travel as one :class:`Chunk` (``put_many``, the daemon's path): one deque
entry and one lock round trip for a whole decoded frame, counted by its events (``extra``
holds the events beyond one per chunk, so ``len(dq) + extra`` is the number of queued
items). A chunk that does not fit is cut by the same policies, event by event: the newest
events are refused (``drop_newest``, ``spill`` past its wait, ``block`` past its wait) or
the oldest queued events are evicted (``drop_oldest``).

Flush markers ride in the same deque (FIFO), so a flush covers exactly what was enqueued
before it.
"""

from __future__ import annotations

import collections
import contextvars
import enum
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.pipeline._stats import Counters, DropReason

__all__ = ["Chunk", "EventQueue", "FlushMarker", "OverflowPolicy", "suppressed"]

#: Set in the worker thread (and by :func:`suppressed`): events enqueued while it is true
#: are refused, so the agent's own logging can never feed the pipeline.
SUPPRESS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "literal_agent_pipeline_suppress", default=False
)


class suppressed:  # noqa: N801 - used like a function: ``with suppressed():``
    """Context manager: nothing enqueued inside reaches any pipeline (counted ``reentrant``)."""

    def __enter__(self) -> None:
        self._token = SUPPRESS.set(True)

    def __exit__(self, *exc_info: object) -> None:
        SUPPRESS.reset(self._token)


class OverflowPolicy(enum.StrEnum):
    SPILL = "spill"
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"
    BLOCK = "block"


class FlushMarker:
    """Put in the queue by ``flush``: everything before it belongs to that flush."""

    __slots__ = ("created", "deadline", "done", "pending_at_call", "seq_end", "tally")

    def __init__(self, deadline: float) -> None:
        self.created = time.monotonic()
        self.deadline = deadline  # monotonic; inf for no timeout
        self.done = threading.Event()
        self.seq_end = -1  # worker pop sequence at the marker; -1 until the worker reaches it
        self.pending_at_call = 0
        # delivered, spooled, dropped (incl. dead-lettered) among the flush's events
        self.tally = [0, 0, 0]


class Chunk:
    """Many items enqueued together (one deque entry): see :meth:`EventQueue.put_many`.

    ``trusted``: every item is already a wire step dict with a ``str`` id (the daemon's
    validated frames), so the batcher slices the list without looking at each event;
    otherwise each item is normalised like one put alone. ``nbytes``: their msgpack size
    when the caller knows it (a frame's length), else 0.
    """

    __slots__ = ("items", "nbytes", "trusted")

    def __init__(self, items: list[Any], *, trusted: bool = False, nbytes: int = 0) -> None:
        self.items = items
        self.trusted = trusted
        self.nbytes = nbytes

    def __len__(self) -> int:
        return len(self.items)


class EventQueue:
    """Bounded MPSC queue of raw items (normalised later by the worker)."""

    def __init__(
        self,
        *,
        max_events: int,
        max_bytes: int,
        policy: OverflowPolicy,
        block_timeout: float,
        batch_size: int,
        counters: Counters,
        initial_event_bytes: int = 1024,
        spill_wait: float = 0.5,
    ) -> None:
        self.max_events = max(1, max_events)
        self.max_bytes = max(1, max_bytes)
        self.policy = OverflowPolicy(policy)
        self.block_timeout = block_timeout
        self.spill_wait = max(block_timeout, spill_wait)
        self.counters = counters
        self.dq: collections.deque[Any] = collections.deque()
        self.mean_bytes = float(initial_event_bytes)
        self.limit = self._compute_limit()
        self.wake_at = max(1, min(batch_size, self.limit))
        self.wake_pending = False
        self.open = True  # False: closed (shutdown) or restart needed (forked child)
        self.taken = 0  # items taken by the worker (markers excluded)
        self.evicted = 0  # items removed by drop_oldest
        self.markers_queued = 0  # flush markers in dq (not events)
        self.extra = 0  # events in queued chunks beyond one per chunk (under _lock)
        self._waker: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._blocked = 0
        self.on_closed: Callable[[Any], bool] | None = None  # restart hook (fork)
        #: spill policy with a working spool: at the hard limit, wait for room (up to
        #: block_timeout) instead of dropping at once; set by the worker
        self.spill_backpressure = False
        self.waits = 0  # times a producer waited for room (approximate: not locked)
        self.wait_max = 0.0  # longest such wait, seconds

    def _compute_limit(self) -> int:
        by_bytes = int(self.max_bytes // max(1.0, self.mean_bytes))
        return max(1, min(self.max_events, by_bytes))

    # ------------------------------------------------------------------ producer side

    def put(self, item: Any) -> bool:
        """Enqueue ``item``: O(1), never raises; False when refused (counted)."""
        dq = self.dq
        if len(dq) + self.extra < self.limit and self.open and not SUPPRESS.get():
            dq.append(item)
            if len(dq) >= self.wake_at and not self.wake_pending:
                self._wake()
            return True
        return self._put_slow(item)

    def _wake(self) -> None:
        self.wake_pending = True
        waker = self._waker
        if waker is not None:
            try:
                waker()
            except RuntimeError:  # the worker's loop is closing
                self.wake_pending = False

    def _put_slow(self, item: Any) -> bool:
        try:
            if SUPPRESS.get():
                self.counters.drop(DropReason.REENTRANT)
                return False
            if not self.open:
                hook = self.on_closed
                if hook is not None and hook(item):
                    return True
                self.counters.drop(DropReason.SHUTDOWN)
                return False
            with self._lock:  # the worker may just have taken a chunk (extra not yet lower)
                if len(self.dq) + self.extra < self.limit:
                    self.dq.append(item)
                    return True
            policy = self.policy
            if policy is OverflowPolicy.DROP_OLDEST:
                return self._evict_and_put(item)
            if policy is OverflowPolicy.BLOCK:
                return self._block_and_put(item, DropReason.BLOCK_TIMEOUT)
            if policy is OverflowPolicy.SPILL and self.spill_backpressure:
                # the worker is spilling but this producer outruns the disk: give it the
                # CPU for a moment (bounded by spill_wait) rather than lose the event
                return self._block_and_put(item, DropReason.QUEUE_FULL, self.spill_wait)
            self.counters.drop(DropReason.QUEUE_FULL)
            if not self.wake_pending:
                self._wake()
            return False
        except Exception:  # never raise into the caller
            return False

    def _evict_and_put(self, item: Any) -> bool:
        with self._lock:
            self._evict(1)
            self.dq.append(item)
        if not self.wake_pending:
            self._wake()
        return True

    def _evict(self, n: int) -> int:
        """Remove the ``n`` oldest queued events (markers stay in place); under ``_lock``."""
        dq = self.dq
        markers: list[Any] = []
        evicted = 0
        while evicted < n and dq:
            try:
                old = dq.popleft()
            except IndexError:
                break
            if type(old) is FlushMarker:
                markers.append(old)
                continue
            if type(old) is Chunk:
                need = n - evicted
                size = len(old.items)
                if size > need:  # cut the chunk: its newest events stay queued
                    old.items = old.items[need:]
                    old.nbytes = old.nbytes * (size - need) // size
                    self.extra -= need
                    dq.appendleft(old)
                    evicted += need
                    break
                self.extra -= size - 1
                evicted += size
                continue
            evicted += 1
        for marker in reversed(markers):
            dq.appendleft(marker)
        if evicted:
            self.evicted += evicted
            self.counters.drop(DropReason.DROP_OLDEST, evicted)
        return evicted

    def _block_and_put(self, item: Any, reason: str, timeout: float | None = None) -> bool:
        self.waits += 1
        start = time.monotonic()
        deadline = start + (self.block_timeout if timeout is None else timeout)
        with self._space:
            self._blocked += 1
            try:
                if not self.wake_pending:
                    self._wake()
                while len(self.dq) + self.extra >= self.limit and self.open:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.counters.drop(reason)
                        return False
                    self._space.wait(remaining)
                if not self.open:
                    self.counters.drop(DropReason.SHUTDOWN)
                    return False
                self.dq.append(item)
                return True
            finally:
                self._blocked -= 1
                self.wait_max = max(self.wait_max, time.monotonic() - start)

    def put_marker(self, marker: FlushMarker) -> None:
        """Append a flush marker (never refused) and wake the worker."""
        with self._lock:
            self.markers_queued += 1
        self.dq.append(marker)
        self._wake()

    def put_many(self, items: list[Any], *, trusted: bool = False, nbytes: int = 0) -> int:
        """Enqueue ``items`` as one :class:`Chunk`; never raises; returns how many were
        accepted (the others are counted, by reason). The list is owned by the queue from
        now on: the caller must not touch it again."""
        n = len(items)
        if not n:
            return 0
        try:
            if self.open and not SUPPRESS.get():
                with self._lock:
                    if len(self.dq) + self.extra + n <= self.limit:
                        self._append_chunk(items, trusted, nbytes)
                        accepted = n
                    else:
                        accepted = -1
                if accepted > 0:
                    if len(self.dq) + self.extra >= self.wake_at and not self.wake_pending:
                        self._wake()
                    return accepted
            return self._put_many_slow(items, trusted, nbytes)
        except Exception:  # never raise into the caller
            return 0

    def _append_chunk(self, items: list[Any], trusted: bool, nbytes: int) -> None:
        self.extra += len(items) - 1
        self.dq.append(Chunk(items, trusted=trusted, nbytes=nbytes))

    def _put_many_slow(self, items: list[Any], trusted: bool, nbytes: int) -> int:
        n = len(items)
        if SUPPRESS.get():
            self.counters.drop(DropReason.REENTRANT, n)
            return 0
        if not self.open:
            self.counters.drop(DropReason.SHUTDOWN, n)
            return 0
        policy = self.policy
        if policy is OverflowPolicy.DROP_OLDEST:
            with self._lock:
                if n > self.limit:  # more than the queue holds: its own oldest go first
                    cut = n - self.limit
                    self.evicted += cut
                    self.counters.drop(DropReason.DROP_OLDEST, cut)
                    nbytes = nbytes * self.limit // n
                    items = items[cut:]
                    n = len(items)
                self._evict(len(self.dq) + self.extra + n - self.limit)
                self._append_chunk(items, trusted, nbytes)
            if not self.wake_pending:
                self._wake()
            return n
        reason = DropReason.QUEUE_FULL
        wait = policy is OverflowPolicy.BLOCK or (
            policy is OverflowPolicy.SPILL and self.spill_backpressure
        )
        if policy is OverflowPolicy.BLOCK:
            reason = DropReason.BLOCK_TIMEOUT
        if wait:
            self.waits += 1
        start = time.monotonic()
        budget = self.block_timeout if policy is OverflowPolicy.BLOCK else self.spill_wait
        deadline = start + budget
        with self._space:
            self._blocked += 1
            try:
                if not self.wake_pending:
                    self._wake()
                room = self.limit - len(self.dq) - self.extra
                while wait and room < n and self.open:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._space.wait(remaining)
                    room = self.limit - len(self.dq) - self.extra
                if not self.open:
                    self.counters.drop(DropReason.SHUTDOWN, n)
                    return 0
                accepted = max(0, min(n, room))
                if accepted:
                    part = items if accepted == n else items[:accepted]
                    self._append_chunk(part, trusted, nbytes * accepted // n)
                self.counters.drop(reason, n - accepted)
                return accepted
            finally:
                self._blocked -= 1
                if wait:
                    self.wait_max = max(self.wait_max, time.monotonic() - start)

    # ------------------------------------------------------------------ worker side

    def set_waker(self, waker: Callable[[], None] | None) -> None:
        self._waker = waker

    def take(self, n: int) -> list[Any]:
        """Pop up to ``n`` items (markers included, they do not count toward ``n``)."""
        out: list[Any] = []
        dq = self.dq
        popleft = dq.popleft
        got = markers = extra = 0
        try:
            while got < n:
                item = popleft()
                out.append(item)
                kind = type(item)
                if kind is FlushMarker:
                    markers += 1
                elif kind is Chunk:
                    size = len(item.items)
                    got += size
                    extra += size - 1
                else:
                    got += 1
        except IndexError:
            pass
        self.taken += got
        if markers or extra:
            with self._lock:
                self.markers_queued -= markers
                self.extra -= extra
        if self._blocked:
            with self._space:
                self._space.notify_all()
        return out

    def observe_sizes(self, total_bytes: int, count: int) -> None:
        """Fold measured encoded sizes into the mean and recompute the event limit."""
        if count <= 0:
            return
        mean = total_bytes / count
        self.mean_bytes = 0.8 * self.mean_bytes + 0.2 * mean
        self.limit = self._compute_limit()

    def depth(self) -> int:
        """Events queued (flush markers excluded)."""
        return max(0, len(self.dq) + self.extra - self.markers_queued)

    def close(self) -> None:
        """Refuse further items (wakes blocked producers)."""
        self.open = False
        with self._space:
            self._space.notify_all()

    def reset_after_fork(self, counters: Counters | None = None) -> None:
        """In a forked child: empty, unlocked, closed until the pipeline restarts (with
        ``counters``, the child's fresh ones, when given). The object itself is kept: its
        bound ``put`` may be held by producers (``Pipeline.enqueue`` is that method)."""
        if counters is not None:
            self.counters = counters
        self.waits = 0
        self.wait_max = 0.0
        self.spill_backpressure = False  # set again by the child's worker
        self.dq = collections.deque()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._blocked = 0
        self._waker = None
        self.wake_pending = False
        self.taken = 0
        self.evicted = 0
        self.markers_queued = 0
        self.extra = 0
        self.open = False

    @property
    def enqueued(self) -> int:
        return self.taken + self.evicted + len(self.dq) + self.extra - self.markers_queued
