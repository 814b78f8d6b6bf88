"""Bad input: malformed bodies, invalid documents, bad steps in a batch, size limits, paths."""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from literalai.api.helpers.gql import steps_query_builder, steps_variables_builder
from literalai.api.helpers.score_helpers import (
    create_scores_query_builder,
)

from agent.collector._app import Collector, HTTPError
from agent.collector._graphql import GraphQLService
from agent.collector._resolvers import RequestContext
from agent.collector._sqlite import open_sqlite
from agent.collector._storage import Write
from agent.testing import CollectorThread


def _post(collector: CollectorThread, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"x-api-key": collector.api_key, **kwargs.pop("headers", {})}
    return httpx.post(f"{collector.url}{path}", headers=headers, **kwargs)


def _gql(collector: CollectorThread, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = _post(collector, "/api/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200, response.text
    return response.json()


def test_malformed_json_is_400(collector: CollectorThread) -> None:
    """A body that is not JSON (or not a GraphQL request) gets 400 and a message."""
    for body in (b"{not json", b"[1, 2]", b'{"variables": {}}'):
        response = _post(collector, "/api/graphql", content=body)
        assert response.status_code == 400
        assert "Malformed" in response.json()["message"]
    rest = _post(collector, "/api/export/dataset", content=b"{oops")
    assert rest.status_code == 400 and "Malformed JSON" in rest.json()["message"]


def test_syntax_and_validation_errors_name_the_problem(collector: CollectorThread) -> None:
    """Unparseable and invalid documents answer GraphQL errors (no data)."""
    syntax = _gql(collector, "query { step(id: ")
    assert "data" not in syntax and "Syntax Error" in syntax["errors"][0]["message"]
    invalid = _gql(collector, 'query { nope(id: "x") { id } }')
    assert "Cannot query field 'nope' on type 'Query'" in invalid["errors"][0]["message"]


def test_empty_create_scores_document_is_lenient(collector: CollectorThread) -> None:
    """The SDK's zero-score document ``mutation CreateScores() { }`` answers {"data": {}}."""
    assert _gql(collector, create_scores_query_builder([])) == {"data": {}}


def test_bad_steps_in_a_batch_fail_alone(collector: CollectorThread) -> None:
    """An invalid type or timestamp gives ok:false for its alias; the other steps are stored."""
    steps = [
        {"id": "bad-batch-ok-0", "type": "tool", "name": "fine"},
        {"id": "bad-batch-type", "type": "not_a_type"},
        {"id": "bad-batch-time", "type": "tool", "startTime": "yesterday at noon"},
        {"id": "bad-batch-ok-3", "type": "run", "startTime": "2024-05-01T12:00:00+02:00"},
    ]
    result = _gql(collector, steps_query_builder(steps), steps_variables_builder(steps))
    data = result["data"]
    assert list(data) == ["step0", "step1", "step2", "step3"]
    assert data["step0"] == {"ok": True, "message": None}
    assert (
        data["step1"]["ok"] is False
        and "Invalid step type 'not_a_type'" in data["step1"]["message"]
    )
    assert data["step2"]["ok"] is False and "Invalid startTime" in data["step2"]["message"]
    assert data["step3"]["ok"] is True
    query = "query($id: String!) { step(id: $id) { id startTime } }"
    assert (
        _gql(collector, query, {"id": "bad-batch-ok-0"})["data"]["step"]["id"] == "bad-batch-ok-0"
    )
    assert _gql(collector, query, {"id": "bad-batch-type"})["data"]["step"] is None
    stored = _gql(collector, query, {"id": "bad-batch-ok-3"})["data"]["step"]
    assert stored["startTime"] == "2024-05-01T10:00:00.000000Z"


def test_fast_path_and_general_path_answer_the_same(tmp_path: Path) -> None:
    """The batched fast path and graphql-core execution give identical answers and rows."""
    steps: list[dict[str, Any]] = [
        {
            "id": "same-0",
            "type": "llm",
            "threadId": "t-same",
            "input": {"a": [1, 2]},
            "generation": {"type": "CHAT", "messages": [], "model": "m"},
            "scores": [{"name": "s", "type": "AI", "value": 1}],
            "attachments": [],
        },
        {"id": "same-1", "type": "oops"},
        {"id": "same-2", "endTime": "not a date", "tags": ["x"]},
        {"id": "same-3", "parentId": "same-0", "metadata": {"k": "v"}, "tags": ["a", "b"]},
    ]
    query, variables = steps_query_builder(steps), steps_variables_builder(steps)
    answers, rows = [], []
    for fast in (True, False):
        storage = open_sqlite(tmp_path / str(fast))
        service = GraphQLService(storage, fast_paths=fast)
        ctx = RequestContext(storage, "staging", "http://x", lambda key: key)
        answers.append(service.run(query, dict(variables), ctx))
        step_rows = storage.get("step", ["same-0", "same-1", "same-2", "same-3"])
        rows.append(
            {k: {f: v for f, v in r.items() if f != "createdAt"} for k, r in step_rows.items()}
        )
        gens = storage.find("generation", "stepId", ["same-0"])
        assert [g["model"] for g in gens] == ["m"]
        storage.close()
    assert answers[0] == answers[1]
    assert rows[0] == rows[1]
    assert rows[0]["same-0"]["environment"] == "staging"


PLAIN_BATCHES: dict[str, list[dict[str, Any]]] = {
    "plain": [
        {
            "id": "col-0",
            "type": "run",
            "threadId": "t-col",
            "name": "root",
            "startTime": "2024-05-01T12:00:00+02:00",
            "endTime": "2024-05-01T10:00:01Z",
            "input": {"content": "hi"},
            "tags": ["a", "b"],
        },
        {"id": "col-1", "parentId": "col-0", "rootRunId": "col-0", "type": "tool"},
        {"id": "col-2", "threadId": "t-col", "metadata": {"k": [1, None]}, "output": None},
        {"id": "col-3", "threadId": "t-other", "error": "boom", "tags": []},
    ],
    "one invalid time": [
        {"id": "col-ok", "type": "tool", "startTime": "2024-05-01T12:00:00Z"},
        {"id": "col-bad", "type": "tool", "startTime": "tomorrow"},
    ],
    "one invalid type": [
        {"id": "col-ok", "type": "tool"},
        {"id": "col-bad", "type": "spaceship"},
    ],
    "empty id": [{"id": "col-ok", "type": "tool"}, {"id": "", "type": "tool"}],
}


@pytest.mark.parametrize("name", list(PLAIN_BATCHES))
def test_column_fast_path_matches_graphql_core(tmp_path: Path, name: str) -> None:
    """Batches without nested objects (the column-wise path, which falls back to the per-step
    path when a step is invalid) answer and store exactly as graphql-core execution does."""
    steps = PLAIN_BATCHES[name]
    ids = [step["id"] for step in steps]
    query, variables = steps_query_builder(steps), steps_variables_builder(steps)
    answers, rows, threads = [], [], []
    for fast in (True, False):
        storage = open_sqlite(tmp_path / str(fast))
        service = GraphQLService(storage, fast_paths=fast)
        ctx = RequestContext(storage, "prod", "http://x", lambda key: key)
        answers.append(service.run(query, dict(variables), ctx))
        step_rows = storage.get("step", ids)
        rows.append(
            {k: {f: v for f, v in r.items() if f != "createdAt"} for k, r in step_rows.items()}
        )
        thread_rows = storage.get("thread", ["t-col", "t-other"])
        threads.append({k: r.get("environment") for k, r in thread_rows.items()})
        storage.close()
    assert answers[0] == answers[1]
    assert rows[0] == rows[1]
    assert threads[0] == threads[1]
    if name == "plain":
        ok = {"ok": True, "message": None}
        assert all(answer == ok for answer in answers[0]["data"].values())
        assert rows[0]["col-0"]["startTime"] == "2024-05-01T10:00:00.000000Z"
        assert rows[0]["col-0"]["environment"] == "prod"
        assert threads[0] == {"t-col": "prod", "t-other": "prod"}
    else:
        assert answers[0]["data"]["step0"] == {"ok": True, "message": None}
        assert answers[0]["data"]["step1"]["ok"] is False
        assert set(rows[0]) == {"col-ok"}


def test_missing_required_variable_is_a_graphql_error(collector: CollectorThread) -> None:
    """A batch document whose ``$id_0: String!`` is missing gets graphql-core's variable error."""
    steps = [{"id": "x", "type": "tool"}]
    result = _gql(collector, steps_query_builder(steps), {"type_0": "tool"})
    assert "data" not in result or result.get("data") is None
    assert "Variable '$id_0'" in result["errors"][0]["message"]


@pytest.fixture
def small_collector(tmp_path: Path) -> Iterator[CollectorThread]:
    """A collector accepting bodies of at most 2000 bytes."""
    with CollectorThread(tmp_path / "small", max_body_bytes=2000) as running:
        yield running


def test_body_over_limit_is_413(small_collector: CollectorThread) -> None:
    """Declared (Content-Length) and streamed (chunked) bodies over the limit get 413."""
    big = {"query": 'query { step(id: "x") { id } }', "pad": "x" * 5000}
    assert _post(small_collector, "/api/graphql", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "query { step(id: \\"x\\") { id } }", "pad": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    streamed = _post(small_collector, "/api/graphql", content=chunks())
    assert streamed.status_code == 413
    assert (
        _post(
            small_collector, "/api/graphql", json={"query": '{ step(id: "x") { id } }'}
        ).status_code
        == 200
    )


def test_raw_chunked_body_over_limit_is_413(small_collector: CollectorThread) -> None:
    """A raw chunked request larger than the limit is refused with 413 too."""
    payload = b"x" * 3000
    request = (
        b"POST /api/graphql HTTP/1.1\r\nHost: x\r\nx-api-key: "
        + small_collector.api_key.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(payload):x}\r\n".encode()
        + payload
        + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", small_collector.port), timeout=5) as sock:
        sock.sendall(request)
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize(
    "body",
    [
        {"fileName": "../escape.txt"},
        {"fileName": "/etc/passwd"},
        {"fileName": "a/b"},
        {"fileName": ".."},
        {"fileName": "ok.txt", "threadId": "../../up"},
        {"fileName": "ok.txt", "threadId": "/abs"},
    ],
)
def test_upload_names_cannot_escape(collector: CollectorThread, body: dict[str, Any]) -> None:
    """Path-like upload names are rejected at signing time; nothing is written."""
    before = sorted(p for p in collector.data_dir.rglob("*"))
    response = _post(collector, "/api/upload/file", json={"contentType": "text/plain", **body})
    assert response.status_code == 400 and "Invalid" in response.json()["message"]
    assert sorted(p for p in collector.data_dir.rglob("*")) == before


def test_upload_form_key_is_ignored_and_token_single_use(collector: CollectorThread) -> None:
    """The upload target writes only under the signed key (a forged form key is ignored)."""
    signed = _post(collector, "/api/upload/file", json={"fileName": "safe.bin"}).json()
    url, key = signed["post"]["url"], signed["post"]["fields"]["key"]
    files = {"file": ("safe.bin", b"data", "application/octet-stream")}
    response = httpx.post(url, data={"key": "../../../evil"}, files=files)
    assert response.status_code == 204
    assert httpx.get(signed["signedUrl"]).content == b"data"
    assert key.endswith("/safe.bin")
    assert not any(p.name == "evil" for p in collector.data_dir.parent.rglob("evil"))
    if collector.database_url is None:  # SQLite: the file is under the upload folder
        assert (collector.data_dir / "uploads" / key).read_bytes() == b"data"
    assert httpx.post(url, files=files).status_code == 404


def _upload_app(storage: Any, tmp_path: Path) -> Collector:
    """The collector's shared state over ``storage``, uploads under ``tmp_path``."""
    return Collector(
        storage,
        api_keys=["k"],
        max_body_bytes=1000,
        upload_dir=tmp_path / "uploads",
        public_url=None,
    )


def test_upload_tokens_are_signed_and_expire(tmp_path: Path) -> None:
    """A forged, truncated or expired upload token is 404; a valid one is claimed once."""
    storage = open_sqlite(tmp_path)
    try:
        app = _upload_app(storage, tmp_path)
        token = app.new_upload("p/none/a.txt", "text/plain")
        payload, _, signature = token.partition(".")
        other = app.new_upload("p/none/b.txt", "text/plain").partition(".")[2]
        bad = [
            f"{payload}.{other}",  # another token's signature
            f"{payload}x.{signature}",
            payload,
            "",
            "..",
            app.new_upload("p/none/a.txt", "text/plain", ttl=-1),  # expired
        ]
        for forged in bad:
            with pytest.raises(HTTPError) as info:
                app.check_upload(forged)
            assert info.value.status == 404
        pending = app.check_upload(token)
        assert (pending.object_key, pending.mime) == ("p/none/a.txt", "text/plain")
        app.claim_upload(pending)
        with pytest.raises(HTTPError):
            app.claim_upload(app.check_upload(token))
        # a second app on the same storage (another replica) verifies the same tokens
        replica = Collector(
            storage, api_keys=["k"], max_body_bytes=1, upload_dir=tmp_path, public_url=None
        )
        assert replica.check_upload(token) == pending
    finally:
        storage.close()


def test_use_marks_of_expired_upload_tokens_are_deleted(tmp_path: Path) -> None:
    """Claiming a token stores a use mark; marks of tokens expired for longer than the grace
    are deleted by a later claim, the others are kept and still refuse a second use."""
    storage = open_sqlite(tmp_path)
    db = sqlite3.connect(tmp_path / "collector.db")

    def marks() -> int:
        query = "SELECT COUNT(*) FROM meta WHERE key LIKE 'upload-used:%'"
        return int(db.execute(query).fetchone()[0])

    try:
        app = _upload_app(storage, tmp_path)
        app._claims_purged_at = time.time()  # as if a purge just ran
        for i in range(3):  # tokens that expired hours ago, claimed back then
            pending = app.check_upload(app.new_upload(f"p/o/{i}.txt", "text/plain"))
            app.claim_upload(dataclasses.replace(pending, expires=pending.expires - 36_000))
        first = app.check_upload(app.new_upload("p/o/first.txt", "text/plain"))
        app.claim_upload(first)
        assert marks() == 4
        app._claims_purged_at -= 3600  # the purge interval has passed
        second = app.check_upload(app.new_upload("p/o/second.txt", "text/plain"))
        app.claim_upload(second)
        assert marks() == 2  # the three expired ones went
        for pending in (first, second):
            with pytest.raises(HTTPError):
                app.claim_upload(pending)  # still single-use
        assert app.purge_claims(time.time()) == 0
    finally:
        db.close()
        storage.close()


def test_file_records_without_bytes_are_served_from_the_upload_folder(tmp_path: Path) -> None:
    """A file record without bytes is served from uploads/; gone from disk, it is 404."""
    data_dir = tmp_path / "collector"
    key = "project-x/none/old.txt"
    storage = open_sqlite(data_dir)
    storage.write([Write("file", [{"id": key, "mime": "text/plain", "size": 3}])])
    storage.close()
    (data_dir / "uploads" / "project-x" / "none").mkdir(parents=True)
    (data_dir / "uploads" / key).write_bytes(b"old")
    with CollectorThread(data_dir) as running:
        headers = {"x-api-key": running.api_key}
        response = httpx.get(f"{running.url}/api/files/{key}", headers=headers)
        assert response.status_code == 200 and response.content == b"old"
        missing = httpx.get(f"{running.url}/api/files/project-x/none/nope.txt", headers=headers)
        assert missing.status_code == 404
        (data_dir / "uploads" / key).unlink()
        gone = httpx.get(f"{running.url}/api/files/{key}", headers=headers)
        assert gone.status_code == 404 and gone.json() == {"message": "File not found"}


def test_deeply_nested_query_is_rejected(collector: CollectorThread) -> None:
    """Selections nested deeper than the limit are refused before any resolver runs."""
    nested = "id"
    for _ in range(8):
        nested = f"id thread {{ steps {{ {nested} }} }}"
    result = _gql(collector, f'query {{ step(id: "x") {{ {nested} }} }}')
    assert "nested deeper than" in result["errors"][0]["message"]


def test_create_scores_fast_path_matches_graphql_core(tmp_path: Path) -> None:
    """CreateScores through the fast path and through graphql-core: same answers (ids aside)."""
    scores: list[dict[str, Any]] = [
        {"name": "a", "type": "AI", "value": 1, "stepId": "s", "comment": None, "tags": ["x"]},
        {"name": "b", "type": "HUMAN", "value": 0.5, "label": "L", "datasetExperimentItemId": "i"},
    ]
    query = create_scores_query_builder(scores)
    variables = {f"{k}_{i}": v for i, score in enumerate(scores) for k, v in score.items()}
    answers = []
    for fast in (True, False):
        storage = open_sqlite(tmp_path / str(fast))
        service = GraphQLService(storage, fast_paths=fast)
        ctx = RequestContext(storage, "prod", "http://x", lambda key: key)
        answer = service.run(query, dict(variables), ctx)
        for value in answer["data"].values():
            assert value.pop("id")
        answers.append(answer)
        storage.close()
    assert answers[0] == answers[1]
    assert answers[0]["data"]["score_1"] == {
        "name": "b",
        "type": "HUMAN",
        "value": 0.5,
        "label": "L",
        "comment": None,
        "scorer": None,
    }
