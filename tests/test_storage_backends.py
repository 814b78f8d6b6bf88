"""Storage conformance: the same tests on SQLite and PostgreSQL (``storage`` is parametrised).

PostgreSQL runs need ``LITERAL_TEST_POSTGRES_URL`` (``.ci/run`` starts a throwaway server and
sets it); each test gets a fresh database on that server, dropped afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.collector._backends import open_storage
from agent.collector._sqlite import open_sqlite
from agent.collector._storage import (
    Filter,
    JsonText,
    ListQuery,
    Storage,
    StorageError,
    Write,
)
from agent.testing import ENV_TEST_POSTGRES_URL, pg_database

PG_URL = os.environ.get(ENV_TEST_POSTGRES_URL)
PG_SKIP = "LITERAL_TEST_POSTGRES_URL not set: run via .ci/run"
needs_pg = pytest.mark.skipif(not PG_URL, reason=PG_SKIP)


Opener = Callable[[], Storage]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=needs_pg),
    ]
)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new handle on one store (same database each call); closes them all at the end."""
    opened: list[Storage] = []
    with _location(request.param) as url:

        def open_one() -> Storage:
            storage = open_storage(url, tmp_path)
            opened.append(storage)
            return storage

        try:
            yield open_one
        finally:
            for storage in opened:
                storage.close()


@contextmanager
def _location(backend: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
    else:
        with pg_database() as url:
            yield url


@pytest.fixture
def storage(opener: Opener) -> Storage:
    """One open storage (SQLite in ``tmp_path`` or a fresh PostgreSQL database)."""
    return opener()


T0 = "2024-01-01T00:00:0{}.000000Z"


def _ids(storage: Storage, kind: Any, *filters: Filter, **query: Any) -> list[str]:
    page = storage.list(kind, ListQuery(filters=filters, **query))
    return [r["id"] for r in page.items]


# -- project, settings ---------------------------------------------------------------------


def test_project_and_settings_are_stable_across_reopen(opener: Opener) -> None:
    """The project id and settings are created once and read back after reopening."""
    first = opener()
    project = first.project_id
    assert project.startswith("project-")
    assert first.setting("secret", "a") == "a"
    assert first.setting("secret", "b") == "a"
    first.close()
    second = opener()
    assert second.project_id == project
    assert second.setting("secret", "c") == "a"


def test_delete_settings_by_key_range(storage: Storage) -> None:
    """Only the keys in [low, high) go; the others stay (and a re-set key starts afresh)."""
    for key in ("mark:001:x", "mark:002:y", "mark:003:z", "marl", "secret"):
        storage.setting(key, key.upper())
    assert storage.delete_settings("mark:", "mark:003") == 2
    assert storage.delete_settings("mark:", "mark:003") == 0
    assert storage.setting("mark:003:z", "new") == "MARK:003:Z"
    assert storage.setting("marl", "new") == "MARL"
    assert storage.setting("secret", "new") == "SECRET"
    assert storage.setting("mark:001:x", "new") == "new"


# -- write modes ------------------------------------------------------------------------------


def test_merge_keeps_absent_and_none_keys_and_created_at(storage: Storage) -> None:
    """merge updates only non-None keys; createdAt is set on insert and never changes."""
    storage.write([Write("thread", [{"id": "t", "name": "a", "tags": ["x"]}])])
    created = storage.get("thread", ["t"])["t"]["createdAt"]
    assert created.endswith("Z")
    storage.write(
        [Write("thread", [{"id": "t", "name": None, "metadata": {"k": 1}, "createdAt": T0[:-10]}])]
    )
    merged = storage.get("thread", ["t"])["t"]
    assert merged["name"] == "a" and merged["tags"] == ["x"] and merged["metadata"] == {"k": 1}
    assert merged["createdAt"] == created
    assert merged["participantId"] is None


def test_insert_missing_and_delete(storage: Storage) -> None:
    """insert_missing never overwrites; delete removes by id and ignores other keys."""
    storage.write([Write("thread", [{"id": "t", "name": "a"}])])
    storage.write(
        [
            Write(
                "thread", [{"id": "t", "name": "other"}, {"id": "u", "name": "b"}], "insert_missing"
            )
        ]
    )
    got = storage.get("thread", ["t", "u"])
    assert got["t"]["name"] == "a" and got["u"]["name"] == "b"
    storage.write([Write("thread", [{"id": "t", "name": "ignored"}, {"id": "nope"}], "delete")])
    assert set(storage.get("thread", ["t", "u"])) == {"u"}


def test_same_id_twice_in_one_group_applies_in_order(storage: Storage) -> None:
    """Duplicates inside one write are applied one after the other (merge, insert_missing)."""
    storage.write(
        [
            Write("step", [{"id": "d", "name": "a"}, {"id": "d", "tags": ["t"], "name": "b"}]),
            Write(
                "thread", [{"id": "th", "name": "1"}, {"id": "th", "name": "2"}], "insert_missing"
            ),
        ]
    )
    step = storage.get("step", ["d"])["d"]
    assert step["name"] == "b" and step["tags"] == ["t"]
    assert storage.get("thread", ["th"])["th"]["name"] == "1"


def test_failed_write_rolls_back_every_group(storage: Storage) -> None:
    """If one group fails, no group of that write is stored."""
    with pytest.raises(Exception):  # noqa: B017 - each engine raises its own error type
        storage.write([Write("thread", [{"id": "kept?"}]), Write("thread", [{"name": "no id"}])])
    assert storage.get("thread", ["kept?"]) == {}
    storage.write([Write("thread", [{"id": "after"}])])  # the store is still usable
    assert set(storage.get("thread", ["after"])) == {"after"}


def test_values_round_trip(storage: Storage) -> None:
    """JSON values (nested, unicode, numbers), int and real columns come back as written."""
    payload = {"text": 'héllo ✓ "q" \\', "n": [1, 2.5, -3], "deep": {"a": [{"b": None}]}}
    storage.write(
        [
            Write("step", [{"id": "s", "input": payload, "tags": [], "metadata": {}}]),
            Write(
                "generation",
                [{"id": "g", "tokenCount": 12, "duration": 1.5, "ttFirstToken": 2, "messages": []}],
            ),
            Write("score", [{"id": "sc", "value": 1, "name": "n"}]),
        ]
    )
    step = storage.get("step", ["s"])["s"]
    assert step["input"] == payload and step["tags"] == [] and step["metadata"] == {}
    gen = storage.get("generation", ["g"])["g"]
    assert gen["tokenCount"] == 12 and isinstance(gen["tokenCount"], int)
    assert gen["duration"] == 1.5 and gen["ttFirstToken"] == 2.0
    assert isinstance(gen["ttFirstToken"], float)
    score = storage.get("score", ["sc"])["sc"]
    assert score["value"] == 1.0 and isinstance(score["value"], float)
    assert storage.get("step", ["missing"]) == {}
    assert storage.get("step", []) == {}


def test_json_text_is_stored_verbatim(storage: Storage) -> None:
    """A JsonText value keeps the client's spelling (text filters see it); reads decode it."""
    sent = JsonText('{"a": 1,  "b": [1, 2], "c": "é"}')
    storage.write([Write("step", [{"id": "j", "metadata": sent, "input": {"k": "v"}}])])
    assert storage.get("step", ["j"])["j"]["metadata"] == {"a": 1, "b": [1, 2], "c": "é"}
    spaced = Filter("metadata", "ilike", '"a": 1,  "b"')
    assert _ids(storage, "step", spaced) == ["j"]
    assert _ids(storage, "step", Filter("metadata", "eq", 2, "b[1]")) == ["j"]
    assert _ids(storage, "step", Filter("input", "eq", '{"k":"v"}')) == ["j"]  # compact


def test_empty_writes_are_no_ops(storage: Storage) -> None:
    """No groups, or only empty groups, write nothing and do not fail."""
    storage.write([])
    storage.write([Write("step", []), Write("thread", [], "delete")])
    assert storage.list("step", ListQuery()).total == 0


# -- find -----------------------------------------------------------------------------------


def test_find_orders_limits_and_rejects_unknown_keys(storage: Storage) -> None:
    """find: newest first (insertion order on ties), oldest_first, limit, many values."""
    steps = [{"id": f"s{i}", "threadId": "t" if i < 5 else "u"} for i in range(8)]
    storage.write([Write("step", steps)])
    assert [r["id"] for r in storage.find("step", "threadId", ["t"])] == [
        "s4",
        "s3",
        "s2",
        "s1",
        "s0",
    ]
    assert [
        r["id"] for r in storage.find("step", "threadId", ["t"], oldest_first=True, limit=2)
    ] == [
        "s0",
        "s1",
    ]
    many = [f"x{i}" for i in range(700)] + ["u"]
    assert sorted(r["id"] for r in storage.find("step", "threadId", many)) == ["s5", "s6", "s7"]
    assert storage.find("step", "threadId", []) == []
    with pytest.raises(StorageError, match="Unknown key"):
        storage.find("step", "nope", ["x"])


# -- list: order, pagination ------------------------------------------------------------------


def test_pagination_walks_forward_and_back(storage: Storage) -> None:
    """25 steps with one createdAt: newest first by insertion order, pages via after/before."""
    ids = [f"p{i:02d}" for i in range(25)]
    storage.write([Write("step", [{"id": i, "createdAt": T0.format(1)} for i in ids])])
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = storage.list("step", ListQuery(first=10, after=after))
        assert page.total == 25
        assert page.has_previous == (after is not None)
        seen += [r["id"] for r in page.items]
        pages += 1
        if not page.has_next:
            break
        after = page.cursors[-1]
    assert pages == 3 and seen == list(reversed(ids))
    first = storage.list("step", ListQuery(first=10))
    second = storage.list("step", ListQuery(first=10, after=first.cursors[-1]))
    back = storage.list("step", ListQuery(first=10, before=second.cursors[0]))
    assert [r["id"] for r in back.items] == seen[:10]
    assert back.has_next and not back.has_previous
    oldest = storage.list("step", ListQuery(first=3, descending=False))
    assert [r["id"] for r in oldest.items] == ids[:3]
    assert storage.list("step", ListQuery(first=0)).items == []


def test_orders_with_nulls(storage: Storage) -> None:
    """Numeric and text order keys: NULL sorts lowest on both engines."""
    storage.write(
        [
            Write(
                "score",
                [
                    {"id": "a", "value": 0.5, "createdAt": T0.format(1)},
                    {"id": "b", "value": None, "createdAt": T0.format(2)},
                    {"id": "c", "value": -2, "createdAt": T0.format(3)},
                    {"id": "d", "value": 10, "createdAt": T0.format(4)},
                ],
            ),
            Write(
                "step",
                [
                    {"id": "s1", "startTime": "2024-03-01T00:00:00.000000Z"},
                    {"id": "s2", "startTime": None},
                    {"id": "s3", "startTime": "2024-01-01T00:00:00.000000Z"},
                ],
            ),
        ]
    )
    assert _ids(storage, "score", order_column="value") == ["d", "a", "c", "b"]
    assert _ids(storage, "score", order_column="value", descending=False) == ["b", "c", "a", "d"]
    page = storage.list("score", ListQuery(order_column="value", first=2))
    rest = storage.list("score", ListQuery(order_column="value", first=2, after=page.cursors[-1]))
    assert [r["id"] for r in rest.items] == ["c", "b"]
    assert _ids(storage, "step", order_column="startTime", descending=False) == ["s2", "s3", "s1"]


def test_thread_orders_by_related_values(storage: Storage) -> None:
    """Threads by tokenCount (sum over generations of their steps) and participant."""
    storage.write(
        [
            Write(
                "participant",
                [{"id": "p1", "identifier": "zed"}, {"id": "p2", "identifier": "amy"}],
            ),
            Write(
                "thread",
                [
                    {"id": "t1", "participantId": "p1"},
                    {"id": "t2", "participantId": "p2"},
                    {"id": "t3"},
                ],
            ),
            Write("step", [{"id": "s1", "threadId": "t1"}, {"id": "s2", "threadId": "t2"}]),
            Write(
                "generation",
                [
                    {"id": "g1", "stepId": "s1", "tokenCount": 5},
                    {"id": "g2", "stepId": "s2", "tokenCount": 50},
                ],
            ),
        ]
    )
    assert _ids(storage, "thread", order_column="tokenCount") == ["t2", "t1", "t3"]
    assert _ids(storage, "thread", order_column="participant", descending=False) == [
        "t3",
        "t2",
        "t1",
    ]


def test_invalid_queries_raise_storage_error(storage: Storage) -> None:
    """Bad cursors, unknown fields, operators, paths and order columns are StorageError."""
    storage.write([Write("step", [{"id": "s", "metadata": {"a": {"b": 1}}}])])  # SQLite
    # checks a JSON path only when it evaluates it on a row
    bad: list[ListQuery] = [
        ListQuery(after="!!not-a-cursor"),
        ListQuery(order_column="name"),
        ListQuery(filters=(Filter("nope", "eq", 1),)),
        ListQuery(filters=(Filter("name", "between", 1),)),
        ListQuery(filters=(Filter("name", "eq", None),)),
        ListQuery(filters=(Filter("name", "in", []),)),
        ListQuery(filters=(Filter("name", "in", ["x"] * 1001),)),
        ListQuery(filters=(Filter("name", "ilike", 3),)),
        ListQuery(filters=(Filter("name", "is", "x"),)),
        ListQuery(filters=(Filter("name", "eq", "x", "a.b"),)),
        ListQuery(filters=(Filter("metadata", "eq", "x", "a'b"),)),
        ListQuery(filters=(Filter("metadata", "eq", "x", "a..b"),)),
        ListQuery(filters=(Filter("startTime", "gt", "not a date"),)),
    ]
    for query in bad:
        with pytest.raises(StorageError):
            storage.list("step", query)
    with pytest.raises(StorageError, match="Unknown filter field 'nope'"):
        storage.list("step", bad[2])
    with pytest.raises(StorageError, match="Unsupported operator 'between'"):
        storage.list("step", bad[3])
    with pytest.raises(StorageError, match="Cannot order step by 'name'"):
        storage.list("step", bad[1])


# -- filters ----------------------------------------------------------------------------------

STEPS: list[dict[str, Any]] = [
    {
        "id": "f-1",
        "createdAt": T0.format(1),
        "type": "llm",
        "name": "Alpha search",
        "tags": ["a", "b"],
        "metadata": {"user": {"tier": "gold"}, "n": 5, "ok": True, "list": [1, 2]},
        "startTime": "2024-01-01T00:00:00.000000Z",
        "output": {"content": "Paris is sunny"},
    },
    {
        "id": "f-2",
        "createdAt": T0.format(2),
        "type": "tool",
        "name": "beta",
        "tags": ["b"],
        "error": "boom",
        "metadata": {"user": {"tier": "silver"}, "n": 10, "ok": False},
        "startTime": "2024-02-01T00:00:00.000000Z",
    },
    {
        "id": "f-3",
        "createdAt": T0.format(3),
        "type": "tool",
        "name": "gamma",
        "parentId": "f-1",
        "metadata": {"n": "7", "user": None},
        "startTime": "2024-03-01T00:00:00.000000Z",
    },
    {"id": "f-4", "createdAt": T0.format(4), "type": "run", "name": "100%_done ÉTÉ", "tags": []},
]

#: (filter, expected ids sorted): the same answers on every engine.
STEP_FILTERS: list[tuple[Filter, list[str]]] = [
    (Filter("name", "eq", "beta"), ["f-2"]),
    (Filter("name", "neq", "beta"), ["f-1", "f-3", "f-4"]),
    (Filter("name", "ilike", "alpha%"), ["f-1"]),
    (Filter("name", "ilike", "SEARCH"), ["f-1"]),
    (Filter("name", "ilike", "ÉTÉ"), ["f-4"]),
    (Filter("name", "ilike", "été"), []),  # case folding is ASCII-only
    (Filter("name", "ilike", "100%"), ["f-4"]),
    (Filter("name", "ilike", "b_ta"), ["f-2"]),
    (Filter("name", "nilike", "a"), ["f-4"]),
    (Filter("error", "nilike", "boo"), ["f-1", "f-3", "f-4"]),
    (Filter("tags", "in", ["a"]), ["f-1"]),
    (Filter("tags", "in", ["b", "zz"]), ["f-1", "f-2"]),
    (Filter("tags", "nin", ["a"]), ["f-2", "f-3", "f-4"]),
    (Filter("id", "in", ["f-1", "f-3"]), ["f-1", "f-3"]),
    (Filter("id", "nin", ["f-1"]), ["f-2", "f-3", "f-4"]),
    (Filter("parentId", "nin", ["f-1"]), ["f-1", "f-2", "f-4"]),
    (Filter("error", "is", None), ["f-1", "f-3", "f-4"]),
    (Filter("error", "nis", None), ["f-2"]),
    (Filter("parentId", "eq", "f-1"), ["f-3"]),
    (Filter("type", "gt", "run"), ["f-2", "f-3"]),
    (Filter("startTime", "gt", "2024-01-15T00:00:00+00:00"), ["f-2", "f-3"]),
    (Filter("startTime", "gt", "2024-01-31T23:00:00-01:00"), ["f-3"]),
    (Filter("startTime", "lte", "2024-02-01T01:00:00+01:00"), ["f-1", "f-2"]),
    (Filter("createdAt", "gte", T0.format(3)), ["f-3", "f-4"]),
    (Filter("metadata", "eq", "gold", "user.tier"), ["f-1"]),
    (Filter("metadata", "neq", "gold", "user.tier"), ["f-2", "f-3", "f-4"]),
    (Filter("metadata", "in", ["gold", "silver"], "user.tier"), ["f-1", "f-2"]),
    (Filter("metadata", "nin", ["gold"], "user.tier"), ["f-2", "f-3", "f-4"]),
    (Filter("metadata", "in", [10, "7"], "n"), ["f-2", "f-3"]),
    (Filter("metadata", "eq", 5, "n"), ["f-1"]),
    (Filter("metadata", "gt", 5, "n"), ["f-2", "f-3"]),  # "7" is text: above every number
    (Filter("metadata", "lt", 6, "n"), ["f-1"]),
    (Filter("metadata", "lt", "zzz", "n"), ["f-1", "f-2", "f-3"]),
    (Filter("metadata", "lt", "m", "user.tier"), ["f-1"]),
    (Filter("metadata", "eq", 2, "list[1]"), ["f-1"]),
    (Filter("metadata", "is", None, "user"), ["f-3", "f-4"]),
    (Filter("metadata", "nis", None, "user"), ["f-1", "f-2"]),
    (Filter("metadata", "is", True, "ok"), ["f-1"]),
    (Filter("metadata", "nis", True, "ok"), ["f-2"]),
    (Filter("metadata", "eq", '{"tier":"gold"}', "user"), ["f-1"]),
    (Filter("metadata", "ilike", "%GOLD%", "user.tier"), ["f-1"]),
    (Filter("metadata", "ilike", "tier"), ["f-1", "f-2"]),
    (Filter("metadata", "eq", '{"n":"7","user":null}'), ["f-3"]),
    (Filter("output", "ilike", "paris"), ["f-1"]),
    (Filter("output", "nilike", "paris"), ["f-2", "f-3", "f-4"]),
]


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=needs_pg)],
)
def step_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Storage]:
    """One store per engine holding :data:`STEPS`, shared by the filter tests (read-only)."""
    with _location(request.param) as url:
        storage = open_storage(url, tmp_path_factory.mktemp("steps"))
        try:
            storage.write([Write("step", [dict(s) for s in STEPS])])
            yield storage
        finally:
            storage.close()


@pytest.mark.parametrize(
    ("flt", "expected"),
    STEP_FILTERS,
    ids=[f"{f.field}-{f.operator}-{i}" for i, (f, _) in enumerate(STEP_FILTERS)],
)
def test_step_filters(step_store: Storage, flt: Filter, expected: list[str]) -> None:
    """Each operator on each kind of field answers the same on every engine."""
    assert sorted(_ids(step_store, "step", flt)) == expected
    assert step_store.list("step", ListQuery(filters=(flt,))).total == len(expected)


def test_filters_are_and_combined(step_store: Storage) -> None:
    """Several filters narrow together; the total counts the filtered set."""
    storage = step_store
    both = (
        Filter("startTime", "gte", "2024-01-15T00:00:00+00:00"),
        Filter("startTime", "lt", "2024-03-01T00:00:00+00:00"),
    )
    assert _ids(storage, "step", *both) == ["f-2"]
    page = storage.list("step", ListQuery(filters=(Filter("type", "eq", "tool"),), first=1))
    assert page.total == 2 and page.has_next and [r["id"] for r in page.items] == ["f-3"]


def test_relation_and_subquery_filters(storage: Storage) -> None:
    """Thread, participant, generation and score filters over related rows."""
    storage.write(
        [
            Write(
                "participant",
                [
                    {"id": "p1", "identifier": "q-user", "metadata": {"tier": "gold"}},
                    {"id": "p2", "identifier": "other", "metadata": {"tier": "free"}},
                ],
            ),
            Write(
                "thread",
                [
                    {"id": "t1", "name": "one", "participantId": "p1", "tags": ["x"]},
                    {"id": "t2", "name": "two"},
                    {"id": "t3", "name": "three", "participantId": "p1"},
                ],
            ),
            Write(
                "step",
                [
                    {"id": "s1", "threadId": "t2", "type": "llm", "name": "ask"},
                    {"id": "s2", "threadId": "t3", "type": "tool", "name": "fetch"},
                ],
            ),
            Write(
                "generation",
                [
                    {"id": "g1", "stepId": "s1", "model": "gpt", "tokenCount": 30, "duration": 0.5},
                    {"id": "g2", "stepId": "s2", "model": "claude", "tokenCount": 3},
                ],
            ),
            Write(
                "score",
                [
                    {"id": "sc1", "stepId": "s1", "value": 0.9, "name": "q", "type": "AI"},
                    {"id": "sc2", "stepId": "s2", "value": 0.1, "name": "q", "type": "HUMAN"},
                ],
            ),
        ]
    )
    F = Filter
    assert _ids(storage, "thread", F("participantIdentifiers", "in", ["q-user"])) == ["t3", "t1"]
    assert _ids(storage, "thread", F("stepType", "in", ["llm"])) == ["t2"]
    assert _ids(storage, "thread", F("stepType", "nin", ["llm"])) == ["t3", "t1"]
    assert _ids(storage, "thread", F("stepName", "ilike", "FET")) == ["t3"]
    assert _ids(storage, "thread", F("scoreValue", "gt", 0.5)) == ["t2"]
    assert _ids(storage, "thread", F("tags", "in", ["x"])) == ["t1"]
    assert _ids(storage, "participant", F("threadCount", "gte", 2)) == ["p1"]
    assert _ids(storage, "participant", F("metadata", "eq", "gold", "tier")) == ["p1"]
    assert _ids(storage, "participant", F("identifier", "ilike", "Q-")) == ["p1"]
    assert _ids(storage, "generation", F("tokenCount", "gt", 10)) == ["g1"]
    assert _ids(storage, "generation", F("duration", "is", None)) == ["g2"]
    assert _ids(storage, "generation", F("model", "in", ["claude", "x"])) == ["g2"]
    assert _ids(storage, "generation", F("participant", "eq", "q-user")) == ["g2"]
    assert _ids(storage, "generation", F("score", "lt", 0.5)) == ["g2"]
    assert _ids(storage, "score", F("value", "gte", 0.5)) == ["sc1"]
    assert _ids(storage, "score", F("type", "neq", "AI")) == ["sc2"]
    assert _ids(storage, "score", F("participant", "eq", "q-user")) == ["sc2"]
    assert _ids(storage, "score", F("value", "in", [0.1, 1])) == ["sc2"]
    assert _ids(storage, "dataset", F("id", "eq", "x")) == []


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_writers_on_two_handles_store_each_record_once(opener: Opener) -> None:
    """Two handles (two pools / connections) ingest overlapping batches at once: no duplicates,
    every merge applied."""
    handles = [opener(), opener()]
    ids = [f"c{i:03d}" for i in range(300)]
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def ingest(storage: Storage, offset: int) -> None:
        try:
            start.wait()
            for round_ in range(3):
                batch = ids[(offset + round_ * 50) % 300 :][:150]
                storage.write(
                    [
                        Write("thread", [{"id": "shared", "name": "t"}], "insert_missing"),
                        Write(
                            "step",
                            [{"id": i, "threadId": "shared", "name": f"n-{offset}"} for i in batch],
                        ),
                    ]
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(handles[n % 2], n * 50)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    page = handles[0].list("step", ListQuery(first=1000))
    assert page.total == len({r["id"] for r in page.items}) == 300
    assert handles[1].list("thread", ListQuery()).total == 1


def test_open_storage_rejects_unknown_schemes_without_leaking_passwords(tmp_path: Path) -> None:
    """An unknown scheme names the accepted forms; the password never shows."""
    with pytest.raises(ValueError, match="postgresql://") as info:
        open_storage("mysql://root:hunter2secret@db/x", tmp_path)
    assert "hunter2secret" not in str(info.value)
    with pytest.raises(ValueError, match="sqlite:///"):
        open_storage("/just/a/path", tmp_path)
    storage = open_storage(f"sqlite:///{tmp_path}/elsewhere", tmp_path)
    try:
        assert (tmp_path / "elsewhere" / "collector.db").exists()
    finally:
        storage.close()
    default = open_sqlite(tmp_path)
    default.close()
    assert (tmp_path / "collector.db").exists()
