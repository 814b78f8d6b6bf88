"""List queries: cursor pagination, totalCount, filters (operators, path), orderBy, x-env."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from literalai.api import LiteralAPI

from agent.testing import CollectorThread


@pytest.fixture
def api(fresh_collector: CollectorThread) -> LiteralAPI:
    """A sync SDK client on an empty collector."""
    return LiteralAPI(api_key=fresh_collector.api_key, url=fresh_collector.url)


def _ingest(api: LiteralAPI, steps: list[dict[str, Any]]) -> None:
    response = api.send_steps(steps)
    assert all(v["ok"] for v in response["data"].values())


def test_cursor_pagination_newest_first(api: LiteralAPI) -> None:
    """first/after walk every step once, newest first; before walks back; totalCount is global."""
    ids = [f"page-{i:02d}" for i in range(25)]
    for chunk in (ids[:10], ids[10:20], ids[20:]):
        _ingest(api, [{"id": i, "type": "tool", "name": i} for i in chunk])
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = api.get_steps(first=10, after=after)
        assert page.total_count == 25
        seen += [s.id for s in page.data]
        pages += 1
        if not page.page_info.has_next_page:
            break
        after = page.page_info.end_cursor
    assert pages == 3
    assert seen == list(reversed(ids))
    second = api.get_steps(first=10, after=api.get_steps(first=10).page_info.end_cursor)
    back = api.get_steps(first=10, before=second.page_info.start_cursor)
    assert [s.id for s in back.data] == seen[:10]


def test_filters_and_operators(api: LiteralAPI) -> None:
    """eq/neq/in/nin/ilike/nilike/is/nis/gt/lt and JSON path filters, AND-combined."""
    _ingest(
        api,
        [
            {
                "id": "f-1",
                "type": "llm",
                "name": "Alpha search",
                "tags": ["a", "b"],
                "metadata": {"user": {"tier": "gold"}},
                "startTime": "2024-01-01T00:00:00Z",
            },
            {
                "id": "f-2",
                "type": "tool",
                "name": "beta",
                "tags": ["b"],
                "error": "boom",
                "metadata": {"user": {"tier": "silver"}},
                "startTime": "2024-02-01T00:00:00Z",
            },
            {
                "id": "f-3",
                "type": "tool",
                "name": "gamma",
                "parentId": "f-1",
                "startTime": "2024-03-01T00:00:00Z",
            },
        ],
    )

    def ids(*filters: dict[str, Any]) -> list[str]:
        return sorted(s.id for s in api.get_steps(filters=list(filters)).data)

    assert ids({"field": "name", "operator": "eq", "value": "beta"}) == ["f-2"]
    assert ids({"field": "name", "operator": "neq", "value": "beta"}) == ["f-1", "f-3"]
    assert ids({"field": "name", "operator": "ilike", "value": "alpha%"}) == ["f-1"]
    assert ids({"field": "name", "operator": "ilike", "value": "SEARCH"}) == ["f-1"]
    assert ids({"field": "name", "operator": "nilike", "value": "a"}) == []
    assert ids({"field": "tags", "operator": "in", "value": ["a"]}) == ["f-1"]
    assert ids({"field": "tags", "operator": "nin", "value": ["a"]}) == ["f-2", "f-3"]
    assert ids({"field": "id", "operator": "in", "value": ["f-1", "f-3"]}) == ["f-1", "f-3"]
    assert ids({"field": "error", "operator": "is", "value": None}) == ["f-1", "f-3"]
    assert ids({"field": "error", "operator": "nis", "value": None}) == ["f-2"]
    assert ids({"field": "parentId", "operator": "eq", "value": "f-1"}) == ["f-3"]
    assert ids({"field": "startTime", "operator": "gt", "value": "2024-01-15T00:00:00+00:00"}) == [
        "f-2",
        "f-3",
    ]
    assert ids(
        {"field": "startTime", "operator": "gte", "value": "2024-01-15T00:00:00Z"},
        {"field": "startTime", "operator": "lt", "value": "2024-03-01T00:00:00Z"},
    ) == ["f-2"]
    gold = {"field": "metadata", "operator": "eq", "value": "gold", "path": "user.tier"}
    assert ids(gold) == ["f-1"]
    with pytest.raises(Exception, match="Unknown filter field 'nope'"):
        api.get_steps(filters=[{"field": "nope", "operator": "eq", "value": 1}])
    with pytest.raises(Exception, match="Unsupported operator 'between'"):
        api.get_steps(filters=[{"field": "name", "operator": "between", "value": 1}])


def test_thread_filters_and_order(api: LiteralAPI) -> None:
    """Threads: participantIdentifiers, stepType, tags, orderBy createdAt ASC."""
    user = api.create_user("q-user")
    t1 = api.create_thread(name="one", participant_id=user.id, tags=["x"])
    t2 = api.create_thread(name="two")
    _ingest(api, [{"id": "ts-1", "threadId": t2.id, "type": "llm"}])

    def ids(**kwargs: Any) -> list[str]:
        return [t.id for t in api.list_threads(**kwargs).data]

    assert ids(
        filters=[{"field": "participantIdentifiers", "operator": "in", "value": ["q-user"]}]
    ) == [t1.id]
    assert ids(filters=[{"field": "stepType", "operator": "in", "value": ["llm"]}]) == [t2.id]
    assert ids(filters=[{"field": "tags", "operator": "in", "value": ["x"]}]) == [t1.id]
    assert ids(order_by={"column": "createdAt", "direction": "ASC"}) == [t1.id, t2.id]
    assert ids(order_by={"column": "createdAt", "direction": "DESC"}) == [t2.id, t1.id]
    with pytest.raises(Exception, match="Cannot order thread by 'nope'"):
        api.list_threads(order_by={"column": "nope", "direction": "ASC"})


def test_users_and_scores_filters(api: LiteralAPI) -> None:
    """Participants by identifier/metadata; scores by value and type, ordered."""
    api.create_user("u-gold", {"tier": "gold"})
    api.create_user("u-free", {"tier": "free"})
    gold = api.get_users(
        filters=[{"field": "metadata", "operator": "eq", "value": "gold", "path": "tier"}]
    )
    assert [u.identifier for u in gold.data] == ["u-gold"]
    assert api.get_users().total_count == 2
    step = api.create_step(type="run")
    for value in (0.1, 0.9, 0.5):
        api.create_score(name="v", value=value, type="AI", step_id=step.id)
    high = api.get_scores(filters=[{"field": "value", "operator": "gte", "value": 0.5}])
    assert sorted(s.value for s in high.data) == [0.5, 0.9]


def test_x_env_stamps_and_by_id_reads_ignore_it(
    fresh_collector: CollectorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x-env stamps ingested steps; absent header means prod; by-id reads are not filtered."""
    monkeypatch.setenv("LITERAL_ENV", "staging")  # what LiteralAPI(environment=...) does
    staging = LiteralAPI(api_key=fresh_collector.api_key, url=fresh_collector.url)
    step_id = str(uuid.uuid4())
    staging.send_steps([{"id": step_id, "type": "tool"}])
    monkeypatch.delenv("LITERAL_ENV")
    plain = LiteralAPI(api_key=fresh_collector.api_key, url=fresh_collector.url)
    got = plain.get_step(step_id)
    assert got is not None and got.environment == "staging"
    other = str(uuid.uuid4())
    plain.send_steps([{"id": other, "type": "tool"}])
    assert plain.get_step(other).environment == "prod"  # type: ignore[union-attr]
    envs = plain.get_steps(filters=[{"field": "environment", "operator": "eq", "value": "staging"}])
    assert [s.id for s in envs.data] == [step_id]


def test_reingest_is_idempotent(api: LiteralAPI, fresh_collector: CollectorThread) -> None:
    """Sending the same batch twice stores each step, score and attachment once."""
    batch = [
        {
            "id": f"idem-{i}",
            "type": "tool",
            "threadId": "idem-thread",
            "output": {"i": i},
            "scores": [{"name": "s", "type": "AI", "value": i}],
            "attachments": [{"name": "a", "url": "https://example.invalid/a"}],
        }
        for i in range(5)
    ]
    for _ in range(2):
        _ingest(api, [dict(step) for step in batch])
    flt = [{"field": "threadId", "operator": "eq", "value": "idem-thread"}]
    assert api.get_steps(filters=flt).total_count == 5
    assert api.get_scores().total_count == 5
    step = api.get_step("idem-3")
    assert step is not None and len(step.attachments) == 1 and step.output == {"i": 3}
    query = "query { threads(first: 10) { totalCount } }"
    response = httpx.post(
        f"{fresh_collector.url}/api/graphql",
        json={"query": query},
        headers={"x-api-key": fresh_collector.api_key},
    )
    assert response.json()["data"]["threads"]["totalCount"] == 1


def test_participants_order_by(api: LiteralAPI, fresh_collector: CollectorThread) -> None:
    """participants accepts an orderBy (an extension: the SDK never sends one)."""
    for name in ("b-user", "a-user", "c-user"):
        api.create_user(name)
    query = (
        "query($o: ParticipantsOrderByInput) { participants(orderBy: $o) "
        "{ totalCount edges { node { identifier } } } }"
    )
    response = httpx.post(
        f"{fresh_collector.url}/api/graphql",
        json={"query": query, "variables": {"o": {"column": "identifier", "direction": "ASC"}}},
        headers={"x-api-key": fresh_collector.api_key},
    )
    edges = response.json()["data"]["participants"]["edges"]
    assert [e["node"]["identifier"] for e in edges] == ["a-user", "b-user", "c-user"]
    assert [u.identifier for u in api.get_users().data] == ["c-user", "a-user", "b-user"]


def test_times_are_stored_in_one_form_so_order_is_time_order(api: LiteralAPI) -> None:
    """Whatever ISO-8601 form a client sends (no fraction, milliseconds, an offset, no zone),
    the stored time is ``...HH:MM:SS.ffffffZ``: sorting and comparing by startTime follow
    time, not text (``10:00:01Z`` sorts after ``10:00:01.5Z`` as raw text)."""
    sent = {
        "t-whole": "2024-05-01T10:00:01Z",  # reference SDK: isoformat() drops a zero fraction
        "t-half": "2024-05-01T10:00:01.500Z",  # JavaScript's toISOString()
        "t-offset": "2024-05-01T12:00:00.750+02:00",
        "t-naive": "2024-05-01T10:00:02",
        "t-canon": "2024-05-01T10:00:00.250000Z",
    }
    _ingest(api, [{"id": i, "type": "tool", "startTime": t} for i, t in sent.items()])
    page = api.get_steps(order_by={"column": "startTime", "direction": "ASC"})
    assert [s.id for s in page.data] == ["t-canon", "t-offset", "t-whole", "t-half", "t-naive"]
    assert {s.id: s.start_time for s in page.data} == {
        "t-canon": "2024-05-01T10:00:00.250000Z",
        "t-offset": "2024-05-01T10:00:00.750000Z",
        "t-whole": "2024-05-01T10:00:01.000000Z",
        "t-half": "2024-05-01T10:00:01.500000Z",
        "t-naive": "2024-05-01T10:00:02.000000Z",
    }
    after = [{"field": "startTime", "operator": "gt", "value": "2024-05-01T10:00:01Z"}]
    later = api.get_steps(filters=after, order_by={"column": "startTime", "direction": "ASC"})
    assert [s.id for s in later.data] == ["t-half", "t-naive"]


def test_thread_duration_and_token_counts(
    api: LiteralAPI, fresh_collector: CollectorThread
) -> None:
    """Thread.duration spans its steps (first start to last end, seconds); tokenCount adds up
    the generations of a thread's steps, and of every thread of a participant."""
    user = api.create_user("counted")
    for tid in ("th-a", "th-b"):
        api.upsert_thread(tid, name=tid, participant_id=user.id)
    api.upsert_thread("th-empty", name="empty")
    gen = {"provider": "p", "model": "m", "messages": [], "type": "CHAT"}
    _ingest(
        api,
        [
            {
                "id": "dur-1",
                "threadId": "th-a",
                "type": "llm",
                "startTime": "2024-05-01T10:00:00Z",
                "endTime": "2024-05-01T10:00:02.500Z",
                "generation": {**gen, "tokenCount": 7},
            },
            {
                "id": "dur-2",
                "threadId": "th-a",
                "type": "llm",
                "startTime": "2024-05-01T10:00:01Z",
                "endTime": "2024-05-01T10:00:04Z",
                "generation": {**gen, "tokenCount": 5},
            },
            {
                "id": "dur-3",
                "threadId": "th-b",
                "type": "llm",
                "generation": {**gen, "tokenCount": 30},
            },
        ],
    )
    query = (
        "query($id: String!) { threadDetail(id: $id) { duration tokenCount } "
        'participant(identifier: "counted") { tokenCount threadCount } }'
    )

    def ask(thread_id: str) -> dict[str, Any]:
        response = httpx.post(
            f"{fresh_collector.url}/api/graphql",
            json={"query": query, "variables": {"id": thread_id}},
            headers={"x-api-key": fresh_collector.api_key},
        )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]

    data = ask("th-a")
    assert data["threadDetail"] == {"duration": 4.0, "tokenCount": 12}
    assert data["participant"] == {"tokenCount": 42, "threadCount": 2}
    assert ask("th-empty")["threadDetail"] == {"duration": None, "tokenCount": 0}
