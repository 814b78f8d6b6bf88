"""Tests of the disk spool (agent/pipeline/_spool.py): real files, real processes, no mocks."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.pipeline._spool import (
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    RecordRef,
    Spool,
    SpoolClosedError,
    SpoolFullPolicy,
    SpoolLockedError,
    inspect_spool,
    purge_spool,
)

REPO = Path(__file__).resolve().parents[1]


def rec(i: int, size: int = 100) -> bytes:
    """A record whose first 8 bytes are its id, padded to ``size`` bytes."""
    return f"{i:08d}".encode().ljust(size, b".")


def rid(payload: bytes) -> int:
    return int(payload[:8])


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.spool"))


def drain(spool: Spool, batch: int = 1000) -> list[bytes]:
    """Read and ack everything; return the payloads in the order handed out."""
    out: list[bytes] = []
    while items := spool.read(batch):
        out.extend(p for _, p in items)
        spool.ack(r for r, _ in items)
    return out


def record_offset(k: int, size: int) -> int:
    """Offset of the k-th record in a segment of equal-size records."""
    return HEADER_SIZE + k * (RECORD_HEADER_SIZE + size)


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


# ----------------------------------------------------------------------------- basics


def test_round_trip(spool_dir: Path) -> None:
    """Appended records come back byte for byte, in order, and acking empties the spool."""
    payloads = [rec(i, 10 + i) for i in range(50)] + [b"\x00\xff" * 300, b"x"]
    with Spool(spool_dir) as spool:
        assert spool.append(payloads) == len(payloads)
        assert len(spool) == len(payloads)
        assert spool
        items = spool.read(1000)
        assert [p for _, p in items] == payloads
        assert all(isinstance(r, RecordRef) for r, _ in items)
        spool.ack(r for r, _ in items)
        assert len(spool) == 0
        assert not spool
        st = spool.stats
        assert (st.appended, st.acked, st.records, st.segments, st.bytes) == (52, 52, 0, 0, 0)
    assert segment_files(spool_dir) == []


def test_oldest_first_across_segments_and_reopen(spool_dir: Path) -> None:
    """Reads are oldest first across many segments, before and after a reopen."""
    with Spool(spool_dir, segment_bytes=1024, fsync_interval=None) as spool:
        for i in range(100):
            assert spool.append([rec(i)]) == 1
        assert spool.stats.segments > 5
        first = spool.read(30)
        assert [rid(p) for _, p in first] == list(range(30))
    with Spool(spool_dir, segment_bytes=1024, fsync_interval=None) as spool:
        assert spool.stats.recovered == 100
        assert [rid(p) for p in drain(spool, batch=7)] == list(range(100))


def test_read_bounds_in_flight_and_release(spool_dir: Path) -> None:
    """In-flight records are not handed out twice; release gives them back, oldest first."""
    with Spool(spool_dir, segment_bytes=2048) as spool:
        spool.append([rec(i) for i in range(40)])
        a = spool.read(10)
        b = spool.read(10)
        assert [rid(p) for _, p in a] == list(range(10))
        assert [rid(p) for _, p in b] == list(range(10, 20))
        spool.release(r for r, _ in a[5:])
        c = spool.read(8)
        assert [rid(p) for _, p in c] == [5, 6, 7, 8, 9, 20, 21, 22]
        # max_bytes bounds payload bytes, but at least one record is returned
        assert len(spool.read(100, max_bytes=250)) == 2
        assert len(spool.read(100, max_bytes=1)) == 1
        spool.ack(r for r, _ in a + b + c)
        assert len(spool) == 40 - 10 - 10 - 3


def test_unacked_in_flight_replayed_after_reopen(spool_dir: Path) -> None:
    """A record handed out but never acked is handed out again after a reopen."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(10)])
        items = spool.read(10)
        spool.ack(r for r, _ in items[:4])
    with Spool(spool_dir) as spool:
        assert [rid(p) for p in drain(spool)] == list(range(4, 10))


def test_segment_deleted_only_when_every_record_acked(spool_dir: Path) -> None:
    """A segment file survives until its last record is acked; the active one is rolled."""
    with Spool(spool_dir, segment_bytes=HEADER_SIZE + 5 * 108, fsync_interval=None) as spool:
        for i in range(15):
            spool.append([rec(i)])
        segs = segment_files(spool_dir)
        assert len(segs) == 3
        items = spool.read(100)
        by_id = {rid(p): r for r, p in items}
        spool.ack(by_id[i] for i in range(15) if i != 2)
        # segment 1 still holds unacked record 2; segment 2 is sealed and fully acked;
        # segment 3 (the active one) is fully acked too and is rolled away
        assert segment_files(spool_dir) == [segs[0]]
        assert spool.stats.segments == 1
        spool.ack([by_id[2]])
        assert segment_files(spool_dir) == []
        assert len(spool) == 0
        # the spool keeps working after its active segment was rolled away
        assert spool.append([rec(99)]) == 1
        assert [rid(p) for p in drain(spool)] == [99]


def test_stale_and_unknown_refs_are_ignored(spool_dir: Path) -> None:
    """Acking or releasing refs that are not in flight changes nothing."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(3)])
        items = spool.read(3)
        spool.ack([RecordRef(999, 16), RecordRef(items[0][0].segment, 12345)])
        spool.ack([items[0][0]])
        spool.ack([items[0][0]])  # double ack
        spool.release([items[0][0], RecordRef(999, 16)])
        assert len(spool) == 2
        assert spool.stats.acked == 1


# ----------------------------------------------------------------------------- ack sidecar


def test_ack_sidecar_survives_reopen(spool_dir: Path) -> None:
    """The acked prefix of a segment is persisted: a reopen does not replay it."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(100)])
        items = spool.read(60)
        spool.ack(r for r, _ in items)
        sidecars = list(spool_dir.glob("seg-*.ack"))
        assert len(sidecars) == 1
    with Spool(spool_dir) as spool:
        assert len(spool) == 40
        assert [rid(p) for p in drain(spool)] == list(range(60, 100))
    assert list(spool_dir.glob("seg-*")) == []


def test_out_of_order_acks_beyond_prefix_are_replayed(spool_dir: Path) -> None:
    """Only the leading acked prefix is persisted; acks beyond a gap replay (at-least-once)."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(30)])
        items = spool.read(30)
        spool.ack(r for r, p in items if not 10 <= rid(p) < 20)
        assert len(spool) == 10
    with Spool(spool_dir) as spool:
        # 0..9 were the persisted prefix; 20..29 come back as duplicates
        assert [rid(p) for p in drain(spool)] == list(range(10, 30))


def test_torn_ack_sidecar_is_ignored(spool_dir: Path) -> None:
    """A garbled sidecar is ignored: the whole segment is replayed rather than lost."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(10)])
        spool.ack(r for r, _ in spool.read(5))
    (sidecar,) = spool_dir.glob("seg-*.ack")
    sidecar.write_bytes(b"LACK" + b"\x01" * 10)
    with Spool(spool_dir) as spool:
        assert [rid(p) for p in drain(spool)] == list(range(10))


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x10\x00\x00", id="partial-length"),
        pytest.param(struct.pack("<II", 100, 1234) + b"half", id="partial-payload"),
        pytest.param(struct.pack("<I", 100), id="length-without-crc"),
        pytest.param(b"\x00" * 4096, id="zero-filled"),
    ],
)
def test_torn_tail_truncated(spool_dir: Path, tail: bytes) -> None:
    """A partial record at the end of the last segment is truncated and counted."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(20)])
    (seg,) = segment_files(spool_dir)
    good_size = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(tail)
    with Spool(spool_dir) as spool:
        st = spool.stats
        assert st.torn_truncated_bytes == len(tail)
        assert st.corrupt_skipped == 0
        assert seg.stat().st_size == good_size
        assert [rid(p) for p in drain(spool)] == list(range(20))


def test_torn_header_of_new_segment(spool_dir: Path) -> None:
    """A segment file cut inside its header (crash while creating it) is removed."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(3)])
    (seg,) = segment_files(spool_dir)
    nxt = seg.with_name("seg-00000000000000000099.spool")
    nxt.write_bytes(seg.read_bytes()[:7])
    with Spool(spool_dir) as spool:
        assert spool.stats.torn_truncated_bytes == 7
        assert not nxt.exists()
        assert [rid(p) for p in drain(spool)] == [0, 1, 2]
        spool.append([rec(3)])
        # sequence numbers keep growing past the highest file ever seen
        assert segment_files(spool_dir)[-1].name > nxt.name


def test_corrupt_crc_record_skipped_and_counted(spool_dir: Path) -> None:
    """A record whose CRC fails is skipped and counted; its neighbours are replayed."""
    with Spool(spool_dir) as spool:
        spool.append([rec(i) for i in range(10)])
    (seg,) = segment_files(spool_dir)
    data = bytearray(seg.read_bytes())
    data[record_offset(4, 100) + RECORD_HEADER_SIZE + 50] ^= 0xFF
    seg.write_bytes(data)
    with Spool(spool_dir) as spool:
        assert spool.stats.corrupt_skipped == 1
        assert len(spool) == 9
        assert [rid(p) for p in drain(spool)] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert segment_files(spool_dir) == []


def test_corruption_after_open_detected_at_read(spool_dir: Path) -> None:
    """Bytes changed on disk after open fail their CRC at read; the segment still drains."""
    with Spool(spool_dir, fsync_interval=None) as spool:
        spool.append([rec(i) for i in range(5)])
        (seg,) = segment_files(spool_dir)
        fd = os.open(seg, os.O_WRONLY)
        os.pwrite(fd, b"X", record_offset(1, 100) + RECORD_HEADER_SIZE + 20)
        os.close(fd)
        assert [rid(p) for p in drain(spool)] == [0, 2, 3, 4]
        assert spool.stats.corrupt_skipped == 1
        assert len(spool) == 0
        assert segment_files(spool_dir) == []


def test_garbage_length_skips_rest_of_that_segment_only(spool_dir: Path) -> None:
    """An absurd length makes the rest of its segment unreadable; other segments replay."""
    size = 100
    per_seg = 5
    with Spool(spool_dir, segment_bytes=record_offset(per_seg, size), fsync_interval=None) as sp:
        for i in range(3 * per_seg):
            sp.append([rec(i, size)])
    segs = segment_files(spool_dir)
    assert len(segs) == 3
    data = bytearray(segs[1].read_bytes())
    struct.pack_into("<I", data, record_offset(2, size), 0xFFFFFFF0)
    segs[1].write_bytes(data)
    with Spool(spool_dir) as spool:
        assert spool.stats.corrupt_skipped == 1
        assert spool.stats.torn_truncated_bytes == 0
        assert [rid(p) for p in drain(spool)] == [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14]
    assert segment_files(spool_dir) == []


def test_unknown_format_segment_left_alone(spool_dir: Path) -> None:
    """A segment with a foreign header is counted and never deleted or parsed."""
    spool_dir.mkdir(mode=0o700)
    alien = spool_dir / "seg-00000000000000000001.spool"
    alien.write_bytes(b"NOTASPOOL-------" + b"payload")
    with Spool(spool_dir) as spool:
        assert spool.stats.corrupt_skipped == 1
        assert len(spool) == 0
        spool.append([rec(1)])
        assert [rid(p) for p in drain(spool)] == [1]
    assert alien.exists()


# ----------------------------------------------------------------------------- permissions, locking


def test_permissions_do_not_depend_on_umask(spool_dir: Path) -> None:
    """Directory 0700, segment, sidecar and lock files 0600, even with a permissive umask."""
    old = os.umask(0)
    try:
        with Spool(spool_dir / "nested") as spool:
            spool.append([rec(i) for i in range(4)])
            spool.ack([spool.read(1)[0][0]])
            d = spool_dir / "nested"
            assert stat.S_IMODE(d.stat().st_mode) == 0o700
            files = list(d.iterdir())
            assert {f.suffix for f in files} == {".spool", ".ack", ".lock"}
            for f in files:
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        os.umask(old)


def test_second_open_is_refused_while_locked(spool_dir: Path) -> None:
    """Only one open Spool per directory; the lock is released by close."""
    spool = Spool(spool_dir)
    with pytest.raises(SpoolLockedError):
        Spool(spool_dir)
    spool.close()
    Spool(spool_dir).close()


def test_closed_spool(spool_dir: Path) -> None:
    """After close, append counts and returns 0, the other operations raise."""
    spool = Spool(spool_dir)
    spool.close()
    spool.close()  # idempotent
    assert spool.append([b"x"]) == 0
    assert spool.stats.dropped_closed == 1
    with pytest.raises(SpoolClosedError):
        spool.read(1)
    with pytest.raises(SpoolClosedError):
        spool.ack([])
    with pytest.raises(SpoolClosedError):
        spool.flush()


def test_invalid_records_rejected_and_counted(spool_dir: Path) -> None:
    """Empty and oversize records are refused and counted; the rest of the batch is kept."""
    with Spool(spool_dir, max_record_bytes=1000) as spool:
        assert spool.append([rec(1), b"", b"y" * 1001, rec(2)]) == 2
        assert spool.stats.rejected_invalid == 2
        assert [rid(p) for p in drain(spool)] == [1, 2]


def test_forked_child_does_not_touch_parent_spool(spool_dir: Path) -> None:
    """A forked child's copy is closed: its appends are refused, the parent's keep working."""
    with Spool(spool_dir) as spool:
        spool.append([rec(1)])
        pid = os.fork()
        if pid == 0:  # child
            code = 0 if spool.append([rec(2)]) == 0 and spool.stats.dropped_closed == 1 else 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        spool.append([rec(3)])
        assert [rid(p) for p in drain(spool)] == [1, 3]


# ----------------------------------------------------------------------------- size cap


def test_cap_drop_newest(spool_dir: Path) -> None:
    """DROP_NEWEST keeps what fits, refuses and counts the rest, and recovers after acks."""
    cap = HEADER_SIZE + 10 * (RECORD_HEADER_SIZE + 100)
    with Spool(spool_dir, max_bytes=cap, full_policy=SpoolFullPolicy.DROP_NEWEST) as spool:
        assert spool.append([rec(i) for i in range(15)]) == 10
        assert spool.append([rec(99)]) == 0
        st = spool.stats
        assert st.dropped_full == 6
        assert st.bytes == cap
        assert [rid(p) for p in drain(spool)] == list(range(10))
        assert spool.append([rec(100)]) == 1


def test_cap_drop_oldest(spool_dir: Path) -> None:
    """DROP_OLDEST deletes whole oldest segments to make room; drops are counted."""
    per_seg = 5
    seg_bytes = record_offset(per_seg, 100)
    with Spool(spool_dir, max_bytes=3 * seg_bytes, segment_bytes=seg_bytes) as spool:
        for i in range(40):
            assert spool.append([rec(i)]) == 1
            assert spool.stats.bytes <= 3 * seg_bytes
        st = spool.stats
        assert st.dropped_full == 40 - st.records
        ids = [rid(p) for p in drain(spool)]
        assert ids == list(range(40 - len(ids), 40))
        assert 10 < len(ids) <= 15


def test_cap_drop_oldest_with_records_in_flight(spool_dir: Path) -> None:
    """Records in flight in a dropped segment: their late ack is ignored."""
    seg_bytes = record_offset(2, 100)
    with Spool(spool_dir, max_bytes=2 * seg_bytes, segment_bytes=seg_bytes) as spool:
        spool.append([rec(0), rec(1)])
        items = spool.read(2)
        spool.append([rec(2), rec(3)])
        spool.append([rec(4), rec(5)])  # drops segment 1, which holds 0 and 1 in flight
        spool.ack(r for r, _ in items)
        assert spool.stats.dropped_full == 2
        assert spool.stats.acked == 0
        assert [rid(p) for p in drain(spool)] == [2, 3, 4, 5]


# ----------------------------------------------------------------------------- durability


@pytest.mark.parametrize("interval", [0.005, 0, None])
def test_durable_append_performs_fsync(spool_dir: Path, interval: float | None) -> None:
    """durable=True returns after an fsync, whatever the interval (None included)."""
    with Spool(spool_dir, fsync_interval=interval) as spool:
        assert spool.stats.fsyncs == 0
        assert spool.append([rec(1)], durable=True) == 1
        assert spool.stats.fsyncs >= 1


def test_fsync_policy(spool_dir: Path) -> None:
    """interval 0 fsyncs every append, None never does, flush() always does."""
    with Spool(spool_dir / "zero", fsync_interval=0) as spool:
        for i in range(5):
            spool.append([rec(i)])
        assert spool.stats.fsyncs == 5
    with Spool(spool_dir / "never", fsync_interval=None) as spool:
        for i in range(5):
            spool.append([rec(i)])
        assert spool.stats.fsyncs == 0
        spool.flush()
        assert spool.stats.fsyncs == 1


def test_durable_appends_share_fsyncs(spool_dir: Path) -> None:
    """Group commit: concurrent durable appenders share fsync rounds."""
    n_threads, per_thread = 4, 50
    with Spool(spool_dir, fsync_interval=0.005) as spool:
        barrier = threading.Barrier(n_threads)
        results: list[int] = []

        def worker(t: int) -> None:
            barrier.wait()
            results.extend(
                spool.append([rec(t * 1000 + i)], durable=True) for i in range(per_thread)
            )

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert results == [1] * (n_threads * per_thread)
        assert 1 <= spool.stats.fsyncs < n_threads * per_thread


def test_concurrent_appenders_lose_nothing(spool_dir: Path) -> None:
    """Many threads appending batches: every record is stored once, per-thread order kept."""
    n_threads, batches, per_batch = 8, 60, 7
    with Spool(spool_dir, segment_bytes=16 << 10, fsync_interval=0.005) as spool:
        barrier = threading.Barrier(n_threads)

        def worker(t: int) -> None:
            barrier.wait()
            for b in range(batches):
                base = t * 100_000 + b * per_batch
                spool.append([rec(base + k) for k in range(per_batch)])

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert spool.stats.appended == n_threads * batches * per_batch
    with Spool(spool_dir) as spool:
        ids = [rid(p) for p in drain(spool, batch=333)]
    assert len(ids) == len(set(ids)) == n_threads * batches * per_batch
    for t in range(n_threads):
        mine = [i for i in ids if i // 100_000 == t]
        assert mine == sorted(mine)


_PRODUCER = r"""
import sys, threading
from agent.pipeline._spool import Spool

spool = Spool(
    sys.argv[1],
    segment_bytes=64 << 10,
    fsync_interval=0.005,
    max_bytes=256 << 20,
    full_policy="drop_newest",  # a drop would fail the child's assertion, not hide a loss
)
start = int(sys.argv[2])

def bulk():  # large appends from a second thread, so the kill often lands mid-write
    j = 0
    while True:
        assert spool.append([b"B%07d" % j + b"b" * 20_000 for _ in range(3)], durable=True) == 3
        j += 1

threading.Thread(target=bulk, daemon=True).start()
i = start
while True:
    batch = [b"%08d" % (i + k) + b"." * 700 for k in range(1 + i % 5)]
    assert spool.append(batch, durable=True) == len(batch)
    print("OK", *(i + k for k in range(len(batch))), flush=True)
    i += len(batch)
"""


@pytest.mark.slow
def test_sigkill_producer_loses_no_durable_record(tmp_path: Path) -> None:
    """A producer SIGKILLed mid-append: every id it reported as durably appended survives."""
    spool_dir = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    reported: set[int] = set()
    for round_no in range(3):
        start = round_no * 1_000_000
        proc = subprocess.Popen(
            [sys.executable, "-c", _PRODUCER, str(spool_dir), str(start)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        got = 0
        for line in proc.stdout:
            if not line.startswith(b"OK "):
                continue  # structlog output of the child (recovery summary)
            ids = [int(x) for x in line.split()[1:]]
            reported.update(ids)
            got += len(ids)
            if got >= 400:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

    with Spool(spool_dir) as spool:
        st = spool.stats
        assert st.corrupt_skipped == 0
        payloads = drain(spool)
    ids = [int(p[:8]) for p in payloads if not p.startswith(b"B")]
    assert len(ids) == len(set(ids))  # nothing replayed twice, nothing garbled
    assert reported <= set(ids)
    assert all(len(p) == 708 for p in payloads if not p.startswith(b"B"))
    assert all(len(p) == 20_008 for p in payloads if p.startswith(b"B"))


# ----------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, so that ENOSPC happens for real."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("needs Linux mount(8) to create a tiny tmpfs")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_counts_drops_logs_once_and_recovers(tiny_fs: Path) -> None:
    """A full disk: append returns 0 without raising, drops are counted, one log per state."""
    directory = tiny_fs / "spool"
    with capture_logs() as logs:
        spool = Spool(directory, segment_bytes=8 << 10, fsync_interval=None)
        accepted = 0
        for i in range(1000):
            n = spool.append([rec(i, 1000)])
            if n == 0:
                break
            accepted += n
        assert 0 < accepted < 1000
        for i in range(20):
            assert spool.append([rec(5000 + i, 1000)]) == 0
        st = spool.stats
        assert st.dropped_io_error == 21
        assert st.appended == accepted
        failures = [e for e in logs if e["event"] == "spool.write_failed"]
        assert len(failures) == 1
        assert failures[0]["reason"] == "ENOSPC"

        ids = [rid(p) for p in drain(spool)]
        assert ids == list(range(accepted))
        assert spool.append([rec(9999, 1000)]) == 1
        assert [e["event"] for e in logs].count("spool.write_recovered") == 1
        spool.close()
    with Spool(directory) as spool:
        st = spool.stats
        assert (st.corrupt_skipped, st.torn_truncated_bytes) == (0, 0)
        assert [rid(p) for p in drain(spool)] == [9999]


# ----------------------------------------------------------------------------- inspect / purge


def test_inspect_spool_is_read_only(spool_dir: Path) -> None:
    """inspect_spool reports segments, records, corruption and mtimes without changing files."""
    assert inspect_spool(spool_dir).exists is False
    with Spool(spool_dir, segment_bytes=record_offset(10, 100)) as spool:
        for i in range(25):
            spool.append([rec(i)])
        spool.ack(r for r, _ in spool.read(3))
        report = inspect_spool(spool_dir)
        assert report.in_use
    segs = segment_files(spool_dir)
    data = bytearray(segs[1].read_bytes())
    data[record_offset(0, 100) + 30] ^= 1
    segs[1].write_bytes(data)
    with segs[-1].open("ab") as f:
        f.write(b"\x01\x02\x03")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in spool_dir.iterdir()}

    report = inspect_spool(spool_dir)

    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in spool_dir.iterdir()}
    assert before == after
    assert not report.in_use
    assert len(report.segments) == 3
    assert report.records == 25 - 3 - 1
    assert report.segments[0].acked == 3
    assert report.corrupt_records == 1
    assert report.torn_bytes == 3
    assert report.bytes == sum(len(b) for n, (b, _) in after.items() if n.endswith(".spool"))
    assert report.oldest_mtime is not None
    assert report.newest_mtime is not None
    assert report.oldest_mtime <= report.newest_mtime


def test_purge_spool(spool_dir: Path) -> None:
    """purge_spool deletes every segment and returns the unacked records it removed."""
    assert purge_spool(spool_dir) == 0
    spool = Spool(spool_dir, segment_bytes=record_offset(10, 100))
    for i in range(25):
        spool.append([rec(i)])
    spool.ack(r for r, _ in spool.read(4))
    with pytest.raises(SpoolLockedError):
        purge_spool(spool_dir)
    spool.close()
    assert purge_spool(spool_dir) == 21
    assert list(spool_dir.glob("seg-*")) == []
    with Spool(spool_dir) as reopened:
        assert len(reopened) == 0


def test_zlib_crc_matches_format(spool_dir: Path) -> None:
    """The on-disk record is [u32 length][u32 crc32(payload)][payload], little endian."""
    with Spool(spool_dir) as spool:
        spool.append([b"hello"])
        (seg,) = segment_files(spool_dir)
        data = seg.read_bytes()
    assert data[:8] == b"LASPOOL\x00"
    assert struct.unpack_from("<HH", data, 8) == (1, 0)
    assert struct.unpack_from("<II", data, HEADER_SIZE) == (5, zlib.crc32(b"hello"))
    assert data[HEADER_SIZE + RECORD_HEADER_SIZE :] == b"hello"


def test_record_larger_than_a_segment(spool_dir: Path) -> None:
    """A record bigger than segment_bytes gets a segment of its own; nothing is split."""
    big = rec(1, 10_000)
    with Spool(spool_dir, segment_bytes=1024) as spool:
        assert spool.append([rec(0), big, rec(2)]) == 3
        assert spool.append([rec(3, 5000)]) == 1
        assert spool.append([rec(4)]) == 1
        assert spool.stats.segments == 3
    with Spool(spool_dir, segment_bytes=1024) as spool:
        payloads = drain(spool, batch=2)
    assert [rid(p) for p in payloads] == [0, 1, 2, 3, 4]
    assert payloads[1] == big


def test_reader_and_appenders_concurrently(spool_dir: Path) -> None:
    """A reader draining while threads append across segment rolls: each record once."""
    n_threads, per_thread = 4, 400
    total = n_threads * per_thread
    seen: list[int] = []
    released = 0
    with Spool(spool_dir, segment_bytes=4096, fsync_interval=0.005) as spool:
        done = threading.Event()

        def producer(t: int) -> None:
            for i in range(per_thread):
                spool.append([rec(t * 10_000 + i)])

        def consumer() -> None:
            nonlocal released
            while True:
                items = spool.read(50, max_bytes=3000)
                if not items:
                    if done.is_set() and not spool:
                        return
                    continue
                if released < 20 and rid(items[0][1]) % 3 == 0:
                    released += 1  # a failed send: give the batch back
                    spool.release(r for r, _ in items)
                    continue
                seen.extend(rid(p) for _, p in items)
                spool.ack(r for r, _ in items)

        producers = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
        reader = threading.Thread(target=consumer)
        reader.start()
        for th in producers:
            th.start()
        for th in producers:
            th.join()
        done.set()
        reader.join()
        assert len(spool) == 0
        assert spool.stats.acked == total
    assert len(seen) == total
    assert sorted(seen) == sorted(
        t * 10_000 + i for t in range(n_threads) for i in range(per_thread)
    )
    assert segment_files(spool_dir) == []


def test_one_record_reads_of_mixed_sizes(spool_dir: Path) -> None:
    """read(1, budget) one at a time (the worker's pattern) over tiny and >256 KiB records."""
    sizes = [10, 300_000, 100, 5000, 270_000, 9, 64 << 10, 1]
    payloads = [rec(i, max(s, 8)) for i, s in enumerate(sizes)]
    with Spool(spool_dir, segment_bytes=1 << 20) as spool:
        for p in payloads[:4]:
            spool.append([p])
        spool.append(payloads[4:])
        got: list[bytes] = []
        while items := spool.read(1, 4096):
            assert len(items) == 1
            got.append(items[0][1])
            spool.ack([items[0][0]])
    assert got == payloads


def test_segment_deleted_by_hand_is_abandoned_not_raised(spool_dir: Path) -> None:
    """A segment file removed behind the spool's back: read skips it and counts the loss."""
    per_seg = 5
    with Spool(spool_dir, segment_bytes=record_offset(per_seg, 100), fsync_interval=None) as sp:
        for i in range(3 * per_seg):
            sp.append([rec(i)])
    with Spool(spool_dir) as spool:
        segment_files(spool_dir)[1].unlink()
        assert [rid(p) for p in drain(spool)] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
        assert spool.stats.dropped_io_error == per_seg
        assert len(spool) == 0
