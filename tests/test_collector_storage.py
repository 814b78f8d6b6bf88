"""SQLite storage: migrations on an existing file, WAL, stable project, write semantics."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.collector._sqlite import SQLiteStorage, open_sqlite
from agent.collector._sqlite_schema import KINDS, MIGRATIONS, migrate, snake
from agent.collector._storage import ListQuery, StorageError, Write


def test_migrates_an_existing_older_database(tmp_path: Path) -> None:
    """A file at schema version 1 with data is brought to the latest version, data kept."""
    path = tmp_path / "collector.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute(
        "INSERT INTO step (id, created_at, name, input) VALUES (?, ?, ?, ?)",
        ("old", "2024-01-01T00:00:00Z", "n", '{"a": 1}'),
    )
    conn.close()
    storage = SQLiteStorage(path)
    try:
        with sqlite3.connect(path) as check:
            assert check.execute("SELECT version FROM schema_version").fetchone()[0] == len(
                MIGRATIONS
            )
            indexes = {
                r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            }
            assert "step_thread" in indexes
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert storage.get("step", ["old"])["old"]["input"] == {"a": 1}
    finally:
        storage.close()


def test_reopen_keeps_project_and_applies_nothing_twice(tmp_path: Path) -> None:
    """The project id is stored once; reopening does not re-run migrations."""
    first = open_sqlite(tmp_path)
    project = first.project_id
    first.close()
    second = open_sqlite(tmp_path)
    try:
        assert second.project_id == project
    finally:
        second.close()


def test_write_modes(tmp_path: Path) -> None:
    """merge keeps absent/None keys; insert_missing never overwrites; delete removes."""
    storage = open_sqlite(tmp_path)
    try:
        storage.write([Write("thread", [{"id": "t", "name": "a", "tags": ["x"]}])])
        created = storage.get("thread", ["t"])["t"]["createdAt"]
        storage.write([Write("thread", [{"id": "t", "name": None, "metadata": {"k": 1}}])])
        merged = storage.get("thread", ["t"])["t"]
        assert merged["name"] == "a" and merged["tags"] == ["x"] and merged["metadata"] == {"k": 1}
        assert merged["createdAt"] == created
        storage.write([Write("thread", [{"id": "t", "name": "other"}], "insert_missing")])
        assert storage.get("thread", ["t"])["t"]["name"] == "a"
        storage.write([Write("thread", [{"id": "t"}], "delete")])
        assert storage.get("thread", ["t"]) == {}
    finally:
        storage.close()


def test_failed_write_rolls_back_the_whole_transaction(tmp_path: Path) -> None:
    """If one group fails, none of the groups of that write is stored."""
    storage = open_sqlite(tmp_path)
    try:
        with pytest.raises(sqlite3.Error):
            storage.write(
                [Write("thread", [{"id": "kept?"}]), Write("thread", [{"name": "no id"}])]
            )
        assert storage.get("thread", ["kept?"]) == {}
    finally:
        storage.close()


def test_invalid_queries_raise_storage_error(tmp_path: Path) -> None:
    """Bad cursors, unknown fields and order columns are StorageError, not crashes."""
    storage = open_sqlite(tmp_path)
    try:
        with pytest.raises(StorageError, match="Invalid cursor"):
            storage.list("step", ListQuery(after="!!not-a-cursor"))
        with pytest.raises(StorageError, match="Cannot order step"):
            storage.list("step", ListQuery(order_column="name"))
        with pytest.raises(StorageError, match="Unknown key"):
            storage.find("step", "nope", ["x"])
    finally:
        storage.close()


def test_kinds_match_the_migrated_columns(tmp_path: Path) -> None:
    """KINDS (used to build SQL) describes exactly the columns the migrations create."""
    storage = open_sqlite(tmp_path)
    storage.close()
    with sqlite3.connect(tmp_path / "collector.db") as conn:
        for kind, columns in KINDS.items():
            actual = [r[1] for r in conn.execute(f"PRAGMA table_info({kind})")]
            assert actual == ["id", "created_at", *(snake(k) for k in columns)], kind


def test_group_commit_isolates_a_failing_write(tmp_path: Path) -> None:
    """Concurrent writes share transactions; one failing call does not undo the others."""
    import threading

    storage = open_sqlite(tmp_path)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        record = {"id": f"g-{i}"} if i != 7 else {"name": "no id"}
        try:
            storage.write([Write("thread", [record])])
        except Exception as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 1 and isinstance(errors[0], sqlite3.IntegrityError)
        stored = storage.get("thread", [f"g-{i}" for i in range(20)])
        assert sorted(stored) == sorted(f"g-{i}" for i in range(20) if i != 7)
    finally:
        storage.close()


def test_closed_storage_refuses_calls(tmp_path: Path) -> None:
    """After close(), writes and new reads raise StorageError instead of hanging."""
    storage = open_sqlite(tmp_path)
    storage.close()
    with pytest.raises(StorageError):
        storage.write([Write("thread", [{"id": "late"}])])
