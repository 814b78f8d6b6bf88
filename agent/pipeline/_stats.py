"""Self-telemetry of the pipeline: counters, gauges and the snapshot handed to callers."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Counters", "DropReason", "PipelineStats"]


class DropReason:
    """Why an event was not delivered (keys of ``PipelineStats.dropped``)."""

    QUEUE_FULL = "queue_full"  # drop_newest policy, or spill could not keep up
    DROP_OLDEST = "drop_oldest"  # evicted by the drop_oldest policy
    BLOCK_TIMEOUT = "block_timeout"  # block policy waited block_timeout in vain
    SHUTDOWN = "shutdown"  # enqueued after shutdown
    REENTRANT = "reentrant"  # enqueued by the agent's own machinery (logging...)
    INVALID = "invalid_item"  # not a Step, Score (with step_id), Thread or dict
    SPOOL_FULL = "spool_full"  # the spool refused the records (cap, I/O error)
    NO_SPOOL = "no_spool"  # undeliverable and the spool is disabled
    SHUTDOWN_TIMEOUT = "shutdown_timeout"  # still in memory at the shutdown deadline
    DEAD_LETTER_FAILED = "dead_letter_failed"  # rejected by the server, file not writable


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """A snapshot of the pipeline's counters (since start) and gauges (now)."""

    enqueued: int = 0
    sent: int = 0  # events acknowledged by the backend (fresh and replayed)
    retried: int = 0  # send attempts that were retried
    spilled: int = 0  # events written to the spool
    replayed: int = 0  # events read back from the spool and delivered
    dead_lettered: int = 0  # events the server rejected, written to the dead-letter file
    dropped: dict[str, int] = field(default_factory=dict)  # by reason (DropReason)
    preprocess_errors: int = 0
    batches: int = 0  # send_steps requests that succeeded
    producer_waits: int = 0  # times a producer waited for room (block, or spill backpressure)
    producer_wait_max_ms: float = 0.0  # the longest of those waits
    queue_depth: int = 0
    queue_bytes: int = 0  # estimate: depth x mean encoded event size
    in_flight: int = 0  # events in batches being sent
    spool_bytes: int = 0
    spool_records: int = 0
    spool_dropped: int = 0  # records the spool dropped at its cap or on I/O errors
    spool_corrupt: int = 0  # corrupt records skipped (on open or read)
    backend_up: bool = True

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["dropped"] = dict(self.dropped)
        out["dropped_total"] = self.dropped_total
        return out


class Counters:
    """Mutable counters. The worker thread owns most of them; ``drop`` may be called from
    any thread (it takes a lock: drops are off the hot path)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.spilled = 0
        self.replayed = 0
        self.dead_lettered = 0
        self.preprocess_errors = 0
        self.batches = 0
        self.dropped: dict[str, int] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def dropped_snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.dropped)
