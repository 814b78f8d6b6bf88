"""The ingestion pipeline: bounded queue -> batcher -> worker (retry) -> spool -> backend.

Producers call :meth:`Pipeline.enqueue` (O(1), no I/O or encoding on their thread, never
raises); one worker thread per process batches events into one ``send_steps`` per batch,
retries with backoff (tenacity), spills to the disk spool when the backend is unreachable or
memory is full, and replays the spool oldest first once the backend answers again::

    pipeline = Pipeline(load_config())           # or Pipeline(api_key=..., url=...)
    pipeline.enqueue(step)                       # Step, Score (with step_id), Thread, dict
    pipeline.enqueue_many(items)                 # one queue operation; returns how many fit
    pipeline.flush(timeout=2.0)                  # FlushResult(delivered, spooled, pending, ...)
    pipeline.stats().as_dict()                   # counters and gauges

What may be enqueued (see :mod:`agent.pipeline._events`): steps (``llm`` steps carry their
generation; messages are steps), scores with a ``step_id`` (sent as the step upsert
``{"id": step_id, "scores": [score]}``), thread upserts, and dicts: a dict is a step dict
(camelCase wire keys) unless its top-level ``"__kind__"`` is ``"score"`` (a score dict with
``"stepId"``) or ``"thread"`` (``"id"``, optional ``name``, ``metadata``, ``tags``,
``participantId``).

``enqueue_many`` (the daemon's path: one chunk per frame) is bounded by its events like
single puts, cut event by event by the overflow policy, and never raises; with
``validated=True`` (wire step dicts with ids) the worker cuts it into batches by slicing.

Module map: ``_queue`` (bounded MPSC queue, overflow policies), ``_batcher`` (normalising,
sizing, batches, spool records), ``_worker`` (the loop: scheduling, flush/shutdown deadlines,
backend state), ``_delivery`` (one batch: retry, 413/400 splits, per-step failures),
``_retry`` (tenacity policy), ``_exporter`` (the API client boundary), ``_spill`` (the
worker's side of ``_spool``), ``_deadletter``, ``_stats``, ``_settings``, ``_pipeline``.
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
