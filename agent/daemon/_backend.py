"""Where the daemon puts accepted events: the pipeline, or an in-memory double for tests.

The server only needs four operations, so it talks to a :class:`Backend` and not to the
pipeline directly. Items are the pipeline's plain dicts (step dicts; scores and threads
marked with ``"__kind__"``, see :mod:`agent.pipeline._events`), built by the protocol
module: ``submit`` (memory durability: one queue operation per frame, never blocks),
``submit_durable`` (disk durability: returns once the events are group-committed to the
spool; called on a worker thread), ``flush`` and ``stats``. ``validated=True`` says the
events are step dicts in wire form with ids (the fast decoder's output), so the pipeline
batches them without a per-event pass; ``nbytes`` is their size on the wire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from agent.daemon._protocol import Flushed

if TYPE_CHECKING:
    from agent.pipeline import Pipeline

__all__ = ["Backend", "Items", "MemoryBackend", "PipelineBackend"]

#: What the server hands over: the pipeline's plain event dicts.
Items = Sequence[dict[str, Any]]


class Backend(Protocol):
    """What the server feeds. Implementations are thread-safe."""

    def submit(self, events: Items, *, validated: bool = False, nbytes: int = 0) -> int:
        """Accept events into memory; returns how many were accepted (the rest were dropped)."""
        ...

    def submit_durable(self, events: Items, *, validated: bool = False) -> int:
        """Accept events and return once they are on disk; 0 when they could not be stored."""
        ...

    def flush(self, timeout: float) -> Flushed:
        """Deliver or spool what is held, waiting up to ``timeout`` seconds."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters and gauges, JSON-ready."""
        ...


class PipelineBackend:
    """The production backend: events become Steps/Scores/Threads in the pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def submit(self, events: Items, *, validated: bool = False, nbytes: int = 0) -> int:
        return self.pipeline.enqueue_many(events, validated=validated, nbytes=nbytes)

    def submit_durable(self, events: Items, *, validated: bool = False) -> int:
        return len(events) if self.pipeline.enqueue_durable(events, validated=validated) else 0

    def flush(self, timeout: float) -> Flushed:
        result = self.pipeline.flush(timeout)
        return Flushed(
            delivered=result.delivered,
            spooled=result.spooled,
            pending=result.pending,
            timed_out=result.timed_out,
        )

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self.pipeline.stats().as_dict()
        return data


class MemoryBackend:
    """A real in-process backend that keeps what it accepts in a list (tests, benchmarks).

    ``capacity`` bounds what it holds: past it, events are refused (counted as dropped).
    ``keep=False`` only counts (the benchmark's sink).
    """

    def __init__(self, *, capacity: int | None = None, keep: bool = True) -> None:
        self.items: list[dict[str, Any]] = []
        self.accepted = 0
        self.dropped = 0
        self.durable_batches = 0
        self._capacity = capacity
        self._keep = keep
        self._cond = threading.Condition()

    def submit(self, events: Items, *, validated: bool = False, nbytes: int = 0) -> int:
        with self._cond:
            room = len(events)
            if self._capacity is not None:
                room = max(0, min(room, self._capacity - self.accepted))
            if self._keep:
                self.items.extend(events[:room])
            self.accepted += room
            self.dropped += len(events) - room
            self._cond.notify_all()
            return room

    def submit_durable(self, events: Items, *, validated: bool = False) -> int:
        accepted = self.submit(events)
        with self._cond:
            self.durable_batches += 1
        return accepted

    def flush(self, timeout: float) -> Flushed:
        with self._cond:
            return Flushed(delivered=self.accepted)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"accepted": self.accepted, "dropped": self.dropped, "queue_depth": 0}

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` events were accepted, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.accepted < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
