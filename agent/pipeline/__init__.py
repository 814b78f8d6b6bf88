"""The ingestion pipeline: bounded queue -> batcher -> worker (retry) -> spool -> backend.

Producers call :meth:`Pipeline.enqueue` (O(1), no I/O, never raises); one worker thread per
process batches events into ``send_steps`` calls, retries with backoff, spills to the disk
spool when the backend is unreachable or memory is full, and replays the spool oldest first
once the backend answers again. See :mod:`agent.pipeline._events` for what may be enqueued
(steps, scores, threads, and dicts with an optional ``"__kind__"`` of ``"score"``/``"thread"``).
"""

from agent.pipeline._events import KIND_KEY, Item
from agent.pipeline._exporter import ApiExporter, Exporter
from agent.pipeline._pipeline import FlushResult, Pipeline, Sink
from agent.pipeline._queue import OverflowPolicy, suppressed
from agent.pipeline._retry import RetryPolicy
from agent.pipeline._settings import Settings
from agent.pipeline._stats import DropReason, PipelineStats

__all__ = [
    "KIND_KEY",
    "ApiExporter",
    "DropReason",
    "Exporter",
    "FlushResult",
    "Item",
    "OverflowPolicy",
    "Pipeline",
    "PipelineStats",
    "RetryPolicy",
    "Settings",
    "Sink",
    "suppressed",
]
