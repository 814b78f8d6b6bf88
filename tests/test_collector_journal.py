"""The collector's ingest journal: answered once journaled, stored afterwards, never lost.

Everything here is real: journal files on disk, the SQLite database, the collector process
killed with SIGKILL, a writer held off by another connection's write lock, a database made
full with ``max_page_count``, a journal segment that is ``/dev/full`` (ENOSPC from the
kernel), a SQLite trigger that refuses a batch.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_collector_deferred import _body, _count, accept_boom_steps, refuse_boom_steps

from agent.collector import _sqlite
from agent.collector._journal import APPLIED_KEY, Journal, JournalError
from agent.collector._sqlite import SQLiteStorage, journal_dir_for, open_sqlite
from agent.collector._storage import StorageError, Write
from agent.testing import CollectorProcess

KEY = "journal-key"
HEADERS = {"x-api-key": KEY}


def _columns(prefix: str, count: int, name: str = "ok") -> dict[str, list[Any]]:
    return {
        "id": [f"{prefix}-{i}" for i in range(count)],
        "threadId": [f"{prefix}-t"] * count,
        "type": ["tool"] * count,
        "name": [name] * count,
        "input": [f'{{"i": {i}}}' for i in range(count)],
    }


def _submit(storage: SQLiteStorage, prefix: str, count: int, name: str = "ok") -> list[Any]:
    """Queue one batch; returns the list its callback fills."""
    answers: list[Any] = []
    thread = [Write("thread", [{"id": f"{prefix}-t"}], "insert_missing")]
    storage.submit_columns(thread, "step", _columns(prefix, count, name), answers.append)
    return answers


def _database_full(storage: SQLiteStorage, full: bool) -> None:
    """SQLITE_FULL for real: the writer's own connection may not grow the file any more."""
    with storage._conn_lock:
        pages = storage._write_conn.execute("PRAGMA page_count").fetchone()[0]
        limit = pages if full else 1073741823
        storage._write_conn.execute(f"PRAGMA max_page_count = {limit}")


class _WriteLock:
    """Another connection holding the database's write lock: the writer waits behind it."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> _WriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


# -- the journal files --------------------------------------------------------------------


def test_records_replay_in_order_after_the_applied_mark(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    assert list(journal.replay(0)) == []
    seqs = [journal.append(f"record {i}".encode())[0] for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    journal.close()
    again = Journal(tmp_path / "j")
    assert [(s, p) for s, p, _ in again.replay(2)] == [(3, b"record 2"), (4, b"record 3"),
                                                       (5, b"record 4")]  # fmt: skip
    assert again.append(b"next")[0] == 6  # numbering goes on after the last record
    again.close()


def test_numbering_never_goes_back_below_the_applied_mark(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    list(journal.replay(41))  # the database says 41 applied; the journal is empty
    assert journal.append(b"x")[0] == 42
    journal.close()


def test_a_torn_tail_is_cut_off_and_the_records_before_it_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(b"first")
    _, location = journal.append(b"second")
    journal.close()
    with location.segment.open("ab") as file:  # a record cut short by a crash mid-append
        file.write(b"\x40\x00\x00\x00garbage")
    size = location.segment.stat().st_size
    again = Journal(tmp_path / "j")
    assert [p for _, p, _ in again.replay(0)] == [b"first", b"second"]
    assert location.segment.stat().st_size < size  # cut at the end of "second"
    assert again.append(b"third")[0] == 3
    again.close()
    third = Journal(tmp_path / "j")
    assert [p for _, p, _ in third.replay(0)] == [b"first", b"second", b"third"]
    third.close()


def test_a_corrupt_record_ends_the_replay_there(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(b"good")
    _, location = journal.append(b"flipped")
    journal.close()
    with location.segment.open("r+b") as file:  # one bit flipped in the payload
        file.seek(location.offset)
        file.write(b"F")
    again = Journal(tmp_path / "j")
    assert [p for _, p, _ in again.replay(0)] == [b"good"]
    again.close()


def test_segments_rotate_and_applied_ones_are_deleted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", segment_bytes=50)
    for i in range(10):
        journal.append(b"x" * 60 + bytes([i]))
    segments = sorted((tmp_path / "j").glob("*.journal"))
    assert len(segments) == 10  # 77-byte records, 50-byte segments: one record each
    journal.release(4)
    left = sorted((tmp_path / "j").glob("*.journal"))
    assert [p.name for p in left] == [p.name for p in segments[4:]]
    journal.release(10)
    assert len(list((tmp_path / "j").glob("*.journal"))) == 1  # the current one stays
    journal.close()


def test_one_process_per_journal_and_tight_permissions(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    _, location = journal.append(b"secret")
    with pytest.raises(JournalError, match="in use by another collector"):
        Journal(tmp_path / "j")
    assert stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700
    assert stat.S_IMODE(location.segment.stat().st_mode) == 0o600
    journal.close()
    Journal(tmp_path / "j").close()  # released with the first


# -- the storage: answered once journaled, stored in order -----------------------------------


def test_journaled_batch_is_answered_at_once_and_read_after_it(tmp_path: Path) -> None:
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        with _WriteLock(tmp_path / "collector.db"):
            answers = _submit(storage, "a", 3)
            assert answers == [None]  # answered while the writer cannot commit
            stats = storage.ingest_journal_stats()
            assert stats is not None and stats["acknowledged"] == 1 and stats["stored"] == 0
        # a read started after the answer waits for the commit
        assert sorted(storage.get("step", [f"a-{i}" for i in range(3)])) == ["a-0", "a-1", "a-2"]
        stats = storage.ingest_journal_stats()
        assert stats is not None and stats["stored"] == 1 and stats["pendingRecords"] == 0
    finally:
        storage.close()


def test_a_later_synchronous_write_wins_over_an_earlier_journaled_batch(tmp_path: Path) -> None:
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        with _WriteLock(tmp_path / "collector.db") as lock:
            _submit(storage, "s", 1, name="from the batch")
            done = threading.Event()

            def update() -> None:
                storage.write([Write("step", [{"id": "s-0", "name": "updated after"}])])
                done.set()

            thread = threading.Thread(target=update)
            thread.start()
            time.sleep(0.2)
            assert not done.is_set()  # waits for the journaled batch before it
            lock.conn.execute("ROLLBACK")
            lock.conn.execute("BEGIN")  # (the context manager rolls back again)
        thread.join(10)
        assert storage.get("step", ["s-0"])["s-0"]["name"] == "updated after"
    finally:
        storage.close()


def test_answered_batches_are_stored_at_the_next_start(tmp_path: Path) -> None:
    """The process cannot be killed in a test of its own storage: a child process answers
    batches while another connection keeps its writer from committing, and is killed."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_collector_journal import _submit
from agent.collector._sqlite import open_sqlite
storage = open_sqlite({str(tmp_path)!r}, ingest_journal=True)
print("open", flush=True)
sys.stdin.readline()
for n in range(4):
    assert _submit(storage, f"k{{n}}", 50) == [None]
print("answered", flush=True)
sys.stdin.readline()
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "open"
        with _WriteLock(tmp_path / "collector.db"):
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "answered"
            child.send_signal(signal.SIGKILL)
            child.wait()
    finally:
        child.kill()
        child.wait()
    segments = list(journal_dir_for(tmp_path / "collector.db").glob("*.journal"))
    assert segments and segments[0].stat().st_size > 4 * 50 * 30  # the four batches
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        for n in range(4):
            assert len(storage.get("step", [f"k{n}-{i}" for i in range(50)])) == 50
        assert int(storage.setting(APPLIED_KEY, "0")) == 4
        assert list(journal_dir_for(tmp_path / "collector.db").glob("*.journal")) == []
    finally:
        storage.close()


def test_a_full_database_keeps_the_batch_and_retries_it(tmp_path: Path) -> None:
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        _database_full(storage, True)
        answers = _submit(storage, "full", 200)
        assert answers == [None]
        time.sleep(0.3)  # a few attempts fail meanwhile
        stats = storage.ingest_journal_stats()
        assert stats is not None and stats["stored"] == 0 and stats["acknowledged"] == 1
        _database_full(storage, False)
        assert len(storage.get("step", [f"full-{i}" for i in range(200)])) == 200
        assert storage.dead_letters == 0
    finally:
        storage.close()


def test_a_refused_batch_goes_to_the_dead_letter_folder(tmp_path: Path) -> None:
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        refuse_boom_steps(tmp_path / "collector.db")
        with _WriteLock(tmp_path / "collector.db"):  # queued behind the lock
            assert _submit(storage, "before", 2) == [None]
            assert _submit(storage, "bad", 2, name="boom") == [None]
            assert _submit(storage, "after", 2) == [None]
        assert len(storage.get("step", ["before-0", "before-1", "after-0", "after-1"])) == 4
        assert storage.get("step", ["bad-0", "bad-1"]) == {}
        assert storage.dead_letters == 1
        letters = list((journal_dir_for(tmp_path / "collector.db") / "dead-letter").iterdir())
        assert [p.name for p in letters] == ["00000000000000000002.json"]
        assert stat.S_IMODE(letters[0].stat().st_mode) == 0o600
        letter = json.loads(letters[0].read_text())
        assert "refused by the test trigger" in letter["error"]
        assert [r["id"] for r in letter["records"]] == ["bad-0", "bad-1"]
        assert letter["records"][0]["input"] == '{"i": 0}'  # the client's JSON text, kept
        stats = storage.ingest_journal_stats()
        assert stats is not None and stats["stored"] == 3 and stats["deadLetters"] == 1
    finally:
        storage.close()


def test_past_the_pending_cap_batches_wait_for_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite, "MAX_JOURNAL_PENDING", 25)
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        with _WriteLock(tmp_path / "collector.db"):
            first = _submit(storage, "p1", 10)  # 11 records pending (10 steps + 1 thread)
            second = _submit(storage, "p2", 10)  # 22
            third = _submit(storage, "p3", 10)  # 33: over the cap
            assert first == [None] and second == [None]
            time.sleep(0.2)
            assert third == []  # not answered while the records before it wait
        deadline = time.monotonic() + 10
        while not third and time.monotonic() < deadline:
            time.sleep(0.01)
        assert third == [None]
    finally:
        storage.close()


def test_a_read_gives_up_when_the_journal_cannot_be_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite, "JOURNAL_BARRIER_SECONDS", 0.3)
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        _database_full(storage, True)
        _submit(storage, "stuck", 100)
        with pytest.raises(StorageError, match=r"still not stored after 0\.3 s"):
            storage.get("step", ["stuck-0"])
        _database_full(storage, False)
        assert "stuck-0" in storage.get("step", ["stuck-0"])
    finally:
        storage.close()


def test_a_second_storage_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    storage = open_sqlite(tmp_path, ingest_journal=True)
    try:
        with pytest.raises(JournalError, match="in use by another collector"):
            open_sqlite(tmp_path, ingest_journal=True)
    finally:
        storage.close()


# -- the collector process -------------------------------------------------------------------


def test_collector_killed_after_answering_stores_every_answered_batch(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path, api_key=KEY) as proc:
        client = httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30)
        # the first request of a document shape is written synchronously: same shape first
        assert client.post("/api/graphql", content=_body("warm", 40)).status_code == 200
        with _WriteLock(tmp_path / "collector.db"):
            for n in range(5):
                answer = client.post("/api/graphql", content=_body(f"kill{n}", 40))
                assert answer.status_code == 200
                assert all(v["ok"] for v in answer.json()["data"].values())
            health = client.get("/health").json()["ingestJournal"]
            assert health["acknowledged"] >= 5 and health["stored"] < health["acknowledged"]
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
            proc.stop()
        client.close()
        segment = sorted(journal_dir_for(tmp_path / "collector.db").glob("*.journal"))[-1]
        with segment.open("ab") as file:  # and the crash tore an append in two
            file.write(b"\xff\x00\x00\x00\x12\x34")
        proc.start()
        with httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30) as client:
            for n in range(5):
                assert _count(client, f"kill{n}-t") == 40
            assert _count(client, "warm-t") == 40
            health = client.get("/health").json()["ingestJournal"]
            assert health["stored"] == health["acknowledged"] and health["deadLetters"] == 0
    log = (tmp_path / "collector.log").read_text()
    assert "stored batches acknowledged before the last stop" in log
    assert "cut off a torn record" in log


def test_collector_answers_500_when_the_journal_cannot_be_written(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path, api_key=KEY) as proc:
        client = httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30)
        # the first request of a document shape is written synchronously, not journaled
        assert client.post("/api/graphql", content=_body("first", 5)).status_code == 200
        journal = journal_dir_for(tmp_path / "collector.db")
        segment = journal / f"{1:020d}.journal"
        assert not segment.exists()
        segment.symlink_to("/dev/full")  # the next append: ENOSPC from the kernel
        answer = client.post("/api/graphql", content=_body("full", 5))
        assert answer.status_code == 500
        message = answer.json()["message"]
        assert "No space left on device" in message and "can be retried" in message
        segment.unlink()
        assert _count(client, "full-t") == 0  # nothing half-kept
        retry = client.post("/api/graphql", content=_body("full", 5))
        assert retry.status_code == 200
        assert _count(client, "full-t") == 5
        client.close()


def test_collector_keeps_a_refused_batch_in_the_dead_letter_folder(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path, api_key=KEY) as proc:
        client = httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30)
        assert client.post("/api/graphql", content=_body("warm", 5)).status_code == 200
        refuse_boom_steps(tmp_path / "collector.db")
        bad = client.post("/api/graphql", content=_body("bad", 5, "boom"))
        good = client.post("/api/graphql", content=_body("good", 5))
        assert bad.status_code == 200 and good.status_code == 200  # answered once journaled
        assert _count(client, "good-t") == 5
        assert _count(client, "bad-t") == 0
        assert client.get("/health").json()["ingestJournal"]["deadLetters"] == 1
        letters = list((journal_dir_for(tmp_path / "collector.db") / "dead-letter").iterdir())
        assert len(letters) == 1
        letter = json.loads(letters[0].read_text())
        assert sorted(r["id"] for r in letter["records"]) == [f"bad-{i}" for i in range(5)]
        client.close()
        busy = _replay_command(tmp_path)  # the running collector holds the journal
        assert busy.returncode != 0 and "in use by another collector process" in busy.stderr
    log = (tmp_path / "collector.log").read_text()
    assert "moved to the dead-letter folder" in log and "refused by the test trigger" in log
    assert KEY not in log
    again = _replay_command(tmp_path)  # the cause is still there: refused again, kept
    assert again.returncode == 1 and "refused by the test trigger" in again.stderr
    assert letters[0].exists()
    accept_boom_steps(tmp_path / "collector.db")  # the cause fixed
    replayed = _replay_command(tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert "1 dead-letter batches stored, 0 refused" in replayed.stdout
    assert not letters[0].exists() and (letters[0].parent / "replayed" / letters[0].name).exists()
    storage = open_sqlite(tmp_path)
    try:
        stored = storage.get("step", [f"bad-{i}" for i in range(5)])
        assert len(stored) == 5 and stored["bad-0"]["input"] == {"i": 0}
    finally:
        storage.close()


def _replay_command(data_dir: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agent", "collector", "--data-dir", str(data_dir),
            "--replay-dead-letters"]  # fmt: skip
    env = {**os.environ, "LITERAL_AGENT_COLLECTOR_API_KEYS": KEY}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
