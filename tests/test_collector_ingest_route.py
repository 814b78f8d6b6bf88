"""``POST /api/graphql`` as plain ASGI answers exactly like the Starlette route.

Two real collectors on loopback over their own SQLite files, one with the plain-ASGI
GraphQL route (the default) and one serving it through Starlette's routing only, get the
same requests: missing and wrong keys, a too long ``x-env``, malformed bodies, declared
and streamed bodies over the limit, an SDK batch, file URLs built from the Host header,
other methods. Status, content type, content length and body must be the same.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from literalai.api.helpers.gql import steps_query_builder, steps_variables_builder

from agent.collector._app import Collector, create_app
from agent.collector._command import bind_socket, make_server
from agent.collector._sqlite import open_sqlite

KEY = "route-key"
LIMIT = 64 * 1024


class _Served:
    def __init__(self, root: Path, fast: bool) -> None:
        self.storage = open_sqlite(root)
        app = create_app(
            self.storage,
            api_keys=[KEY],
            max_body_bytes=LIMIT,
            upload_dir=root / "uploads",
            graphql_fast_route=fast,
        )
        sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = make_server(app)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            threading.Event().wait(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.storage.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[_Served, _Served]]:
    fast, slow = _Served(tmp_path / "fast", True), _Served(tmp_path / "slow", False)
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


def _batch(prefix: str) -> bytes:
    steps: list[dict[str, Any]] = [
        {"id": f"{prefix}-0", "threadId": f"{prefix}-t", "type": "run", "input": {"q": "é"}},
        {"id": f"{prefix}-1", "parentId": f"{prefix}-0", "type": "tool", "tags": ["x"]},
        {
            "id": f"{prefix}-2",
            "type": "llm",
            "attachments": [{"id": f"{prefix}-a", "name": "f.txt", "objectKey": "p/t/f.txt"}],
        },
    ]
    query, variables = steps_query_builder(steps), steps_variables_builder(steps)
    return json.dumps({"query": query, "variables": variables}).encode()


ATTACHMENT_URL = json.dumps(
    {"query": 'query { step(id: "r-2") { attachments { url } environment } }'}
).encode()


def _chunks() -> Iterator[bytes]:
    yield b'{"query": "query { __typename }", "pad": "'
    for _ in range(20):
        yield b"x" * 4096
    yield b'"}'


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("no key", {"content": b"{}"}),
    ("wrong key", {"content": b"{}", "headers": {"x-api-key": "nope"}}),
    ("x-env too long", {"content": b"{}", "headers": {"x-env": "e" * 65}}),
    ("malformed", {"content": b"{not json"}),
    ("no query", {"content": b'{"variables": {}}'}),
    ("empty body", {"content": b""}),
    ("declared over limit", {"content": b"x" * (LIMIT + 1)}),
    ("streamed over limit", {"content": _chunks}),
    ("batch", {"content": _batch("r"), "headers": {"x-env": "dev"}}),
    ("file url, host", {"content": ATTACHMENT_URL, "headers": {"host": "example.org:8443"}}),
    ("file url, default", {"content": ATTACHMENT_URL}),
    ("empty x-env", {"content": _batch("s"), "headers": {"x-env": ""}}),
    ("query", {"content": json.dumps({"query": "query { __typename }"}).encode()}),
]


def _send(served: _Served, name: str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    headers = {"x-api-key": KEY, **kwargs.get("headers", {})}
    if name == "no key":
        del headers["x-api-key"]
    content = kwargs["content"]
    content = content() if callable(content) else content
    response = httpx.post(f"{served.url}/api/graphql", content=content, headers=headers)
    # each collector has its own port and signs file URLs with its own store's secret
    body = response.content.replace(served.url.encode(), b"http://BASE")
    return (
        response.status_code,
        response.headers.get("content-type"),
        response.headers.get("content-length"),
        re.sub(rb"token=[0-9a-f]+", b"token=T", body),
    )


def test_plain_asgi_route_answers_like_starlette(
    pair: tuple[_Served, _Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = pair
    routed: list[int] = []  # requests that went through the Starlette route
    context = Collector.context

    def counted(self: Collector, request: Any) -> Any:
        routed.append(1)
        return context(self, request)

    monkeypatch.setattr(Collector, "context", counted)
    for name, kwargs in REQUESTS:
        assert _send(fast, name, kwargs) == _send(slow, name, kwargs), name
    assert len(routed) == len(REQUESTS) - 2  # all but the 401s, through the slow one only
    statuses = {name: _send(fast, name, kwargs)[0] for name, kwargs in REQUESTS[:8]}
    assert statuses == {
        "no key": 401,
        "wrong key": 401,
        "x-env too long": 400,
        "malformed": 400,
        "no query": 400,
        "empty body": 400,
        "declared over limit": 413,
        "streamed over limit": 413,
    }
    url = json.loads(_send(fast, *REQUESTS[9])[3])["data"]["step"]
    assert url["attachments"][0]["url"].startswith("http://example.org:8443/api/files/p/t/f.txt")
    assert url["environment"] == "dev"
    ids = ["r-0", "r-1", "r-2", "s-0", "s-1", "s-2"]
    rows = [
        {k: {f: v for f, v in r.items() if f != "createdAt"} for k, r in s.get("step", ids).items()}
        for s in (fast.storage, slow.storage)
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 6
    assert rows[0]["s-0"]["environment"] == "prod"


def test_other_methods_and_paths_still_go_through_starlette(
    pair: tuple[_Served, _Served],
) -> None:
    fast, slow = pair
    for method, path in (("GET", "/api/graphql"), ("POST", "/api/graphql/"), ("GET", "/health")):
        answers = [
            httpx.request(method, f"{s.url}{path}", headers={"x-api-key": KEY}) for s in pair
        ]
        assert answers[0].status_code == answers[1].status_code, (method, path)
        assert answers[0].content == answers[1].content, (method, path)
    assert httpx.get(f"{fast.url}/api/graphql").status_code == 405
    assert slow.url != fast.url
