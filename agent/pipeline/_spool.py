"""The disk spool of the pipeline: append-only, checksummed segment files; nothing else.

The worker spills records here when the backend stays unreachable or memory is full, and
replays them oldest first once it answers again. Records are opaque ``bytes`` (the worker
stores msgpack-encoded step dicts). This module only touches files: no encoding, no network.

On-disk format (all integers little endian), in one directory created with mode 0700::

    spool.lock                      flock(2)'d by the one open Spool (one process per spool)
    seg-<20-digit sequence>.spool   mode 0600, append-only:
        header   magic b"LASPOOL\\0" | u16 format version (1) | u16 flags (0) | u32 reserved
        record*  u32 payload length | u32 zlib.crc32(payload) | payload
    seg-<20-digit sequence>.ack     mode 0600, optional, rewritten in place (pwrite at 0):
        b"LACK" | u64 count of leading acked records | u64 file offset just past them
        | u32 crc32 of the 20 bytes before

Durability: ``append`` writes one prebuilt buffer with one ``pwrite`` per call; an fsync
(``fdatasync``) covering it happens at most every ``fsync_interval`` seconds on a flusher
thread (group commit), on every append when the interval is 0, never when it is None.
``append(durable=True)`` returns only after an fsync covering its records completed.

Acknowledgement: a segment file is deleted once every record in it is acked and it is no
longer the one being appended to. The ``.ack`` sidecar persists the acked *prefix* of a
segment (written without fsync), so a restart does not replay a large segment from the
start. Records acked out of order beyond that prefix, and anything acked after the last
sidecar write reached the disk, may be replayed after a crash or restart: **delivery is
at-least-once**. Duplicates are harmless because the backend's ingest is an idempotent
upsert by step id.

Recovery on open: a torn tail (partial record header or payload at the end of a segment, or
a zero-filled tail after power loss) is truncated and its bytes counted; a record whose CRC
fails is skipped and counted; a record whose length is absurd (0 or > 64 MiB) makes the
rest of that segment unreadable, so the rest of that segment is skipped and counted once;
everything else is replayed oldest first. A new segment is started on every open.

For callers (the worker; the daemon's ``spool inspect/replay/purge``):

* ``append`` never raises and returns how many records were accepted; every refusal is
  counted in ``stats`` by reason (``dropped_full``, ``dropped_io_error``, ``dropped_closed``,
  ``rejected_invalid``) and logged once per state change. ``durable=True`` forces an fsync
  even with ``fsync_interval=None``.
* A ``RecordRef`` is valid only for the Spool instance that handed it out; acking a stale
  ref (its segment dropped at the cap, or from before a reopen) is a no-op.
* One open Spool per directory (flock on ``spool.lock``): a second ``Spool()`` on the same
  directory, in this or another process, raises ``SpoolLockedError``; so does
  ``purge_spool`` on an open spool. A forked child's copy is closed (appends are counted as
  ``dropped_closed``); the child must not reuse the parent's directory while it is open.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import re
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

__all__ = [
    "FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "RecordRef",
    "SegmentReport",
    "Spool",
    "SpoolClosedError",
    "SpoolError",
    "SpoolFullPolicy",
    "SpoolLockedError",
    "SpoolReport",
    "SpoolStats",
    "inspect_spool",
    "purge_spool",
]

log = structlog.get_logger(__name__)

FORMAT_VERSION: Final = 1
MAGIC: Final = b"LASPOOL\x00"
_HEADER: Final = struct.Struct("<8sHHI")
HEADER_SIZE: Final = _HEADER.size  # 16
_RECORD: Final = struct.Struct("<II")
RECORD_HEADER_SIZE: Final = _RECORD.size  # 8
_ACK_BODY: Final = struct.Struct("<4sQQ")
_ACK: Final = struct.Struct("<4sQQI")
_ACK_MAGIC: Final = b"LACK"
#: Largest payload accepted by ``append`` and considered plausible by recovery.
MAX_RECORD_BYTES: Final = 64 << 20
LOCK_NAME: Final = "spool.lock"
_SEGMENT_RE: Final = re.compile(r"^seg-(\d{20})\.spool$")
_ACK_RE: Final = re.compile(r"^seg-(\d{20})\.ack$")
_READ_CHUNK: Final = 256 << 10  # largest pread of several records at once
_MIN_READ: Final = 4096
_IO_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})

_fdatasync = getattr(os, "fdatasync", os.fsync)


class SpoolError(Exception):
    """Root of the spool's errors (only raised by ``Spool()``, ``purge_spool`` and use after
    close; ``append`` never raises)."""


class SpoolLockedError(SpoolError):
    """Another open Spool (in this or another process) holds the directory."""


class SpoolClosedError(SpoolError):
    """The spool was closed (or this is a forked child): read/ack/release/flush refused."""


class SpoolFullPolicy(enum.StrEnum):
    """What ``append`` does when the records would push the spool over ``max_bytes``."""

    DROP_NEWEST = "drop_newest"  # refuse the new records that do not fit
    DROP_OLDEST = "drop_oldest"  # delete the oldest whole segment(s) to make room


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Where a record handed out by ``read`` lives; opaque to callers, pass it to ack/release."""

    segment: int
    offset: int


@dataclass(slots=True)
class SpoolStats:
    """A snapshot of the spool's gauges and counters (counters are since this open)."""

    bytes: int  # size of all segment files
    records: int  # unacked records
    segments: int
    appended: int
    acked: int
    corrupt_skipped: int
    torn_truncated_bytes: int
    dropped_full: int  # records dropped at the size cap, by policy
    fsyncs: int  # completed fsync rounds (group commits)
    recovered: int = 0  # unacked records found on open
    dropped_io_error: int = 0  # records refused because the write failed (ENOSPC, EIO, ...)
    dropped_closed: int = 0  # records appended after close (or in a forked child)
    rejected_invalid: int = 0  # empty records or records over max_record_bytes
    fsync_errors: int = 0


@dataclass(frozen=True, slots=True)
class SegmentReport:
    """One segment as seen by ``inspect_spool``."""

    sequence: int
    path: str
    bytes: int
    records: int  # valid records past the acked prefix
    acked: int  # leading records acked according to the sidecar
    corrupt_records: int
    torn_bytes: int  # bytes a Spool would truncate at open (or a write in progress)
    mtime: float
    valid_header: bool


@dataclass(frozen=True, slots=True)
class SpoolReport:
    """Read-only summary for ``literal-agent spool inspect``."""

    directory: str
    exists: bool
    in_use: bool  # an open Spool holds the lock
    segments: tuple[SegmentReport, ...]
    records: int
    bytes: int
    corrupt_records: int
    torn_bytes: int
    oldest_mtime: float | None
    newest_mtime: float | None


# --------------------------------------------------------------------------- file format


def _segment_name(seq: int) -> str:
    return f"seg-{seq:020d}.spool"


def _ack_name(seq: int) -> str:
    return f"seg-{seq:020d}.ack"


def _encode_ack(count: int, offset: int) -> bytes:
    body = _ACK_BODY.pack(_ACK_MAGIC, count, offset)
    return body + struct.pack("<I", zlib.crc32(body))


def _decode_ack(data: bytes, segment_size: int) -> tuple[int, int] | None:
    """Return (acked prefix count, offset) or None when the sidecar is absent/torn/implausible."""
    if len(data) < _ACK.size:
        return None
    magic, count, offset, crc = _ACK.unpack_from(data)
    if magic != _ACK_MAGIC or crc != zlib.crc32(data[: _ACK_BODY.size]):
        return None
    if not HEADER_SIZE <= offset <= segment_size:
        return None
    return int(count), int(offset)


@dataclass(slots=True)
class _Scan:
    """What a segment's bytes contain, from ``start`` on (pure result, nothing modified)."""

    header_ok: bool
    records: int
    corrupt: int
    gaps: dict[int, int]  # corrupt span start -> end
    valid_end: int  # truncate here (== len(data) when there is no torn tail)
    torn_bytes: int


def _scan(data: bytes, start: int) -> _Scan:
    size = len(data)
    if size < HEADER_SIZE:
        return _Scan(False, 0, 0, {}, 0, size)
    magic, version, _flags, _reserved = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION:
        return _Scan(False, 0, 0, {}, size, 0)
    pos = max(start, HEADER_SIZE)
    records = corrupt = 0
    gaps: dict[int, int] = {}
    unpack = _RECORD.unpack_from
    crc32 = zlib.crc32
    view = memoryview(data)
    while pos < size:
        if size - pos < RECORD_HEADER_SIZE:
            return _Scan(True, records, corrupt, gaps, pos, size - pos)  # torn header
        length, crc = unpack(data, pos)
        if length == 0 or length > MAX_RECORD_BYTES:
            if not data[pos:].strip(b"\x00"):
                # zero-filled tail (blocks allocated, data never written): torn
                return _Scan(True, records, corrupt, gaps, pos, size - pos)
            gaps[pos] = size  # garbage length: the next record cannot be found
            return _Scan(True, records, corrupt + 1, gaps, size, 0)
        end = pos + RECORD_HEADER_SIZE + length
        if end > size:
            return _Scan(True, records, corrupt, gaps, pos, size - pos)  # torn payload
        if crc32(view[pos + RECORD_HEADER_SIZE : end]) != crc:
            gaps[pos] = end
            corrupt += 1
        else:
            records += 1
        pos = end
    return _Scan(True, records, corrupt, gaps, size, 0)


def _read_file(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read()


def _list_segments(directory: Path) -> tuple[list[int], list[int]]:
    segs: list[int] = []
    acks: list[int] = []
    for name in os.listdir(directory):
        if m := _SEGMENT_RE.match(name):
            segs.append(int(m.group(1)))
        elif m := _ACK_RE.match(name):
            acks.append(int(m.group(1)))
    return sorted(segs), sorted(acks)


def _pwrite_all(fd: int, buf: bytes, offset: int) -> None:
    n = os.pwrite(fd, buf, offset)
    if n == len(buf):
        return
    view = memoryview(buf)[n:]
    offset += n
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:  # pragma: no cover - regular files do not short-write 0 without errno
            raise OSError(errno.EIO, "short write")
        view = view[n:]
        offset += n


# --------------------------------------------------------------------------- the spool


class _Segment:
    __slots__ = (
        "ack_fd",
        "acked_beyond",
        "fd",
        "gaps",
        "in_flight",
        "prefix_count",
        "prefix_off",
        "read_pos",
        "released",
        "seq",
        "size",
        "unacked",
    )

    def __init__(self, seq: int, fd: int, size: int, start: int) -> None:
        self.seq = seq
        # O_RDWR while this process appends to it (or until its last fsync); otherwise an
        # O_RDONLY fd opened only while a read needs it, so a spool of many small segments
        # does not hold many descriptors
        self.fd = fd
        self.ack_fd = -1
        self.size = size  # bytes written (== file size)
        self.unacked = 0
        self.read_pos = start  # next record never handed out
        self.prefix_off = start  # everything before this offset is acked
        self.prefix_count = 0
        self.in_flight: dict[int, int] = {}  # offset -> end, handed out, not acked
        self.released: dict[int, int] = {}  # offset -> end, given back, to hand out again
        self.acked_beyond: dict[int, int] = {}  # offset -> end, acked past the prefix
        self.gaps: dict[int, int] = {}  # corrupt span start -> end


_OPEN_SPOOLS: weakref.WeakSet[Spool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for spool in list(_OPEN_SPOOLS):
        spool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Spool:
    """An on-disk, size-capped FIFO of opaque records with explicit acknowledgement.

    Thread-safe. ``append`` never raises (failures are counted and logged); ``read``,
    ``ack``, ``release`` and ``flush`` raise :class:`SpoolClosedError` after ``close``.
    One process at a time: opening a directory another open Spool holds raises
    :class:`SpoolLockedError`; a forked child's copy is closed (use a fresh Spool there).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync_interval: float | None = 0.005,
        full_policy: SpoolFullPolicy = SpoolFullPolicy.DROP_OLDEST,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        if segment_bytes <= HEADER_SIZE + RECORD_HEADER_SIZE:
            raise ValueError(f"segment_bytes must be > {HEADER_SIZE + RECORD_HEADER_SIZE}")
        if max_bytes <= HEADER_SIZE + RECORD_HEADER_SIZE:
            raise ValueError(f"max_bytes must be > {HEADER_SIZE + RECORD_HEADER_SIZE}")
        if fsync_interval is not None and fsync_interval < 0:
            raise ValueError("fsync_interval must be >= 0 or None")
        if not 0 < max_record_bytes <= MAX_RECORD_BYTES:
            raise ValueError(f"max_record_bytes must be in 1..{MAX_RECORD_BYTES}")
        self._dir = Path(directory)
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._interval = fsync_interval
        self._policy = SpoolFullPolicy(full_policy)
        self._max_record = max_record_bytes

        self._lock = threading.Lock()
        self._wake_flusher = threading.Condition(self._lock)
        self._synced_cv = threading.Condition(self._lock)
        self._sync_lock = threading.Lock()  # one fsync round at a time
        self._segments: dict[int, _Segment] = {}  # by sequence, oldest first
        self._active: _Segment | None = None
        self._next_seq = 1
        self._bytes = 0
        self._unacked = 0
        self._closed = False
        self._closing = False
        # group commit state (under _lock)
        self._write_seq = 0  # bumped by every successful append
        self._synced_seq = 0  # highest write_seq covered by a successful fsync
        self._attempted_seq = 0  # highest write_seq an fsync round was attempted for
        self._failed_seq = 0  # highest write_seq whose fsync round failed
        self._dirty: dict[int, _Segment] = {}
        self._dir_dirty = False
        self._last_sync = 0.0
        self._flusher: threading.Thread | None = None
        self._flusher_idle = False
        # log-once states
        self._io_failing: str | None = None
        self._at_cap = False
        # counters
        self._appended = self._acked = self._corrupt = self._torn = 0
        self._dropped_full = self._dropped_io = self._dropped_closed = self._rejected = 0
        self._fsyncs = self._fsync_errors = self._recovered = 0
        self._avg_len = 1024.0  # running mean payload size, sizes reads of a few records

        created = not self._dir.exists()
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created:
            os.chmod(self._dir, 0o700)  # mkdir's mode is subject to the umask
        self._lock_fd = os.open(self._dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLockedError(f"spool {str(self._dir)!r} is open elsewhere") from None
        try:
            self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._recover()
        except BaseException:
            self._close_fds()
            raise
        _OPEN_SPOOLS.add(self)

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        segs, acks = _list_segments(self._dir)
        for seq in set(acks) - set(segs):  # sidecar of a segment deleted before a crash
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / _ack_name(seq))
        for seq in segs:
            self._next_seq = max(self._next_seq, seq + 1)
            self._recover_segment(seq)
        if self._segments or self._corrupt or self._torn:
            log.info(
                "spool.recovered",
                directory=str(self._dir),
                segments=len(self._segments),
                records=self._recovered,
                bytes=self._bytes,
                corrupt_skipped=self._corrupt,
                torn_truncated_bytes=self._torn,
            )

    def _recover_segment(self, seq: int) -> None:
        path = self._dir / _segment_name(seq)
        data = _read_file(path)
        ack = None
        with contextlib.suppress(FileNotFoundError):
            ack = _decode_ack(_read_file(self._dir / _ack_name(seq)), len(data))
        count, start = ack if ack is not None else (0, HEADER_SIZE)
        scan = _scan(data, start)
        if not scan.header_ok and scan.valid_end > 0:
            # not a segment of this format: leave it alone, never delete what we cannot read
            log.error("spool.unknown_segment_format", path=str(path))
            self._corrupt += 1
            return
        if scan.torn_bytes:
            os.truncate(path, scan.valid_end)
            self._torn += scan.torn_bytes
            log.warning("spool.torn_tail_truncated", path=str(path), bytes=scan.torn_bytes)
        if scan.corrupt:
            self._corrupt += scan.corrupt
            log.warning("spool.corrupt_records_skipped", path=str(path), records=scan.corrupt)
        if scan.records == 0:  # fully acked, empty, or nothing readable left
            self._unlink(seq)
            return
        seg = _Segment(seq, -1, scan.valid_end, start)
        seg.prefix_count = count
        seg.unacked = scan.records
        seg.gaps = scan.gaps
        self._advance_prefix(seg)  # a corrupt span right at the prefix
        self._segments[seq] = seg
        self._bytes += seg.size
        self._unacked += seg.unacked
        self._recovered += seg.unacked
        self._avg_len = max(1.0, (seg.size - HEADER_SIZE) / scan.records - RECORD_HEADER_SIZE)

    # ------------------------------------------------------------------ append

    def append(self, records: Sequence[bytes], *, durable: bool = False) -> int:
        """Append ``records``; return how many were accepted (the rest are counted drops).

        Never raises. With ``durable=True`` returns only once an fsync covering the accepted
        records completed (0 if that fsync failed; the records may still be replayed).
        """
        pack = _RECORD.pack
        crc32 = zlib.crc32
        limit = self._max_record
        parts: list[bytes] = []
        for record in records:
            n = len(record)
            if 0 < n <= limit:
                parts.append(pack(n, crc32(record)))
                parts.append(record)
        rejected = len(records) - len(parts) // 2
        buf = b"".join(parts)
        accepted = len(parts) // 2
        with self._lock:
            if rejected:
                self._rejected += rejected
                log.warning("spool.records_rejected", records=rejected, max_bytes=limit)
            if not accepted:
                return 0
            if self._closed or self._closing:
                self._dropped_closed += accepted
                return 0
            if self._bytes + self._incoming(len(buf)) > self._max_bytes:
                buf, accepted = self._make_room(parts, buf)
                if not accepted:
                    return 0
            seg = self._active
            if seg is None or (
                seg.size > HEADER_SIZE and seg.size + len(buf) > self._segment_bytes
            ):
                seg = self._roll()
                if seg is None:
                    self._dropped_io += accepted
                    return 0
            offset = seg.size
            try:
                _pwrite_all(seg.fd, buf, offset)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(seg.fd, offset)  # no partial record in the middle
                self._dropped_io += accepted
                self._io_failed("write", exc, accepted)
                return 0
            if self._io_failing is not None:
                log.info("spool.write_recovered", after=self._io_failing)
                self._io_failing = None
            seg.size += len(buf)
            seg.unacked += accepted
            self._bytes += len(buf)
            self._unacked += accepted
            self._appended += accepted
            self._avg_len += ((len(buf) / accepted - RECORD_HEADER_SIZE) - self._avg_len) * 0.1
            self._write_seq += 1
            my_seq = self._write_seq
            self._dirty[seg.seq] = seg
            interval = self._interval
            if (
                interval is not None
                and interval > 0
                and (self._flusher is not None or self._start_flusher())
            ):
                if self._flusher_idle:
                    self._flusher_idle = False
                    self._wake_flusher.notify()
                if durable:
                    while (
                        self._synced_seq < my_seq and self._failed_seq < my_seq and not self._closed
                    ):
                        self._synced_cv.wait()
                    return accepted if self._synced_seq >= my_seq else 0
                return accepted
        # fsync inline (interval 0, durable with interval None, or no flusher thread);
        # concurrent callers share one fsync round through _sync_to
        if (interval is not None or durable) and not self._sync_to(my_seq) and durable:
            return 0
        return accepted

    def _incoming(self, nbytes: int) -> int:
        seg = self._active
        if seg is None or (seg.size > HEADER_SIZE and seg.size + nbytes > self._segment_bytes):
            return nbytes + HEADER_SIZE
        return nbytes

    def _make_room(self, parts: list[bytes], buf: bytes) -> tuple[bytes, int]:
        """Apply the full policy (under the lock); return what may still be written."""
        if not self._at_cap:
            self._at_cap = True
            log.warning(
                "spool.full", max_bytes=self._max_bytes, bytes=self._bytes, policy=str(self._policy)
            )
        if self._policy is SpoolFullPolicy.DROP_OLDEST:
            while self._segments and self._bytes + self._incoming(len(buf)) > self._max_bytes:
                victim = next(iter(self._segments.values()))
                self._dropped_full += victim.unacked
                self._delete_segment(victim)
        if self._bytes + self._incoming(len(buf)) <= self._max_bytes:
            return buf, len(parts) // 2
        # keep the leading records that fit, drop the newest
        size = 0
        keep = 0
        for i in range(0, len(parts), 2):
            rec = RECORD_HEADER_SIZE + len(parts[i + 1])
            if self._bytes + self._incoming(size + rec) > self._max_bytes:
                break
            size += rec
            keep += 1
        self._dropped_full += len(parts) // 2 - keep
        return (b"".join(parts[: 2 * keep]) if keep else b""), keep

    def _roll(self) -> _Segment | None:
        """Seal the active segment and create the next one (under the lock)."""
        old = self._active
        self._active = None
        if old is not None:
            if old.unacked == 0:
                self._delete_segment(old)
            elif self._interval is None:  # never fsynced: the descriptor can go now
                self._dirty.pop(old.seq, None)
                self._done_reading(old)
        seq = self._next_seq
        path = self._dir / _segment_name(seq)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._io_failed("create", exc, 0)
            return None
        try:
            _pwrite_all(fd, _HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0), 0)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._io_failed("create", exc, 0)
            return None
        self._next_seq = seq + 1
        seg = _Segment(seq, fd, HEADER_SIZE, HEADER_SIZE)
        self._segments[seq] = seg
        self._active = seg
        self._bytes += HEADER_SIZE
        self._dir_dirty = True
        return seg

    def _io_failed(self, what: str, exc: OSError, records: int) -> None:
        reason = errno.errorcode.get(exc.errno or 0, "OSError")
        if self._io_failing != reason:
            self._io_failing = reason
            log.error(
                "spool.write_failed",
                op=what,
                reason=reason,
                error=str(exc),
                records_dropped=records,
                directory=str(self._dir),
            )

    # ------------------------------------------------------------------ fsync / group commit

    def _start_flusher(self) -> bool:
        thread = threading.Thread(target=self._flush_loop, name="spool-flusher", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread"
            log.error("spool.flusher_unavailable", error=str(exc))
            return False
        self._flusher = thread
        return True

    def _flush_loop(self) -> None:
        interval = self._interval
        assert interval is not None
        while True:
            with self._lock:
                while not self._closing and self._write_seq <= self._attempted_seq:
                    self._flusher_idle = True
                    self._wake_flusher.wait()
                self._flusher_idle = False
                while not self._closing:
                    remaining = self._last_sync + interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake_flusher.wait(remaining)
                if self._closing:
                    return
                target = self._write_seq
            try:
                self._sync_to(target)
            except Exception as exc:  # never let durable appenders wait on a dead thread
                log.exception("spool.flusher_error", error=repr(exc))
                with self._lock:
                    self._attempted_seq = self._failed_seq = max(self._failed_seq, target)
                    self._last_sync = time.monotonic()
                    self._synced_cv.notify_all()

    def _sync_to(self, target: int) -> bool:
        """fsync everything written up to ``target`` (or more); True when covered."""
        with self._sync_lock:
            with self._lock:
                if self._synced_seq >= target:
                    return True
                if self._closed:
                    return False
                target = self._write_seq
                error: OSError | None = None
                fds: list[int] = []
                dir_fd = -1
                try:  # dup: a segment may be deleted (its fd closed) while we fsync
                    for seg in self._dirty.values():
                        fds.append(os.dup(seg.fd))
                    if self._dir_dirty:
                        dir_fd = os.dup(self._dir_fd)
                except OSError as exc:  # EMFILE: keep everything dirty, report the failure
                    error = exc
                else:
                    for seg in self._dirty.values():
                        if seg is not self._active:  # sealed: no more writes, reads reopen it
                            self._done_reading(seg, force=True)
                    self._dirty.clear()
                    self._dir_dirty = False
            try:
                if error is not None:
                    raise error
                for fd in fds:
                    _fdatasync(fd)
                if dir_fd >= 0:
                    os.fsync(dir_fd)
            except OSError as exc:
                error = exc
            finally:
                for fd in fds:
                    os.close(fd)
                if dir_fd >= 0:
                    os.close(dir_fd)
            with self._lock:
                self._last_sync = time.monotonic()
                self._attempted_seq = max(self._attempted_seq, target)
                if error is None:
                    if fds or dir_fd >= 0:
                        self._fsyncs += 1
                    self._synced_seq = max(self._synced_seq, target)
                else:
                    self._fsync_errors += 1
                    self._failed_seq = max(self._failed_seq, target)
                    log.error("spool.fsync_failed", error=str(error), directory=str(self._dir))
                self._synced_cv.notify_all()
            return error is None

    def flush(self) -> None:
        """fsync everything appended so far, now."""
        with self._lock:
            self._check_open()
            target = self._write_seq
        self._sync_to(target)

    # ------------------------------------------------------------------ read / ack / release

    def read(self, max_records: int, max_bytes: int | None = None) -> list[tuple[RecordRef, bytes]]:
        """Hand out up to ``max_records`` unacked records, oldest first.

        ``max_bytes`` bounds the payload bytes returned (at least one record is returned when
        any is available). A record handed out is not handed out again until ``release`` or
        a reopen; ``ack`` it once delivered.
        """
        out: list[tuple[RecordRef, bytes]] = []
        budget = [max_bytes if max_bytes is not None else -1]
        with self._lock:
            self._check_open()
            for seg in list(self._segments.values()):
                if len(out) >= max_records or budget[0] == 0:
                    break
                try:
                    if seg.released:
                        self._read_released(seg, out, max_records, budget)
                    if seg.read_pos < seg.size:
                        self._read_new(seg, out, max_records, budget)
                    self._done_reading(seg)
                except OSError as exc:
                    self._abandon_segment(seg, exc)
        return out

    def _reader_fd(self, seg: _Segment) -> int:
        if seg.fd < 0:
            seg.fd = os.open(self._dir / _segment_name(seg.seq), os.O_RDONLY | os.O_CLOEXEC)
        return seg.fd

    def _done_reading(self, seg: _Segment, *, force: bool = False) -> None:
        """Close a sealed segment's descriptor once nothing in it remains to be read
        (``force``: it was just fsynced for the last time; reads reopen it lazily)."""
        if (
            seg.fd >= 0
            and seg is not self._active
            and (force or seg.seq not in self._dirty)
            and (force or (seg.read_pos >= seg.size and not seg.released))
        ):
            os.close(seg.fd)
            seg.fd = -1

    def _take(self, budget: list[int], n: int, out: list[tuple[RecordRef, bytes]]) -> bool:
        if budget[0] < 0:
            return True
        if out and n > budget[0]:
            budget[0] = 0
            return False
        budget[0] = max(budget[0] - n, 0)
        return True

    def _read_released(
        self,
        seg: _Segment,
        out: list[tuple[RecordRef, bytes]],
        max_records: int,
        budget: list[int],
    ) -> None:
        for off in sorted(seg.released):
            if len(out) >= max_records or budget[0] == 0:
                return
            end = seg.released[off]
            if not self._take(budget, end - off - RECORD_HEADER_SIZE, out):
                return
            data = os.pread(self._reader_fd(seg), end - off, off)
            del seg.released[off]
            payload = data[RECORD_HEADER_SIZE:]
            _length, crc = _RECORD.unpack_from(data)
            if len(data) != end - off or zlib.crc32(payload) != crc:
                self._corrupt_at_read(seg, off, end)
                continue
            seg.in_flight[off] = end
            out.append((RecordRef(seg.seq, off), payload))

    def _read_new(
        self,
        seg: _Segment,
        out: list[tuple[RecordRef, bytes]],
        max_records: int,
        budget: list[int],
    ) -> None:
        pos = seg.read_pos
        size = seg.size
        fd = self._reader_fd(seg)
        unpack = _RECORD.unpack_from
        crc32 = zlib.crc32
        gaps = seg.gaps
        in_flight = seg.in_flight
        seq = seg.seq
        while pos < size and len(out) < max_records and budget[0] != 0:
            # read about what the caller asked for (read(1) must not pread 256 KiB)
            want = (max_records - len(out)) * (RECORD_HEADER_SIZE + self._avg_len) * 1.25
            if budget[0] > 0:
                want = min(want, budget[0] + 2 * RECORD_HEADER_SIZE)
            chunk = os.pread(fd, min(size - pos, _READ_CHUNK, max(_MIN_READ, int(want))), pos)
            base = pos
            i = 0
            n = len(chunk)
            while i + RECORD_HEADER_SIZE <= n and len(out) < max_records:
                off = base + i
                gap = gaps.get(off)
                if gap is not None:
                    pos = gap
                    break
                length, crc = unpack(chunk, i)
                end = off + RECORD_HEADER_SIZE + length
                if length == 0 or length > MAX_RECORD_BYTES or end > size:
                    # changed under us (the file was modified by someone else)
                    self._corrupt_at_read(seg, off, size)
                    pos = size
                    break
                if i + RECORD_HEADER_SIZE + length > n:
                    if i > 0:
                        pos = off  # re-read from this record
                        break
                    payload = os.pread(fd, length, off + RECORD_HEADER_SIZE)
                else:
                    payload = chunk[i + RECORD_HEADER_SIZE : i + RECORD_HEADER_SIZE + length]
                if not self._take(budget, length, out):
                    pos = off
                    break
                i += RECORD_HEADER_SIZE + length
                pos = end
                if len(payload) != length or crc32(payload) != crc:
                    self._corrupt_at_read(seg, off, end)
                    continue
                in_flight[off] = end
                out.append((RecordRef(seq, off), payload))
            else:
                if i == 0 and n < RECORD_HEADER_SIZE:  # the file is shorter than we wrote
                    self._corrupt_at_read(seg, pos, size)
                    pos = size
            if budget[0] == 0:
                break
        seg.read_pos = pos

    def _corrupt_at_read(self, seg: _Segment, off: int, end: int) -> None:
        self._corrupt += 1
        log.warning("spool.corrupt_record_skipped", segment=seg.seq, offset=off)
        seg.gaps[off] = end
        if end >= seg.size and off >= seg.read_pos:
            # the rest of the segment is unreadable: only what is out (or back) stays pending
            pending = len(seg.in_flight) + len(seg.released)
            self._unacked -= seg.unacked - pending
            seg.unacked = pending
        else:
            seg.unacked -= 1
            self._unacked -= 1
        if off == seg.prefix_off:
            self._advance_prefix(seg)

    def ack(self, refs: Iterable[RecordRef]) -> None:
        """Mark records delivered; delete each segment whose records are all acked."""
        with self._lock:
            self._check_open()
            touched: dict[int, tuple[_Segment, int]] = {}
            segments = self._segments
            for ref in refs:
                seg = segments.get(ref.segment)
                if seg is None:
                    continue  # its segment was dropped at the cap, or a stale ref
                off = ref.offset
                end = seg.in_flight.pop(off, None)
                if end is None:
                    end = seg.released.pop(off, None)
                    if end is None:
                        continue
                seg.unacked -= 1
                self._unacked -= 1
                self._acked += 1
                if seg.seq not in touched:
                    touched[seg.seq] = (seg, seg.prefix_off)
                if off == seg.prefix_off:
                    seg.prefix_off = end
                    seg.prefix_count += 1
                    self._advance_prefix(seg)
                else:
                    seg.acked_beyond[off] = end
            for seg, old_prefix in touched.values():
                if seg.unacked == 0 and seg.read_pos >= seg.size:
                    if seg is self._active:
                        self._active = None  # roll: the next append starts a new segment
                    self._delete_segment(seg)
                elif seg.prefix_off != old_prefix:
                    self._write_ack(seg)
            if self._at_cap and self._bytes < self._max_bytes // 2:
                self._at_cap = False
                log.info("spool.below_cap", bytes=self._bytes, max_bytes=self._max_bytes)

    def release(self, refs: Iterable[RecordRef]) -> None:
        """Give records back (the send failed): the next ``read`` hands them out again."""
        with self._lock:
            self._check_open()
            for ref in refs:
                seg = self._segments.get(ref.segment)
                if seg is None:
                    continue
                end = seg.in_flight.pop(ref.offset, None)
                if end is not None:
                    seg.released[ref.offset] = end

    @staticmethod
    def _advance_prefix(seg: _Segment) -> None:
        off = seg.prefix_off
        acked = seg.acked_beyond
        gaps = seg.gaps
        while True:
            end = acked.pop(off, None)
            if end is not None:
                off = end
                seg.prefix_count += 1
                continue
            end = gaps.get(off)
            if end is not None:
                off = end
                continue
            break
        seg.prefix_off = off

    def _write_ack(self, seg: _Segment) -> None:
        try:
            if seg.ack_fd < 0:
                seg.ack_fd = os.open(
                    self._dir / _ack_name(seg.seq),
                    os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            os.pwrite(seg.ack_fd, _encode_ack(seg.prefix_count, seg.prefix_off), 0)
        except OSError as exc:  # progress only: at worst the prefix is replayed again
            log.warning("spool.ack_sidecar_failed", segment=seg.seq, error=str(exc))

    def _delete_segment(self, seg: _Segment) -> None:
        """Remove a segment's files and state (under the lock)."""
        self._segments.pop(seg.seq, None)
        self._dirty.pop(seg.seq, None)
        if seg is self._active:
            self._active = None
        self._bytes -= seg.size
        self._unacked -= seg.unacked
        self._close_segment_fds(seg)
        self._unlink(seg.seq)

    @staticmethod
    def _close_segment_fds(seg: _Segment) -> None:
        for fd in (seg.fd, seg.ack_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        seg.fd = seg.ack_fd = -1

    def _unlink(self, seq: int) -> None:
        for name in (_segment_name(seq), _ack_name(seq)):
            try:
                os.unlink(self._dir / name)
            except FileNotFoundError:
                pass
            except OSError as exc:  # e.g. a read-only remount: the file is replayed next open
                log.error("spool.unlink_failed", path=str(self._dir / name), error=str(exc))

    def _abandon_segment(self, seg: _Segment, exc: OSError) -> None:
        """A segment that cannot be read (deleted by hand, EIO): forget it, keep the file.

        Its records not yet handed out are counted as ``dropped_io_error``; if the file is
        still there, the next open tries it again.
        """
        lost = seg.unacked - len(seg.in_flight)
        log.error(
            "spool.segment_unreadable",
            segment=seg.seq,
            error=str(exc),
            records_dropped=lost,
            directory=str(self._dir),
        )
        self._dropped_io += lost
        self._segments.pop(seg.seq, None)
        self._dirty.pop(seg.seq, None)
        if seg is self._active:
            self._active = None
        self._bytes -= seg.size
        self._unacked -= seg.unacked
        self._close_segment_fds(seg)

    # ------------------------------------------------------------------ lifecycle, stats

    def close(self) -> None:
        """Stop the flusher, fsync (unless fsync_interval is None), persist ack progress,
        delete fully acked segments and release the directory. Idempotent."""
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True
            self._wake_flusher.notify_all()
            flusher = self._flusher
        if flusher is not None:
            flusher.join()
        if self._interval is not None:
            self._sync_to(self._write_seq)
        with self._lock:
            for seg in list(self._segments.values()):
                if seg.unacked == 0:
                    self._delete_segment(seg)
                elif seg.prefix_off > HEADER_SIZE:
                    self._write_ack(seg)
            self._closed = True
            self._synced_cv.notify_all()
            self._close_fds()
        _OPEN_SPOOLS.discard(self)

    def _close_fds(self) -> None:
        for seg in self._segments.values():
            for fd in (seg.fd, seg.ack_fd):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            seg.fd = seg.ack_fd = -1
        self._segments.clear()
        self._active = None
        self._dirty.clear()
        for name in ("_dir_fd", "_lock_fd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)  # closing the lock fd releases the flock
                setattr(self, name, -1)

    def _forget_after_fork(self) -> None:
        """In a forked child: this copy must not touch the parent's files (or its locks)."""
        self._lock = threading.Lock()
        self._wake_flusher = threading.Condition(self._lock)
        self._synced_cv = threading.Condition(self._lock)
        self._sync_lock = threading.Lock()
        self._flusher = None
        self._closed = True
        self._closing = True
        self._close_fds()

    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise SpoolClosedError(f"spool {str(self._dir)!r} is closed")

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._unacked

    def __bool__(self) -> bool:
        return self._unacked > 0

    def __repr__(self) -> str:
        return f"<Spool {str(self._dir)!r} records={self._unacked} bytes={self._bytes}>"

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(
                bytes=self._bytes,
                records=self._unacked,
                segments=len(self._segments),
                appended=self._appended,
                acked=self._acked,
                corrupt_skipped=self._corrupt,
                torn_truncated_bytes=self._torn,
                dropped_full=self._dropped_full,
                fsyncs=self._fsyncs,
                recovered=self._recovered,
                dropped_io_error=self._dropped_io,
                dropped_closed=self._dropped_closed,
                rejected_invalid=self._rejected,
                fsync_errors=self._fsync_errors,
            )


# --------------------------------------------------------------------------- CLI helpers


def _lock_held(directory: Path) -> bool:
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock if we got it
    return False


def inspect_spool(directory: str | os.PathLike[str]) -> SpoolReport:
    """Summarise a spool directory without modifying anything (safe while it is in use;
    the newest segment may then show a write in progress as torn bytes)."""
    path = Path(directory)
    if not path.is_dir():
        return SpoolReport(str(path), False, False, (), 0, 0, 0, 0, None, None)
    segs, _acks = _list_segments(path)
    reports: list[SegmentReport] = []
    for seq in segs:
        seg_path = path / _segment_name(seq)
        try:
            data = _read_file(seg_path)
            mtime = os.stat(seg_path).st_mtime
        except FileNotFoundError:  # deleted by the running spool meanwhile
            continue
        ack = None
        with contextlib.suppress(FileNotFoundError):
            ack = _decode_ack(_read_file(path / _ack_name(seq)), len(data))
        count, start = ack if ack is not None else (0, HEADER_SIZE)
        scan = _scan(data, start)
        bad_format = not scan.header_ok and scan.valid_end > 0
        reports.append(
            SegmentReport(
                sequence=seq,
                path=str(seg_path),
                bytes=len(data),
                records=scan.records,
                acked=count,
                corrupt_records=scan.corrupt + (1 if bad_format else 0),
                torn_bytes=scan.torn_bytes,
                mtime=mtime,
                valid_header=scan.header_ok,
            )
        )
    mtimes = [r.mtime for r in reports]
    return SpoolReport(
        directory=str(path),
        exists=True,
        in_use=_lock_held(path),
        segments=tuple(reports),
        records=sum(r.records for r in reports),
        bytes=sum(r.bytes for r in reports),
        corrupt_records=sum(r.corrupt_records for r in reports),
        torn_bytes=sum(r.torn_bytes for r in reports),
        oldest_mtime=min(mtimes) if mtimes else None,
        newest_mtime=max(mtimes) if mtimes else None,
    )


def purge_spool(directory: str | os.PathLike[str]) -> int:
    """Delete every segment (and sidecar); return the unacked records removed.

    Raises :class:`SpoolLockedError` when an open Spool holds the directory.
    """
    path = Path(directory)
    if not path.is_dir():
        return 0
    lock_fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpoolLockedError(f"spool {str(path)!r} is open elsewhere") from None
        removed = 0
        segs, acks = _list_segments(path)
        for seq in segs:
            seg_path = path / _segment_name(seq)
            data = _read_file(seg_path)
            ack = None
            with contextlib.suppress(FileNotFoundError):
                ack = _decode_ack(_read_file(path / _ack_name(seq)), len(data))
            removed += _scan(data, ack[1] if ack else HEADER_SIZE).records
            os.unlink(seg_path)
        for seq in acks:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / _ack_name(seq))
        if removed or segs:
            log.info("spool.purged", directory=str(path), segments=len(segs), records=removed)
        return removed
    finally:
        os.close(lock_fd)
