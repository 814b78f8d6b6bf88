"""SQLite ingest writes: multi-row statements and group commit store exactly like row-at-a-time.

The writer applies a group of records as a few multi-row ``INSERT ... VALUES (..), (..)``
statements (chunks of 256 rows, then a multiple of 4, 2 and 1). These tests compare the
stored rows, in insertion order, with the same records written one per ``write`` call, over
sizes that cross the chunk boundaries and with repeated ids inside and across chunks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent.collector import _sqlite
from agent.collector._sqlite import SQLiteStorage, _chunk_sizes, _Job, open_sqlite
from agent.collector._storage import JsonText, ListQuery, Record, StorageError, Write


def _records(count: int, prefix: str) -> list[Record]:
    """Steps with varied keys, JSON values as text and decoded, and repeated ids."""
    out: list[Record] = []
    for i in range(count):
        step_id = f"{prefix}-{i % max(1, count - 7)}"  # the last 7 repeat earlier ids
        record: Record = {"id": step_id, "name": f"n{i}" if i % 3 else None}
        if i % 2:
            record["input"] = JsonText(f'{{"i": {i}}}')
        else:
            record["metadata"] = {"i": i, "tags": ["a"]}
        if i % 5 == 0:
            record["tags"] = ["t", str(i)]
            record["threadId"] = f"{prefix}-thread-{i % 4}"
        out.append(record)
    return out


def _rows(storage: SQLiteStorage, kind: Any) -> list[Record]:
    """Every row of ``kind`` in insertion order, without the write-time ``createdAt``."""
    page = storage.list(kind, ListQuery(descending=False, first=1000))
    return [{k: v for k, v in r.items() if k != "createdAt"} for r in page.items]


@pytest.mark.parametrize("count", [1, 3, 100, 255, 256, 257, 600])
def test_multi_row_writes_match_row_at_a_time(tmp_path: Path, count: int) -> None:
    """One write of ``count`` records stores what ``count`` one-record writes store."""
    records = _records(count, "s")
    threads = [{"id": f"s-thread-{i % 4}", "name": f"th{i}"} for i in range(count)]
    batched = open_sqlite(tmp_path / "batched")
    single = open_sqlite(tmp_path / "single")
    try:
        batched.write(
            [
                Write("thread", [dict(t) for t in threads], "insert_missing"),
                Write("step", [dict(r) for r in records]),
            ]
        )
        for thread in threads:
            single.write([Write("thread", [dict(thread)], "insert_missing")])
        for record in records:
            single.write([Write("step", [dict(record)])])
        assert _rows(batched, "step") == _rows(single, "step")
        assert _rows(batched, "thread") == _rows(single, "thread")
        assert len(_rows(batched, "step")) == len({r["id"] for r in records})
    finally:
        batched.close()
        single.close()


def test_chunk_sizes_cover_every_row_with_few_statement_shapes() -> None:
    """Chunks are contiguous, cover every row, and use 66 distinct sizes (multiples of 4 up
    to 256, then 2 and 1); at most one chunk is not a full one of 256 or a 2 or a 1."""
    shapes: set[int] = set()
    for total in range(0, 1200):
        chunks = list(_chunk_sizes(total, 256))
        assert sum(size for _, size in chunks) == total
        assert all(start == sum(s for _, s in chunks[:i]) for i, (start, _) in enumerate(chunks))
        assert len([s for _, s in chunks if s not in (256, 2, 1)]) <= 1
        assert len(chunks) <= total // 256 + 3
        shapes.update(size for _, size in chunks)
    assert shapes == {1, 2, *range(4, 257, 4)}


def test_failing_write_in_a_group_fails_alone(tmp_path: Path) -> None:
    """Writes committed in one group transaction: a failing one is rolled back alone."""
    storage = open_sqlite(tmp_path / "group")
    release = threading.Event()
    started = threading.Event()

    def hold(conn: Any) -> None:
        started.set()
        release.wait(10)

    errors: dict[str, BaseException] = {}

    def write(name: str, writes: list[Write]) -> None:
        try:
            storage.write(writes)
        except Exception as exc:
            errors[name] = exc

    try:
        held = _Job(hold, 1)
        storage._jobs.put(held)  # the writer thread runs it, holding the write connection
        assert started.wait(10)
        calls = [
            ("good", [Write("step", [{"id": "g1"}, {"id": "g2", "name": "x"}])]),
            ("bad", [Write("step", [{"id": "b1"}]), Write("step", [{"name": "no id"}])]),
            ("good2", [Write("thread", [{"id": "t1"}], "insert_missing")]),
        ]
        writers = [threading.Thread(target=write, args=call) for call in calls]
        for thread in writers:
            thread.start()
        while storage._jobs.qsize() < 3:  # all three queued behind the held transaction
            threading.Event().wait(0.01)
        release.set()
        for thread in writers:
            thread.join(10)
        assert held.done.wait(10) and held.error is None
        assert set(errors) == {"bad"}
        assert set(storage.get("step", ["g1", "g2", "b1"])) == {"g1", "g2"}
        assert set(storage.get("thread", ["t1"])) == {"t1"}
    finally:
        release.set()
        storage.close()


def test_failing_single_write_leaves_store_usable(tmp_path: Path) -> None:
    """A write alone in its transaction (no savepoint) rolls back whole; later writes work."""
    storage = open_sqlite(tmp_path / "single")
    try:
        with pytest.raises(Exception):  # noqa: B017 - sqlite3.IntegrityError
            storage.write([Write("step", [{"id": "a"}, {"name": "no id"}])])
        assert storage.get("step", ["a"]) == {}
        storage.write([Write("step", [{"id": "a", "name": "ok"}])])
        assert storage.get("step", ["a"])["a"]["name"] == "ok"
    finally:
        storage.close()


def _column_batches() -> list[dict[str, list[Any]]]:
    """Column-wise step batches: columns missing, all NULL, partly NULL, repeated ids."""
    return [
        {
            "id": ["w-0", "w-1", "w-2"],
            "threadId": ["t", "t", None],
            "parentId": [None, None, None],  # all NULL: left out of the statement
            "name": ["a", None, "c"],
            "input": ['{"x": 1}', None, '"s"'],
            "tags": ['["a"]', '["b"]', None],
            "environment": ["prod", "prod", "prod"],
        },
        {  # later partial steps: what they leave out (or send as null) is kept
            "id": ["w-0", "w-2", "w-3", "w-3"],
            "parentId": ["w-1", None, None, None],
            "name": [None, None, None, None],
            "endTime": [None, "2024-05-01T10:00:00.000000Z", None, "2024-05-01T10:00:01.0Z"],
            "output": ['{"done": true}', None, "[1, 2]", None],
            "metadata": [None, None, None, None],
            "environment": ["dev", "dev", "dev", "dev"],
        },
        {"id": ["w-9"], "createdAt": [None]},  # only the id
    ]


def test_write_columns_matches_record_writes(tmp_path: Path) -> None:
    """write_columns (NULL-only columns left out of its statements) stores what write() of
    the same records stores, merges included, across chunk-size statements."""
    columns_store = open_sqlite(tmp_path / "columns")
    records_store = open_sqlite(tmp_path / "records")
    try:
        for batch in _column_batches():
            count = len(batch["id"])
            thread = [Write("thread", [{"id": "t", "name": "n"}], "insert_missing")]
            columns_store.write_columns(thread, "step", batch)
            records = [{k: v[i] for k, v in batch.items()} for i in range(count)]
            for record in records:
                for key in ("input", "output", "tags", "metadata"):
                    if record.get(key) is not None:
                        record[key] = JsonText(record[key])
            records_store.write([*thread, Write("step", records)])
        assert _rows(columns_store, "step") == _rows(records_store, "step")
        assert _rows(columns_store, "thread") == _rows(records_store, "thread")
        w0 = columns_store.get("step", ["w-0"])["w-0"]
        assert (w0["name"], w0["input"], w0["parentId"], w0["output"]) == (
            "a",
            {"x": 1},
            "w-1",
            {"done": True},
        )
        big = {"id": [f"b-{i}" for i in range(300)], "name": [None] * 299 + ["last"]}
        columns_store.write_columns([], "step", big)
        records_store.write([Write("step", [{"id": i} for i in big["id"][:-1]])])
        records_store.write([Write("step", [{"id": "b-299", "name": "last"}])])
        assert _rows(columns_store, "step") == _rows(records_store, "step")
    finally:
        columns_store.close()
        records_store.close()


def test_concurrent_writes_inline_or_grouped_all_commit(tmp_path: Path) -> None:
    """Writes from many threads, committed in the calling thread when the writer is idle and
    group-committed by the writer otherwise, are all stored; a failing one fails alone."""
    storage = open_sqlite(tmp_path / "concurrent")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        for i in range(40):
            records: list[Record] = [{"id": f"c-{n}-{i}-{j}", "name": str(j)} for j in range(5)]
            try:
                storage.write([Write("step", records), Write("step", [{"id": "shared"}])])
                if i % 13 == 0:
                    storage.write([Write("step", [{"id": f"x-{n}-{i}"}, {"name": "no id"}])])
            except Exception as exc:
                errors.append(exc)

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(errors) == 8 * 4  # exactly the failing writes (i = 0, 13, 26, 39)
        ids = [f"c-{n}-{i}-{j}" for n in range(8) for i in range(40) for j in range(5)]
        assert len(storage.get("step", [*ids, "shared"])) == len(ids) + 1
        failed = [f"x-{n}-{i}" for n in range(8) for i in (0, 13, 26, 39)]
        assert storage.get("step", failed) == {}
    finally:
        storage.close()
    with pytest.raises(StorageError):
        storage.write([Write("step", [{"id": "after close"}])])


def test_checkpointer_bounds_the_wal_under_continuous_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints run off the committing threads (wal_autocheckpoint=0) and still keep the
    WAL small while a writer commits back to back and a reader reads: the WAL is copied into
    the database file and started over, and every record stays readable, also after reopening."""
    monkeypatch.setattr(_sqlite, "CHECKPOINT_RECORDS", 500)
    path = tmp_path / "ckpt" / "collector.db"
    storage = SQLiteStorage(path)
    payload = "x" * 1000
    batches, size = 100, 500
    done = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not done.wait(0.001):
            seen.append(storage.list("step", ListQuery(first=0)).total)

    reading = threading.Thread(target=reader)
    reading.start()
    wal = path.with_name("collector.db-wal")
    wal_sizes: list[int] = []
    try:
        conn = storage._write_conn
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for b in range(batches):
            records: list[Record] = [
                {"id": f"s-{b}-{i}", "input": {"text": payload}} for i in range(size)
            ]
            storage.write([Write("step", records)])
            wal_sizes.append(wal.stat().st_size)
        done.set()
        reading.join(30)
        data_bytes = batches * size * len(payload)
        assert path.stat().st_size > data_bytes // 2  # copied into the database file
        # not one ever-growing WAL (~1.2 data_bytes): a cycle is ~1/20 of data_bytes, and a
        # reader may make a restart wait a few cycles (up to ~2/5 seen on an overloaded box)
        assert max(wal_sizes) < data_bytes // 2
        assert seen == sorted(seen)  # readers saw only whole commits, in order
        assert storage.list("step", ListQuery(first=0)).total == batches * size
    finally:
        done.set()
        storage.close()
    reopened = SQLiteStorage(path)
    try:
        assert reopened.list("step", ListQuery(first=0)).total == batches * size
        assert reopened.get("step", ["s-99-499"])["s-99-499"]["input"] == {"text": payload}
    finally:
        reopened.close()
