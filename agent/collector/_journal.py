"""The collector's ingest journal: append-only files of acknowledged, not yet stored batches.

A checked ``send_steps`` batch is answered once its write is appended here; the SQLite writer
commits journaled batches afterwards, many per transaction, and records in the same
transaction the sequence number of the last one it applied (``meta`` key
:data:`APPLIED_KEY`). At start, the records after that number are applied again before the
collector serves anything, so an answered batch survives the collector being killed (the
journal is written with ``write(2)``, not synced: like SQLite's ``synchronous=NORMAL``, it
survives the process, not a power loss).

Layout, under the journal directory (``0700``; files ``0600``):

* ``<first sequence number, 20 digits>.journal``: segments. A record is a 16-byte header --
  payload length (u32), CRC-32 of sequence number and payload (u32), sequence number (u64),
  little-endian -- then the payload. A new segment starts once the current one holds
  :data:`SEGMENT_BYTES`; a segment is deleted once every record in it is applied.
* ``lock``: held (``flock``) by the one process using the directory.
* ``dead-letter/<sequence number>.json``: a record that can never be stored (SQLite refuses
  it for a reason other than a full disk, an I/O error or a lock), with the error.

A torn tail (the process died during an append, so that batch was never answered) is cut
off at start, with a warning saying how many bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

#: Bytes after which the journal starts a new segment.
SEGMENT_BYTES = 64 * 1024 * 1024
#: Largest record accepted (a request body is bounded far below this).
MAX_RECORD_BYTES = 1 << 30
#: ``meta`` key holding the sequence number of the last journal record applied.
APPLIED_KEY = "ingest_journal_applied"
#: Size from which the current segment starts over once every record in it is applied.
_RESTART_BYTES = 4 * 1024 * 1024
_HEADER = struct.Struct("<IIQ")
_SEQ = struct.Struct("<Q")
_SUFFIX = ".journal"


class JournalError(RuntimeError):
    """The journal directory cannot be used (locked by another process, unreadable)."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record's payload sits: to read it back for a dead letter."""

    segment: Path
    offset: int
    length: int


def _crc(seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))


class Journal:
    """The segments of one journal directory (see the module docstring).

    :meth:`append` is called by the threads that answer requests, :meth:`release` by the
    writer once records are applied; both are thread-safe.
    """

    def __init__(self, directory: str | Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.dead_letter_dir = self.directory / "dead-letter"
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise JournalError(
                f"the ingest journal {self.directory} is in use by another collector process"
                " (one collector per SQLite database)"
            ) from None
        #: (first sequence number, path) of every segment, oldest first; the last is current.
        self._segments: list[tuple[int, Path]] = sorted(
            (int(p.name[: -len(_SUFFIX)]), p)
            for p in self.directory.glob(f"*{_SUFFIX}")
            if p.name[: -len(_SUFFIX)].isdigit()
        )
        self._fd = -1
        self._size = 0
        self.last_seq = 0  # highest sequence number in the journal (or given out)
        self.dead_letters = 0  # written by this process

    # -- start: replay ----------------------------------------------------------------------

    def replay(self, applied: int) -> Iterator[tuple[int, bytes, Location]]:
        """The records after ``applied``, in order; cuts a torn tail off the last segment.

        Must be consumed before the first :meth:`append`, which continues numbering after the
        highest of ``applied`` and the last record found.
        """
        self.last_seq = applied
        for index, (_, path) in enumerate(self._segments):
            last = index == len(self._segments) - 1
            with path.open("rb") as file:
                data = file.read()
            offset = 0
            while offset < len(data):
                end = offset + _HEADER.size
                if end > len(data):
                    break
                length, crc, seq = _HEADER.unpack_from(data, offset)
                payload = memoryview(data)[end : end + length]
                if len(payload) != length or _crc(seq, payload) != crc:
                    break
                self.last_seq = max(self.last_seq, seq)
                if seq > applied:
                    yield seq, bytes(payload), Location(path, end, length)
                offset = end + length
            if offset < len(data):
                if not last:  # pragma: no cover - appends only ever go to the last segment
                    raise JournalError(f"corrupt ingest journal segment {path} at byte {offset}")
                log.warning(
                    "ingest journal: cut off a torn record at its end (a batch being appended"
                    " when the collector stopped, never acknowledged)",
                    segment=str(path),
                    bytes=len(data) - offset,
                )
                os.truncate(path, offset)

    # -- appends ------------------------------------------------------------------------------

    def append(self, payload: bytes) -> tuple[int, Location]:
        """Append one record; returns its sequence number and location. Raises
        :class:`OSError` (disk full, I/O error) with nothing appended as far as replay sees."""
        if len(payload) > MAX_RECORD_BYTES:
            raise ValueError(f"journal record of {len(payload)} bytes (most: {MAX_RECORD_BYTES})")
        with self._lock:
            if self._fd < 0 or self._size >= self._segment_bytes:
                self._open_segment(self.last_seq + 1)
            seq = self.last_seq + 1
            header = _HEADER.pack(len(payload), _crc(seq, payload), seq)
            start = self._size
            try:
                _write_all(self._fd, header, payload)
            except OSError:
                # a partial record would read as a torn tail, but records after it would be
                # lost with it at the next start: cut it off now
                try:
                    os.ftruncate(self._fd, start)
                    os.lseek(self._fd, start, os.SEEK_SET)
                except OSError:  # pragma: no cover - the file cannot even be truncated
                    os.close(self._fd)
                    self._fd = -1
                raise
            self._size = start + len(header) + len(payload)
            self.last_seq = seq
            return seq, Location(self._segments[-1][1], start + len(header), len(payload))

    def _open_segment(self, first_seq: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        path = self.directory / f"{first_seq:020d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fd, self._size = fd, os.fstat(fd).st_size
        if not self._segments or self._segments[-1][1] != path:
            self._segments.append((first_seq, path))

    # -- after commits ------------------------------------------------------------------------

    def release(self, applied: int) -> None:
        """Delete the segments whose records are all applied (the current one stays)."""
        with self._lock:
            while len(self._segments) > 1 and self._segments[1][0] <= applied + 1:
                _, path = self._segments.pop(0)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if (
                len(self._segments) == 1
                and self.last_seq <= applied
                and self._size >= _RESTART_BYTES
                and self._fd >= 0
            ):
                # everything applied: start the current segment over instead of growing it
                # (its pages are mostly dropped from the page cache before they reach the disk)
                os.ftruncate(self._fd, 0)
                self._size = 0

    def reset(self) -> None:
        """Delete every segment (their records are all applied); numbering goes on."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            for _, path in self._segments:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self._segments.clear()
            self._size = 0

    def read(self, location: Location) -> bytes:
        """The payload at ``location`` (a record not yet released)."""
        with location.segment.open("rb") as file:
            file.seek(location.offset)
            return file.read(location.length)

    def write_dead_letter(self, seq: int, text: bytes) -> Path:
        """Keep a record that cannot be stored (``text``: JSON), readable by its owner only."""
        self.dead_letter_dir.mkdir(mode=0o700, exist_ok=True)
        path = self.dead_letter_dir / f"{seq:020d}.json"
        tmp = path.with_suffix(".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, text)
        finally:
            os.close(fd)
        tmp.replace(path)
        self.dead_letters += 1
        return path

    def size(self) -> int:
        """Bytes in the journal's segments (an estimate for the older ones)."""
        with self._lock:
            total = self._size
            for _, path in self._segments[:-1]:
                with contextlib.suppress(FileNotFoundError):
                    total += path.stat().st_size
            return total

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1


def _write_all(fd: int, *parts: bytes) -> None:
    """``writev`` until every byte of ``parts`` is written (a write may be short)."""
    buffers = [memoryview(p) for p in parts]
    while buffers:
        written = os.writev(fd, buffers)
        while buffers and written >= len(buffers[0]):
            written -= len(buffers[0])
            buffers.pop(0)
        if buffers and written:
            buffers[0] = buffers[0][written:]


__all__ = ["APPLIED_KEY", "Journal", "JournalError", "Location"]
