"""The worker's side of the disk spool: opening (and adopting orphans), spilling batches,
reading replay batches and settling them (ack, release, or re-spill what is left).

Records are msgpack arrays of events (see :mod:`._batcher`); several batches spilled
together make one record, so one checksum and one write cover them (both release the GIL,
and a busy producer thread then keeps it for a whole switch interval). Delivery is
at-least-once: a record is acked only once delivered, and ingest is an upsert by id.

A spool directory belongs to one process (the spool locks it). A process that finds it
locked (a forked child, a second application with the same configuration) uses
``<directory>/proc-<pid>`` instead; whoever next opens the main directory moves the records
of such sub-spools whose process is gone into it ("adoption").
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import structlog

from agent.pipeline._batcher import Batch, decode_record, encode_events
from agent.pipeline._delivery import Outcome
from agent.pipeline._events import Event
from agent.pipeline._settings import Settings
from agent.pipeline._spool import Spool, SpoolError, SpoolLockedError
from agent.pipeline._stats import Counters, DropReason

__all__ = ["SpoolSide"]

log = structlog.get_logger("agent.pipeline")


class SpoolSide:
    """Owned by the worker; ``spool`` is None when disabled or unavailable."""

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        self.spool: Spool | None = None
        self.error: str | None = None
        self.spilling_logged = False

    # ------------------------------------------------------------------ open

    def open(self) -> Spool | None:
        directory = self.settings.spool_directory
        if directory is None:
            return None
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
                self.spool = Spool(directory / f"proc-{os.getpid()}", **kwargs)
        except (OSError, SpoolError, ValueError) as exc:
            self.error = str(exc)
            log.error(
                "pipeline.spool_unavailable",
                directory=str(directory),
                error=str(exc),
                action="undeliverable events will be dropped (counted)",
            )
            self.spool = None
            return None
        if len(self.spool):
            log.info("pipeline.spool_recovered", records=len(self.spool))
        return self.spool

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

    # ------------------------------------------------------------------ spill

    def spill(self, batches: list[Batch], *, reason: str) -> list[tuple[int, int]]:
        """Write batches as one record; return (spooled, lost) events for each batch."""
        spool = self.spool
        if spool is None:
            for batch in batches:
                self.counters.drop(DropReason.NO_SPOOL, len(batch))
            return [(0, len(b)) for b in batches]
        if len(batches) == 1:
            record = batches[0].record(self.counters) if len(batches[0]) else b""
        else:  # one record, one encoder call for all of them
            record = encode_events([e for b in batches for e in b.events], self.counters)
        accepted = spool.append([record]) if record else 0
        out: list[tuple[int, int]] = []
        for batch in batches:
            n = len(batch)
            if accepted:
                self.counters.spilled += n
                out.append((n, 0))
            else:
                self.counters.drop(DropReason.SPOOL_FULL, n)
                out.append((0, n))
        if accepted and not self.spilling_logged:
            self.spilling_logged = True
            log.warning("pipeline.spill_started", reason=reason, directory=str(spool.directory))
        return out

    # ------------------------------------------------------------------ replay

    def read_batch(self, batch_size: int, batch_bytes: int) -> Batch | None:
        """The oldest records, up to about one batch (at least one record)."""
        spool = self.spool
        if spool is None:
            return None
        events: list[Event] = []
        refs: list[Any] = []
        nbytes = 0
        budget = batch_bytes
        while len(events) < batch_size and budget > 0:
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

    def settle(self, batch: Batch, outcome: Outcome) -> None:
        """After a replay: nothing went through -> release (read again later); otherwise
        ack, re-spilling what is left at the tail."""
        spool = self.spool
        if spool is None:  # pragma: no cover - replays only exist with a spool
            return
        with contextlib.suppress(SpoolError):
            if outcome.undelivered and not outcome.delivered and not outcome.dead:
                spool.release(batch.refs)
                return
            if outcome.undelivered:
                self.spill([Batch(outcome.undelivered, None, 0)], reason="backend_down")
            spool.ack(batch.refs)
