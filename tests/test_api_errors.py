"""Bad input, unserialisable values, error mapping, headers and configuration of the API client.

Status codes the collector never sends (429, 503, 404, non-JSON bodies, slow answers) come
from a small real HTTP server on loopback (``StatusServer``) that answers what the test asks
and records the requests it got.
"""

from __future__ import annotations

import datetime as dt
import decimal
import http.server
import inspect
import json
import math
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from agent._api import AsyncLiteralAPI, LiteralAPI
from agent._exceptions import (
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    GraphQLError,
    HTTPStatusError,
    LiteralError,
    RateLimitedError,
    RequestTooLargeError,
    ServerError,
    TransportError,
)
from agent._models import DatasetExperimentItem, Step, StepType
from agent.testing import CollectorThread

pytestmark = pytest.mark.anyio

SECRET = "sk-lit-DISTINCTIVE-9f3b2c71e0"


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def call(api: LiteralAPI | AsyncLiteralAPI, name: str) -> Callable[..., Any]:
    method = getattr(api, name)

    async def run(*args: Any, **kwargs: Any) -> Any:
        return await resolve(method(*args, **kwargs))

    return run


def make_api(kind: str, key: str, url: str, **options: Any) -> LiteralAPI | AsyncLiteralAPI:
    return (LiteralAPI if kind == "sync" else AsyncLiteralAPI)(key, url, **options)


async def close(api: LiteralAPI | AsyncLiteralAPI) -> None:
    if isinstance(api, AsyncLiteralAPI):
        await api.aclose()
    else:
        api.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which twin a test runs against."""
    return str(request.param)


@pytest.fixture
def unused_url() -> str:
    """A loopback URL with nobody listening: any request fails to connect."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def offline(kind: str, unused_url: str) -> AsyncIterator[LiteralAPI | AsyncLiteralAPI]:
    """A client whose every request would fail: bad input must be refused before that."""
    api = make_api(kind, SECRET, unused_url, timeout=1.0)
    yield api
    await close(api)


@pytest.fixture
async def online(kind: str, collector: CollectorThread) -> AsyncIterator[Any]:
    """A client on the session collector."""
    api = make_api(kind, collector.api_key, collector.url)
    yield api
    await close(api)


# --------------------------------------------------------------------------- bad input

BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
    ("get_user", (), {}, ValueError, "id or identifier"),
    ("get_user", (), {"id": "a", "identifier": "b"}, ValueError, "only one"),
    ("create_score", ("s", math.nan, "HUMAN"), {}, ValueError, "not finite"),
    ("create_score", ("s", math.inf, "HUMAN"), {}, ValueError, "not finite"),
    ("create_score", ("s", -math.inf, "AI"), {}, ValueError, "not finite"),
    ("create_score", ("s", "0.5", "AI"), {}, TypeError, "must be a number"),
    ("create_score", ("s", 0.5, "ROBOT"), {}, ValueError, "score type"),
    (
        "create_scores",
        ([{"name": "a", "type": "AI", "value": math.nan}],),
        {},
        ValueError,
        "finite",
    ),
    ("update_score", ("id", {"value": math.inf}), {}, ValueError, "not finite"),
    ("create_step", (), {"type": "bogus"}, ValueError, "unknown step type"),
    ("update_step", ("id",), {"type": "bogus"}, ValueError, "unknown step type"),
    ("send_steps", ([{"id": "x", "type": "bogus"}],), {}, ValueError, "unknown step type"),
    ("send_steps", ([Step(type="bogus")],), {}, ValueError, "unknown step type"),  # type: ignore[arg-type]
    ("send_steps", ([],), {}, ValueError, "at least one step"),
    ("send_steps", (Step(),), {}, TypeError, "list of steps"),
    ("send_steps", ([42],), {}, TypeError, "Step objects or dicts"),
    ("get_threads", (), {"step_types_to_keep": ["nope"]}, ValueError, "unknown step type"),
    ("get_prompt", (), {}, ValueError, "`id` or the `name`"),
    ("get_dataset", (), {}, ValueError, "id or name"),
    ("create_dataset", ("d",), {"type": "table"}, ValueError, "dataset type"),
    ("create_attachment", (), {"step_id": "s"}, ValueError, "content, path or"),
    ("create_attachment", (), {}, ValueError, "step_id"),
    ("create_generation", ({"type": "IMAGE"},), {}, ValueError, "CHAT or COMPLETION"),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error", "match"),
    BAD_CALLS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CALLS)],
)
async def test_bad_input_fails_before_any_request(
    offline: Any,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    """Arguments that cannot work raise ValueError/TypeError, not a transport error."""
    with pytest.raises(error, match=match):
        await call(offline, method)(*args, **kwargs)


async def test_experiment_item_scores_must_be_finite(offline: Any) -> None:
    """Both twins check the scores of an experiment item (the sync reference does not)."""
    item = DatasetExperimentItem(
        dataset_experiment_id="e", scores=[{"name": "s", "type": "AI", "value": math.nan}]
    )
    with pytest.raises(ValueError, match="not finite"):
        await call(offline, "create_experiment_item")(item)


def test_missing_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key or no URL: a ValueError naming the variable to set."""
    monkeypatch.delenv("LITERAL_API_KEY", raising=False)
    monkeypatch.delenv("LITERAL_API_URL", raising=False)
    for cls in (LiteralAPI, AsyncLiteralAPI):
        with pytest.raises(ValueError, match="LITERAL_API_KEY"):
            cls(url="http://127.0.0.1:1")
        with pytest.raises(ValueError, match="LITERAL_API_URL"):
            cls(api_key="k")
        with pytest.raises(ValueError, match="timeout"):
            cls("k", "http://x", timeout=0)


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arguments win over LITERAL_API_KEY / LITERAL_API_URL; one trailing slash is removed."""
    monkeypatch.setenv("LITERAL_API_KEY", SECRET)
    monkeypatch.setenv("LITERAL_API_URL", "http://127.0.0.1:9/")
    with LiteralAPI() as api:
        assert api.api_key == SECRET and api.url == "http://127.0.0.1:9"
        assert api.graphql_endpoint == "http://127.0.0.1:9/api/graphql"
        assert SECRET not in repr(api)
    with LiteralAPI("other", "http://h:1") as api:
        assert api.api_key == "other" and api.url == "http://h:1"


# --------------------------------------------------------------------------- unserialisable


class Opaque:
    """Not JSON-encodable; readable through __str__."""

    def __str__(self) -> str:
        return "<opaque 42>"


class Broken:
    """Even __str__ fails."""

    def __str__(self) -> str:
        raise RuntimeError("no")


async def test_unserialisable_values_become_strings(online: Any) -> None:
    """Values JSON cannot carry are sent as readable strings; the call never crashes."""
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    step = Step(
        type=StepType.TOOL,
        input={"when": when, "obj": Opaque(), "blob": b"\x00\x01", "tags": {"a"}, "t": (1, 2)},
        output={"dec": decimal.Decimal("1.5"), "id": uuid.UUID(int=1), "broken": Broken()},
        metadata={"nested": [{"obj": Opaque()}], "nan": math.nan},
    )
    as_dict = {
        "id": str(uuid.uuid4()),
        "type": "tool",
        "input": {"obj": Opaque()},
        "metadata": {"bytes": bytearray(b"x")},
    }
    await call(online, "send_steps")([step, as_dict])
    got = await call(online, "get_step")(step.id)
    assert got.input == {
        "when": "2024-05-01T12:30:00Z",
        "obj": "<opaque 42>",
        "blob": "STRIPPED_BINARY_DATA",
        "tags": ["a"],
        "t": [1, 2],
    }
    assert got.output == {
        "dec": "1.5",
        "id": "00000000-0000-0000-0000-000000000001",
        "broken": "<unprintable Broken>",
    }
    assert got.metadata == {"nested": [{"obj": "<opaque 42>"}], "nan": None}
    got_dict = await call(online, "get_step")(as_dict["id"])
    assert got_dict.input == {"obj": "<opaque 42>"}
    assert got_dict.metadata == {"bytes": "STRIPPED_BINARY_DATA"}
    assert isinstance(step.input["obj"], Opaque)  # the caller's step is not mutated
    created = await call(online, "create_step")(input={"o": Opaque()}, metadata={"b": b"1"})
    assert created.input == {"o": "<opaque 42>"} and created.metadata == {
        "b": "STRIPPED_BINARY_DATA"
    }


# --------------------------------------------------------------------------- error mapping


async def test_request_on_a_closed_client_says_it_is_closed(
    kind: str, collector: CollectorThread
) -> None:
    """After close()/aclose(), a request (and an upload) raises ClientClosedError, a
    LiteralError naming the client and what to do, not httpx's RuntimeError."""
    api = make_api(kind, collector.api_key, collector.url)
    users = await call(api, "get_users")()  # works while open
    assert users is not None
    await close(api)
    with pytest.raises(ClientClosedError) as caught:
        await call(api, "get_users")()
    error = caught.value
    assert isinstance(error, LiteralError) and not isinstance(error, TransportError)
    assert type(api).__name__ in str(error) and "closed" in str(error)
    assert "get users" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    with pytest.raises(ClientClosedError, match="closed"):
        await call(api, "upload_file")(content=b"x", thread_id="t", mime="text/plain")


async def test_wrong_key_is_an_authentication_error(kind: str, collector: CollectorThread) -> None:
    """401 -> AuthenticationError telling what to check, without the key anywhere."""
    api = make_api(kind, SECRET, collector.url)
    try:
        with pytest.raises(AuthenticationError) as caught:
            await call(api, "get_users")()
    finally:
        await close(api)
    error = caught.value
    assert error.status == 401 and isinstance(error, HTTPStatusError)
    assert "LITERAL_API_KEY" in str(error) and "get users" in str(error)
    for text in (str(error), repr(error), error.body, error.message, repr(error.args)):
        assert SECRET not in text


async def test_graphql_errors(online: Any) -> None:
    """A GraphQL `errors` answer -> GraphQLError carrying them."""
    with pytest.raises(GraphQLError) as caught:
        await call(online, "make_gql_call")("do nothing", "query { noSuchField }", {})
    assert caught.value.errors and "noSuchField" in str(caught.value)
    assert caught.value.failures == {}


async def test_refused_aliases_are_named(online: Any) -> None:
    """Some steps refused (ok: false) -> GraphQLError with failures per alias and all data."""
    good = [Step(type=StepType.RUN, name=f"good{i}") for i in range(2)]
    bad = {"id": str(uuid.uuid4()), "type": "run", "startTime": "not a time"}
    with pytest.raises(GraphQLError) as caught:
        await call(online, "send_steps")([good[0], bad, good[1]])
    error = caught.value
    assert list(error.failures) == ["step1"] and "startTime" in error.failures["step1"]
    assert error.data is not None and set(error.data) == {"step0", "step1", "step2"}
    assert error.data["step0"]["ok"] is True
    assert "1 of 3 refused" in str(error) and "step1" in str(error)
    assert await call(online, "get_step")(good[1].id) is not None


async def test_request_too_large(kind: str, tmp_path: Path) -> None:
    """413 -> RequestTooLargeError suggesting a smaller batch."""
    with CollectorThread(tmp_path / "small", max_body_bytes=2_000) as small:
        api = make_api(kind, small.api_key, small.url)
        try:
            with pytest.raises(RequestTooLargeError, match="reduce batch size") as caught:
                await call(api, "send_steps")([Step(input={"x": "y" * 5_000})])
        finally:
            await close(api)
    assert caught.value.status == 413


async def test_connection_refused_is_a_transport_error(offline: Any, unused_url: str) -> None:
    """No server -> TransportError naming the URL (never the key)."""
    with pytest.raises(TransportError) as caught:
        await call(offline, "get_users")()
    assert unused_url in str(caught.value) and SECRET not in str(caught.value)
    assert isinstance(caught.value, LiteralError)


class StatusServer:
    """A real HTTP/1.1 server on loopback answering the next queued (status, headers, body)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes, float]] = []
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                owner.requests.append(
                    (self.path, dict(self.headers.items()), body, self.client_address[1])
                )
                status, headers, payload, delay = (
                    owner.answers.pop(0)
                    if owner.answers
                    else (200, {}, b'{"data": {"ok": null}}', 0.0)
                )
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test)
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def respond_with(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"{}",
        delay: float = 0.0,
    ) -> None:
        self.answers.append((status, headers or {}, body, delay))


@pytest.fixture
def status_server() -> Iterator[StatusServer]:
    """A loopback server answering canned statuses."""
    server = StatusServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, RateLimitedError, 7.0),
        (429, {}, RateLimitedError, None),
        (503, {}, ServerError, None),
        (500, {}, ServerError, None),
        (404, {}, BadRequestError, None),
        (422, {}, BadRequestError, None),
        (403, {}, AuthenticationError, None),
    ],
)
async def test_status_mapping(
    kind: str,
    status_server: StatusServer,
    status: int,
    headers: dict[str, str],
    error: type[HTTPStatusError],
    retry_after: float | None,
) -> None:
    """Each status class maps to its error type; the body excerpt is kept."""
    status_server.respond_with(status, headers, b"server says no")
    api = make_api(kind, SECRET, status_server.url)
    try:
        with pytest.raises(error) as caught:
            await call(api, "get_thread")("t")
    finally:
        await close(api)
    assert caught.value.status == status and caught.value.body == "server says no"
    assert "get thread" in str(caught.value) and SECRET not in str(caught.value)
    if error is RateLimitedError:
        assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]


async def test_retry_after_http_date(kind: str, status_server: StatusServer) -> None:
    """Retry-After given as an HTTP date becomes seconds from now."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    status_server.respond_with(429, {"Retry-After": format_datetime(later, usegmt=True)})
    api = make_api(kind, SECRET, status_server.url)
    try:
        with pytest.raises(RateLimitedError) as caught:
            await call(api, "send_steps")([Step()])
    finally:
        await close(api)
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


async def test_not_json_and_wrong_shape(kind: str, status_server: StatusServer) -> None:
    """A 200 that is not JSON, or JSON of the wrong shape, is a LiteralError, not a crash."""
    status_server.respond_with(200, {}, b"<html>proxy login</html>")
    status_server.respond_with(200, {}, b'{"data": {"createParticipant": "oops"}}')
    api = make_api(kind, SECRET, status_server.url)
    try:
        with pytest.raises(ServerError, match="not JSON"):
            await call(api, "get_users")()
        with pytest.raises(LiteralError, match="unexpected answer shape"):
            await call(api, "create_user")("x")
    finally:
        await close(api)


async def test_timeout_is_a_transport_error(kind: str, status_server: StatusServer) -> None:
    """A server slower than the timeout -> TransportError saying it timed out."""
    status_server.respond_with(200, {}, b'{"data": {}}', delay=1.0)
    api = make_api(kind, SECRET, status_server.url, timeout=0.2)
    try:
        with pytest.raises(TransportError, match="timed out"):
            await call(api, "get_users")()
    finally:
        await close(api)


async def test_headers_and_keep_alive(
    kind: str, status_server: StatusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x-api-key, client name, x-env (argument, else LITERAL_ENV at request time); one
    pooled connection is reused across calls."""
    monkeypatch.delenv("LITERAL_ENV", raising=False)
    api = make_api(kind, SECRET, status_server.url)
    try:
        await call(api, "make_gql_call")("a", "query { ok }", {})
        monkeypatch.setenv("LITERAL_ENV", "staging")
        await call(api, "make_gql_call")("b", "query { ok }", {})
    finally:
        await close(api)
    pinned = make_api(kind, SECRET, status_server.url, environment="experiment")
    try:
        await call(pinned, "make_rest_call")("/my-project", {"x": 1})
    finally:
        await close(pinned)
    (p1, h1, b1, port1), (_, h2, _, port2), (p3, h3, b3, _) = status_server.requests
    lower = [{k.lower(): v for k, v in h.items()} for h in (h1, h2, h3)]
    assert p1 == "/api/graphql" and json.loads(b1) == {"query": "query { ok }", "variables": {}}
    assert lower[0]["x-api-key"] == SECRET and lower[0]["x-client-name"] == "literal-agent"
    assert lower[0]["content-type"] == "application/json" and "x-client-version" in lower[0]
    assert "x-env" not in lower[0] and lower[1]["x-env"] == "staging"
    assert lower[2]["x-env"] == "experiment" and p3 == "/api/my-project"
    assert json.loads(b3) == {"x": 1}
    assert port1 == port2  # keep-alive: the second call reused the connection


def test_to_dict_never_fails_on_unserialisable_values() -> None:
    """Step.to_dict (used by other components) turns unknown values into strings too."""
    step = Step(id="s", input={"obj": Opaque(), "broken": Broken()}, metadata={"o": Opaque()})
    out = step.to_dict()
    assert out["input"] == {"obj": "<opaque 42>", "broken": "<unprintable Broken>"}
    assert out["metadata"] == {"o": "<opaque 42>"}
