"""Batches: normalised events grouped by count and bytes, and their spool record form.

The worker feeds raw items to a :class:`BatchBuilder`, which normalises each one
(:func:`~agent.pipeline._events.normalize`), estimates its size (sampled msgpack sizes),
and closes a batch at ``batch_size`` events or about ``batch_bytes`` bytes. A closed batch
goes through the preprocessing hook once, before it is either sent or spilled (so redacted
data is what reaches the disk). On disk a spool record is a msgpack array of events (one or
several batches spilled together), encoded with one encoder call for the whole array
(:func:`encode_events`); replay sends it in ``batch_size`` chunks.

A :class:`~agent.pipeline._queue.Chunk` marked ``trusted`` (the daemon's validated frames)
is cut into batches with list slices: no Python-level work per event, its size known from
the frame's length.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from agent.pipeline._events import KIND_KEY, Event, normalize
from agent.pipeline._queue import Chunk, FlushMarker
from agent.pipeline._stats import Counters, DropReason

__all__ = [
    "Batch",
    "BatchBuilder",
    "Preprocess",
    "decode_record",
    "encode_event",
    "encode_events",
    "encode_record",
]

log = structlog.get_logger("agent.pipeline")

Preprocess = Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]

# anything msgpack cannot carry becomes its str(), as the reference SDK's
# ensure_values_serializable does before sending
_encode = msgspec.msgpack.Encoder(enc_hook=str).encode
encode_event = _encode
_decoder = msgspec.msgpack.Decoder(list[dict[str, Any]])


_SAMPLE_EVERY = 16  # events between two size samples


def deep_sizeof(obj: object, depth: int = 0) -> int:
    """Approximate memory held by a JSON-like object (dict keys assumed shared)."""
    size = sys.getsizeof(obj)
    if depth > 16:
        return size
    kind = type(obj)
    if kind is dict:
        for value in obj.values():  # type: ignore[attr-defined]
            size += deep_sizeof(value, depth + 1)
    elif kind is list or kind is tuple:
        for value in obj:  # type: ignore[attr-defined]
            size += deep_sizeof(value, depth + 1)
    return size


def _no_marker(marker: Any, seq: int) -> None:  # pragma: no cover - add() gets no markers
    raise TypeError("flush markers go through extend()")


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def encode_record(encoded: list[bytes]) -> bytes:
    """One spool record from already msgpack-encoded events."""
    return _array_header(len(encoded)) + b"".join(encoded)


def encode_events(events: list[Event], counters: Counters | None = None) -> bytes:
    """One spool record (a msgpack array) for ``events``, with one encoder call.

    An event msgpack cannot carry even with ``str()`` for unknown types (an int beyond 64
    bits, a recursive structure) is left out and counted as ``invalid_item`` (when
    ``counters`` is given) instead of failing the whole record.
    """
    try:
        return _encode(events)
    except Exception:
        parts: list[bytes] = []
        for event in events:
            try:
                parts.append(_encode(event))
            except Exception:
                if counters is not None:
                    counters.drop(DropReason.INVALID)
        return encode_record(parts)


def decode_record(data: bytes) -> list[Event]:
    """The events of a spool record (raises msgspec.DecodeError when it is not one)."""
    return _decoder.decode(data)


@dataclass(slots=True, eq=False)
class Batch:
    """Events sent together (one ``send_steps``) or spilled together (one record)."""

    events: list[Event]
    encoded: bytes | None  # the spool record of these events, once computed (spill)
    nbytes: int
    seq_end: int = -1  # queue sequence just past the last event; -1 for spool replays
    refs: list[Any] = field(default_factory=list)  # spool RecordRefs (replays)
    threads: int | None = None  # thread upserts among the events (None: unknown)
    cancel: Any = None  # the anyio CancelScope of its send, while in flight

    def record(self, counters: Counters | None = None) -> bytes:
        """The spool record for this batch (encodes now if needed, once)."""
        encoded = self.encoded
        if encoded is None:
            encoded = self.encoded = encode_events(self.events, counters)
        return encoded

    def __len__(self) -> int:
        return len(self.events)


class BatchBuilder:
    """Accumulates normalised events until a batch is full."""

    def __init__(
        self,
        *,
        batch_size: int,
        batch_bytes: int,
        counters: Counters,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.batch_size = max(1, batch_size)
        self.batch_bytes = max(1, batch_bytes)
        self.counters = counters
        self.preprocess = preprocess
        self._events: list[Event] = []
        self._bytes = 0  # estimated msgpack bytes of the partial batch
        self._threads = 0  # thread upserts in the partial batch
        self.measured_count = 0  # since the last take_measure()
        #: in-memory size of a queued item / its msgpack size (EWMA over samples)
        self.memory_ratio = 2.0
        self.mean_size = 1024.0  # EWMA of sampled msgpack sizes
        self._until_sample = 0
        self._samples = 0
        self.preprocess_failing = False  # log only when the hook starts failing

    def __len__(self) -> int:
        return len(self._events)

    def add(self, item: object, seq: int) -> Batch | None:
        """Add one raw item (``seq``: its queue sequence + 1); return a batch when full."""
        batches, _ = self.extend([item], seq - 1, _no_marker)
        return batches[0] if batches else None

    def extend(
        self, items: list[Any], seq: int, on_marker: Callable[[Any, int], None]
    ) -> tuple[list[Batch], int]:
        """Add raw items taken from the queue (``seq``: sequence of the last item taken
        before them); return the batches they filled and the new sequence.

        A :class:`~agent.pipeline._queue.FlushMarker` closes the partial batch and is
        handed to ``on_marker(marker, seq)``. Sizes are sampled: one event in
        ``_SAMPLE_EVERY`` is msgpack-encoded (and one in ``4 * _SAMPLE_EVERY`` has its
        in-memory size measured); the others count as the running mean, so ``batch_bytes``
        is approximate (a server that still finds a batch too large answers 413 and the
        worker splits it). This is the worker's hottest loop: locals, no calls per event
        for plain step dicts.
        """
        out: list[Batch] = []
        events = self._events
        nbytes = self._bytes
        threads = self._threads
        batch_size = self.batch_size
        batch_bytes = self.batch_bytes
        until = self._until_sample
        mean = int(self.mean_size)
        added = 0
        for item in items:
            kind = type(item)
            if kind is dict and KIND_KEY not in item:  # a plain step dict: as is
                if type(item.get("id")) is not str:
                    self.counters.drop(DropReason.INVALID)
                    continue
                event = item
                thread = 0
            elif kind is FlushMarker:
                self._events, self._bytes, self._threads = events, nbytes, threads
                if events:
                    out.append(self._close(seq))
                    events = self._events
                    nbytes = threads = 0
                on_marker(item, seq)
                continue
            elif kind is Chunk:
                self._events, self._bytes, self._threads = events, nbytes, threads
                self._until_sample = until
                self.measured_count += added
                added = 0
                if item.trusted:
                    seq = self._slice(item, seq, out)
                else:
                    batches, seq = self.extend(item.items, seq, on_marker)
                    out.extend(batches)
                events, nbytes, threads = self._events, self._bytes, self._threads
                until = self._until_sample
                mean = int(self.mean_size)
                continue
            else:
                try:
                    normalized = normalize(item)
                except Exception:
                    normalized = None
                if normalized is None:
                    self.counters.drop(DropReason.INVALID)
                    continue
                event = normalized
                thread = 1 if KIND_KEY in event else 0
            seq += 1
            added += 1
            until -= 1
            if until <= 0:
                until = _SAMPLE_EVERY
                size = self._sample(item, event)
                mean = int(self.mean_size)
            else:
                size = mean
            if events and nbytes + size > batch_bytes:
                self._events, self._bytes, self._threads = events, nbytes, threads
                out.append(self._close(seq - 1))
                events = self._events
                nbytes = threads = 0
            events.append(event)
            nbytes += size
            threads += thread
            if len(events) >= batch_size or nbytes >= batch_bytes:
                self._events, self._bytes, self._threads = events, nbytes, threads
                out.append(self._close(seq))
                events = self._events
                nbytes = threads = 0
        self._events, self._bytes, self._threads = events, nbytes, threads
        self._until_sample = until
        self.measured_count += added
        return out, seq

    def _slice(self, chunk: Chunk, seq: int, out: list[Batch]) -> int:
        """Cut a trusted chunk into batches with list slices (no per-event work)."""
        items = chunk.items
        total = len(items)
        if chunk.nbytes > 0:
            size = max(1, chunk.nbytes // total)
            self.mean_size = 0.8 * self.mean_size + 0.2 * size
            self._samples += 1
            if not self._samples % 4:  # in-memory size of one event, now and then
                ratio = deep_sizeof(items[0]) / size
                self.memory_ratio = 0.9 * self.memory_ratio + 0.1 * min(16.0, max(0.5, ratio))
        else:
            size = max(1, int(self.mean_size))
        batch_size = self.batch_size
        batch_bytes = self.batch_bytes
        pos = 0
        while pos < total:
            events = self._events
            room = min(
                batch_size - len(events),
                max(1, (batch_bytes - self._bytes) // size),
                total - pos,
            )
            if not events and room == total:
                self._events = events = items  # the whole chunk: adopt its list
            else:
                events.extend(items[pos : pos + room])
            pos += room
            seq += room
            self._bytes += room * size
            if len(events) >= batch_size or self._bytes >= batch_bytes:
                out.append(self._close(seq))
        self.measured_count += total
        return seq

    def _sample(self, item: object, event: Event) -> int:
        size = len(_encode(event))
        self.mean_size = 0.8 * self.mean_size + 0.2 * size
        self._samples += 1
        if size and not self._samples % 4:
            ratio = deep_sizeof(item) / size
            self.memory_ratio = 0.9 * self.memory_ratio + 0.1 * min(16.0, max(0.5, ratio))
        return size

    def close(self, seq: int) -> Batch | None:
        """Close the partial batch (``seq``: queue sequence just past its last event)."""
        if not self._events:
            return None
        return self._close(seq)

    def _close(self, seq: int) -> Batch:
        batch = Batch(self._events, None, self._bytes, seq, threads=self._threads)
        self._events = []
        self._bytes = 0
        self._threads = 0
        if self.preprocess is not None:
            self.preprocess_failing = apply_preprocess(
                batch, self.preprocess, self.counters, log_failure=not self.preprocess_failing
            )
        return batch

    def take_measure(self) -> tuple[int, int]:
        """(estimated in-memory bytes, count) of the items added since the last call."""
        count = self.measured_count
        self.measured_count = 0
        return int(count * self.mean_size * self.memory_ratio), count


def apply_preprocess(
    batch: Batch, preprocess: Preprocess, counters: Counters, *, log_failure: bool = True
) -> bool:
    """Run the hook on the batch's step dicts (thread upserts are not passed to it).

    An exception, or a result that is not a list of dicts, keeps the original batch
    (counted in ``preprocess_errors``; logged when ``log_failure``). Returns True when the
    hook failed.
    """
    steps = [e for e in batch.events if e.get("__kind__") != "thread"]
    if not steps:
        return False
    try:
        result = preprocess(steps)
    except Exception as exc:
        counters.preprocess_errors += 1
        if log_failure:
            log.warning(
                "pipeline.preprocess_failed",
                error=repr(exc),
                events=len(steps),
                action="original batch sent; logged again only after a success",
            )
        return True
    if not isinstance(result, list) or not all(isinstance(e, dict) for e in result):
        counters.preprocess_errors += 1
        if log_failure:
            log.warning(
                "pipeline.preprocess_failed",
                error="the hook must return a list of step dicts",
                got=type(result).__name__,
                action="original batch sent; logged again only after a success",
            )
        return True
    threads = [e for e in batch.events if e.get("__kind__") == "thread"]
    batch.events = [*result, *threads]
    batch.encoded = None
    return False
