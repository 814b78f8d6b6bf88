"""The column-wise ``send_steps`` path into SQLite stores and answers like the general paths.

A plain ``AddStep`` batch is written by ``SQLiteStorage.write_columns`` (no record dicts,
JSON kept as the client's text). The same request sequence, decoded from SDK-built HTTP
bodies, goes through three services over real SQLite files: the column writer, the column
path with step records (a storage without ``write_columns``, as PostgreSQL), and
graphql-core execution. Answers, stored values, thread stamping, insertion order and
``createdAt`` stability under merges must be identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from literalai.api.helpers.gql import steps_query_builder, steps_variables_builder

from agent.collector._graphql import GraphQLService
from agent.collector._resolvers import RequestContext
from agent.collector._sqlite import SQLiteStorage, open_sqlite
from agent.collector._storage import ListQuery

FIRST: list[dict[str, Any]] = [
    {
        "id": "c-0",
        "type": "run",
        "threadId": "t-a",
        "name": "root ✓",
        "startTime": "2024-05-01T12:00:00+02:00",
        "endTime": "2024-05-01T10:00:01Z",
        "input": {"content": 'héllo "q" \\ \n', "n": [1, 2.5, None]},
        "output": {"content": "x" * 700},
        "metadata": {"deep": {"a": [{"b": None}]}},
        "tags": ["a", "b"],
    },
    {"id": "c-1", "parentId": "c-0", "rootRunId": "c-0", "type": "tool", "threadId": "t-a"},
    {"id": "c-2", "threadId": "t-b", "metadata": {"k": [1, None]}, "output": None, "tags": []},
    {"id": "c-3", "error": "boom", "name": "", "input": "plain string", "output": 42},
    {"id": "c-1", "name": "same id again", "endTime": "2024-05-01T10:00:02.5Z"},
]
# A later partial step merges into the stored row; a new step; an id repeated in the batch.
SECOND: list[dict[str, Any]] = [
    {"id": "c-0", "endTime": "2024-05-01T10:00:09.000001Z", "output": {"done": True}},
    {"id": "c-2", "threadId": "t-b", "tags": ["late"], "metadata": None},
    {"id": "c-4", "threadId": "t-c", "type": "llm", "startTime": "2024-05-01T10:00:00"},
    {"id": "c-4", "error": "second"},
]
# One invalid step: the whole batch goes through the per-step path (per-step verdicts).
THIRD: list[dict[str, Any]] = [
    {"id": "c-5", "threadId": "t-c", "type": "tool"},
    {"id": "c-6", "type": "tool", "startTime": "not a date"},
]
IDS = [f"c-{i}" for i in range(7)]
THREADS = ["t-a", "t-b", "t-c"]


class _RecordsOnly:
    """The SQLite storage seen without ``write_columns`` (the path other storages take)."""

    def __init__(self, inner: SQLiteStorage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "write_columns":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _body(steps: list[dict[str, Any]]) -> bytes:
    query = steps_query_builder(steps)
    return json.dumps({"query": query, "variables": steps_variables_builder(steps)}).encode()


def _run(tmp_path: Path, mode: str) -> dict[str, Any]:
    storage = open_sqlite(tmp_path / mode)
    column_writes: list[int] = []
    write_columns = storage.write_columns

    def counted(*args: Any) -> None:
        column_writes.append(len(args[2]["id"]))
        write_columns(*args)

    storage.write_columns = counted  # type: ignore[method-assign,assignment]
    view: Any = _RecordsOnly(storage) if mode == "records" else storage
    service = GraphQLService(view, fast_paths=mode != "graphql-core")
    ctx = RequestContext(view, "staging", "http://x", lambda key: key)
    try:
        answers = [json.loads(service.handle(_body(FIRST), ctx))]
        created = {k: r["createdAt"] for k, r in storage.get("step", IDS).items()}
        answers += [json.loads(service.handle(_body(b), ctx)) for b in (SECOND, THIRD)]
        steps = storage.get("step", IDS)
        assert all(steps[k]["createdAt"] == created[k] for k in created), "createdAt changed"
        order = storage.list("step", ListQuery(descending=False, first=100)).items
        return {
            "answers": answers,
            "steps": {
                k: {f: v for f, v in r.items() if f != "createdAt"} for k, r in steps.items()
            },
            "threads": {k: r["environment"] for k, r in storage.get("thread", THREADS).items()},
            "order": [r["id"] for r in order],
            "column_writes": column_writes,
        }
    finally:
        storage.close()


def test_column_writer_matches_records_and_graphql_core(tmp_path: Path) -> None:
    """SQLite's column writer, the record path and graphql-core store and answer the same."""
    columns = _run(tmp_path, "columns")
    records = _run(tmp_path, "records")
    core = _run(tmp_path, "graphql-core")
    assert columns.pop("column_writes") == [5, 4]  # the first two batches, column-wise
    assert records.pop("column_writes") == core.pop("column_writes") == []
    assert columns == records == core
    first, second, third = columns["answers"]
    ok = {"ok": True, "message": None}
    assert list(first["data"].values()) == [ok] * 5 and list(second["data"].values()) == [ok] * 4
    assert third["data"]["step0"] == ok and third["data"]["step1"]["ok"] is False
    steps = columns["steps"]
    assert set(steps) == {"c-0", "c-1", "c-2", "c-3", "c-4", "c-5"}
    assert steps["c-0"]["startTime"] == "2024-05-01T10:00:00.000000Z"
    assert steps["c-0"]["endTime"] == "2024-05-01T10:00:09.000001Z"
    assert steps["c-0"]["input"] == FIRST[0]["input"] and steps["c-0"]["output"] == {"done": True}
    assert steps["c-1"]["name"] == "same id again" and steps["c-1"]["type"] == "tool"
    assert steps["c-2"]["tags"] == ["late"] and steps["c-2"]["metadata"] == {"k": [1, None]}
    assert steps["c-3"]["input"] == "plain string" and steps["c-3"]["output"] == 42
    assert steps["c-4"]["error"] == "second" and steps["c-4"]["type"] == "llm"
    assert all(step["environment"] == "staging" for step in steps.values())
    assert columns["threads"] == {"t-a": "staging", "t-b": "staging", "t-c": "staging"}
    assert columns["order"] == ["c-0", "c-1", "c-2", "c-3", "c-4", "c-5"]
