"""Batches written from the event loop: group commit, read-your-writes, and a failing write.

The common ``send_steps`` batch is checked on the collector's event loop and its write is
queued for the SQLite writer thread, which commits whatever queued up meanwhile in one
transaction; the answer is sent once that transaction is committed, or once the batch is in
the ingest journal (the default). These tests use a real collector process on loopback and
its real SQLite file: many concurrent batches all stored and readable as soon as they are
answered, and, without the journal, a write made to fail for real (a SQLite trigger added to
the collector's database by another connection) answered with a 500 that says so, while the
batches committed beside it are stored and the next ones go through.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
from literalai.api.helpers.gql import steps_query_builder, steps_variables_builder

from agent.testing import CollectorProcess

KEY = "deferred-key"
HEADERS = {"x-api-key": KEY}


def _body(prefix: str, count: int, name: str = "ok") -> bytes:
    steps: list[dict[str, Any]] = [
        {"id": f"{prefix}-{i}", "threadId": f"{prefix}-t", "type": "tool", "name": name,
         "input": {"i": i}, "tags": ["t"]}
        for i in range(count)
    ]  # fmt: skip
    query, variables = steps_query_builder(steps), steps_variables_builder(steps)
    return json.dumps({"query": query, "variables": variables}).encode()


def refuse_boom_steps(db_path: Path) -> None:
    """Make a write fail for real: another connection adds a trigger to the collector's
    database that refuses every step named ``boom``."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON step WHEN NEW.name = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        )
        db.commit()


def accept_boom_steps(db_path: Path) -> None:
    """Undo :func:`refuse_boom_steps`."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.execute("DROP TRIGGER boom")
        db.commit()


def _count(client: httpx.Client, thread_id: str) -> int:
    query = "query($f: [stepsInputType!]) { steps(first: 0, filters: $f) { totalCount } }"
    filters = [{"field": "threadId", "operator": "eq", "value": thread_id}]
    answer = client.post("/api/graphql", json={"query": query, "variables": {"f": filters}})
    return int(answer.json()["data"]["steps"]["totalCount"])


def test_concurrent_batches_are_stored_and_readable_once_answered(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path, api_key=KEY) as proc:
        with httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30) as client:
            warm = client.post("/api/graphql", content=_body("warm", 20))  # caches the document
            assert warm.status_code == 200
        failures: list[str] = []

        def produce(worker: int) -> None:
            with httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30) as client:
                for n in range(10):
                    prefix = f"w{worker}-{n}"
                    answer = client.post("/api/graphql", content=_body(prefix, 20))
                    data = answer.json().get("data") or {}
                    if answer.status_code != 200 or not all(v["ok"] for v in data.values()):
                        failures.append(answer.text[:200])
                    elif _count(client, f"{prefix}-t") != 20:  # answered => committed
                        failures.append(f"{prefix}: answered before its steps were readable")

        threads = [threading.Thread(target=produce, args=(w,)) for w in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        with httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30) as client:
            total = client.post(
                "/api/graphql", json={"query": "{ steps(first: 0) { totalCount } }"}
            )
            assert total.json()["data"]["steps"]["totalCount"] == 20 + 12 * 10 * 20


#: The collector without its ingest journal: answers once committed (tests/test_collector_journal.py
#: covers the default, which answers once journaled).
NO_JOURNAL = {"LITERAL_AGENT_COLLECTOR_INGEST_JOURNAL": "false"}


def test_a_failing_write_is_answered_500_and_spares_the_others(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path, api_key=KEY, env=NO_JOURNAL) as proc:
        client = httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30)
        assert client.post("/api/graphql", content=_body("warm", 5)).status_code == 200
        refuse_boom_steps(tmp_path / "collector.db")
        results: dict[str, httpx.Response] = {}

        def send(prefix: str, name: str) -> None:
            with httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30) as mine:
                results[prefix] = mine.post("/api/graphql", content=_body(prefix, 5, name))

        threads = [threading.Thread(target=send, args=("bad", "boom"))] + [
            threading.Thread(target=send, args=(f"good{i}", "ok")) for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bad = results.pop("bad")
        assert bad.status_code == 500
        assert "refused by the test trigger" in bad.json()["message"]
        assert "retried" in bad.json()["message"]
        assert _count(client, "bad-t") == 0  # the failing batch left nothing behind
        for prefix, answer in results.items():
            assert answer.status_code == 200, answer.text
            assert _count(client, f"{prefix}-t") == 5
        accept_boom_steps(tmp_path / "collector.db")
        retry = client.post("/api/graphql", content=_body("bad", 5, "boom"))
        assert retry.status_code == 200
        assert all(v["ok"] for v in retry.json()["data"].values())
        assert _count(client, "bad-t") == 5
        client.close()


def test_a_failing_write_on_the_thread_path_is_answered_500_too(tmp_path: Path) -> None:
    """The first request of a document shape runs on a worker thread: same answer."""
    with CollectorProcess(tmp_path, api_key=KEY) as proc:
        refuse_boom_steps(tmp_path / "collector.db")
        with httpx.Client(base_url=proc.url, headers=HEADERS, timeout=30) as client:
            answer = client.post("/api/graphql", content=_body("first", 7, "boom"))
            assert answer.status_code == 500
            assert "refused by the test trigger" in answer.json()["message"]
            assert _count(client, "first-t") == 0


def test_which_requests_are_deferred(tmp_path: Path) -> None:
    """Only an SDK batch of an already prepared document whose steps all pass is deferred;
    its write is committed when the storage's writer calls back."""
    from agent.collector._graphql import GraphQLService
    from agent.collector._resolvers import RequestContext
    from agent.collector._sqlite import open_sqlite
    from agent.collector._storage import StorageError

    storage = open_sqlite(tmp_path)
    service = GraphQLService(storage)
    ctx = RequestContext(storage, "prod", "http://test", lambda key: key)
    try:
        assert service.handle_deferred(_body("a", 3), ctx) is None  # not prepared yet
        service.handle(_body("a", 3), ctx)
        deferred = service.handle_deferred(_body("b", 3), ctx)
        assert deferred is not None
        payload, submit = deferred
        assert all(v["ok"] for v in json.loads(payload)["data"].values())
        assert storage.get("step", ["b-0"]) == {}  # nothing written before submit
        done = threading.Event()
        errors: list[BaseException | None] = []
        submit(lambda error: (errors.append(error), done.set()))
        assert done.wait(10)
        assert errors == [None]
        assert storage.get("step", ["b-0"])["b-0"]["environment"] == "prod"
        bad = json.loads(_body("c", 3))
        bad["variables"]["startTime_1"] = "not a date"
        assert service.handle_deferred(json.dumps(bad).encode(), ctx) is None  # per-step path
        assert service.handle_deferred(b"{not json", ctx) is None
        query = json.dumps({"query": "{ steps(first: 1) { totalCount } }"}).encode()
        service.handle(query, ctx)
        assert service.handle_deferred(query, ctx) is None  # prepared, but not a batch
    finally:
        storage.close()
    try:
        storage.submit_columns([], "step", {"id": ["x"]}, lambda error: None)
    except StorageError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("submit_columns on a closed storage must raise StorageError")


def test_a_failing_callback_does_not_stop_the_writer(tmp_path: Path) -> None:
    """A callback that raises is logged; the writer goes on committing later writes."""
    from agent.collector._sqlite import open_sqlite

    storage = open_sqlite(tmp_path)
    try:

        def bad(error: BaseException | None) -> None:
            raise RuntimeError("callback bug")

        columns = {"id": ["s-1"], "name": ["one"]}
        storage.submit_columns([], "step", columns, bad)
        done = threading.Event()
        storage.submit_columns([], "step", {"id": ["s-2"], "name": ["two"]}, lambda e: done.set())
        assert done.wait(10)
        assert set(storage.get("step", ["s-1", "s-2"])) == {"s-1", "s-2"}
    finally:
        storage.close()


def test_one_call_decoding_stores_what_the_per_variable_path_stores(tmp_path: Path) -> None:
    """After its first deferred batch, a document's variables are decoded in one call into a
    struct laid out in that batch's key order: a later batch, in any key order and with
    variables left out or null, is stored exactly as the per-variable path stores it, and
    one the struct cannot take falls back to the thread (None)."""
    import random

    from agent.collector._graphql import GraphQLService
    from agent.collector._resolvers import RequestContext
    from agent.collector._sqlite import open_sqlite

    storage = open_sqlite(tmp_path)
    service = GraphQLService(storage)
    ctx = RequestContext(storage, "prod", "http://test", lambda key: key)

    def deferred(body: dict[str, Any]) -> bool:
        found = service.handle_deferred(json.dumps(body).encode(), ctx)
        if found is None:
            return False
        done = threading.Event()
        found[1](lambda error: done.set())
        assert done.wait(10)
        return True

    def stored(prefix: str) -> list[dict[str, Any]]:
        records = storage.get("step", [f"{prefix}-{i}" for i in range(4)])
        return [
            {k: v for k, v in records[f"{prefix}-{i}"].items() if k not in ("id", "createdAt")}
            for i in range(4)
        ]

    def batch(prefix: str, shuffle: bool) -> dict[str, Any]:
        body = json.loads(_body(prefix, 4))
        variables = body["variables"]
        variables["threadId_0"] = "shared-t"  # every step's thread is the same
        variables["threadId_1"] = variables["threadId_2"] = variables["threadId_3"] = "shared-t"
        variables["metadata_1"] = {"nested": [1, {"b": None}], "text": "é\n\u2028"}
        variables["output_2"] = None
        variables["startTime_3"] = "2024-05-01T12:34:56.123456Z"
        del variables["name_2"]  # absent: NULL, as null
        if shuffle:
            items = list(variables.items())
            random.Random(7).shuffle(items)
            body["variables"] = dict(items)
        return body

    try:
        service.handle(_body("prep", 4), ctx)  # prepares the document
        assert service.handle_deferred(_body("learn", 4), ctx) is not None  # learns the layout
        query = json.loads(_body("x", 4))["query"]
        prepared = service._cache.get(json.dumps(query).encode())  # keyed by its JSON text
        assert prepared is not None and prepared.plan is not None
        assert prepared.plan.layout  # the struct path is the one taken below
        json.loads(service.handle(json.dumps(batch("thread", False)).encode(), ctx))
        assert deferred(batch("struct", False))
        assert deferred(batch("shuffled", True))
        assert stored("struct") == stored("thread") == stored("shuffled")
        for broken in (
            {"id_0": None},  # a non-null variable given as null
            {"name_1": 5},  # a number where a string is expected
            {"generation_2": {"provider": "x"}},  # a nested object: per-step path
            {"tags_3": ["a", 1]},  # not a list of strings
        ):
            body = json.loads(_body("broken", 4))
            body["variables"].update(broken)
            assert not deferred(body), broken
        body = json.loads(_body("broken", 4))
        del body["variables"]["id_1"]  # a non-null variable left out
        assert not deferred(body)
        body["variables"] = None
        assert not deferred(body)
        assert storage.get("step", [f"broken-{i}" for i in range(4)]) == {}
    finally:
        storage.close()
