"""Logging: JSON lines and console output, API-key redaction, stdlib routing, no feedback."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from agent._config import ClientConfig, CollectorConfig
from agent._logging import (
    MASK,
    configure_logging,
    get_logger,
    is_configured,
    redact,
    redact_secrets,
    register_secret,
    reset_logging,
)

SECRET = "sk-LOGTEST-5d1e8b27c9"  # registered below; must never be written out


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures logging for itself and leaves the process as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    reset_logging()
    assert root.handlers == handlers
    assert root.level == level


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


# --------------------------------------------------------------------------- output


def test_json_one_object_per_line() -> None:
    """format=json writes one JSON object per line with timestamp, level, logger, event."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    log = get_logger("agent.test")
    log.info("first", count=3)
    log.warning("second\nwith a newline", path="/x")
    log.debug("filtered out at info")
    records = json_lines(out)
    assert [r["event"] for r in records] == ["first", "second\nwith a newline"]
    first = records[0]
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["level"] == "info"
    assert first["logger"] == "agent.test"
    assert first["count"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", first["timestamp"])
    assert records[1]["level"] == "warning"


def test_level_filter() -> None:
    """The configured level decides what is written."""
    out = io.StringIO()
    configure_logging("json", "debug", out)
    get_logger("agent.test").debug("shown")
    configure_logging("json", "error", out)
    get_logger("agent.test").warning("hidden")
    get_logger("agent.test").error("shown too")
    assert [r["event"] for r in json_lines(out)] == ["shown", "shown too"]


def test_exceptions_are_rendered_in_json() -> None:
    """log.exception puts the traceback in an "exception" string field."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("agent.test").exception("failed")
    (record,) = json_lines(out)
    assert record["level"] == "error"
    assert "RuntimeError: boom" in record["exception"]


def test_console_renders_readably() -> None:
    """format=console writes human-readable lines, not JSON."""
    out = io.StringIO()
    configure_logging("console", "info", out)
    get_logger("agent.test").info("collector started", port=8799)
    text = out.getvalue()
    assert "collector started" in text
    assert "port=8799" in text
    assert "[agent.test]" in text
    assert "info" in text
    assert not text.lstrip().startswith("{")


def test_auto_picks_console_on_a_terminal() -> None:
    """format=auto: console on a real TTY (a pty here), JSON on anything else."""
    main, sub = os.openpty()
    try:
        with os.fdopen(sub, "w", closefd=False) as tty:
            configure_logging("auto", "info", tty)
            get_logger("agent.test").info("on a tty", x=1)
            tty.flush()
            raw = os.read(main, 65536).decode()
    finally:
        os.close(main)
        os.close(sub)
    assert "\x1b[" in raw  # colours on a terminal
    text = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    assert "on a tty" in text
    assert "x=1" in text
    assert '"event"' not in text

    out = io.StringIO()
    configure_logging("auto", "info", out)
    get_logger("agent.test").info("not a tty")
    assert json_lines(out)[0]["event"] == "not a tty"


def test_configure_is_idempotent() -> None:
    """Configuring twice installs one handler and writes each line once."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    configure_logging("json", "info", out)
    assert is_configured()
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "literal-agent"]
    assert len(ours) == 1
    get_logger("agent.test").info("once")
    logging.getLogger("some.library").warning("once too")
    assert [r["event"] for r in json_lines(out)] == ["once", "once too"]
    reset_logging()
    assert not is_configured()
    assert not [h for h in logging.getLogger().handlers if h.get_name() == "literal-agent"]


def test_reset_restores_the_previous_structlog_configuration() -> None:
    """reset_logging() puts back whatever structlog configuration was there before."""
    before = structlog.get_config()
    configure_logging("json", "info", io.StringIO())
    configure_logging("console", "debug", io.StringIO())
    assert structlog.get_config()["logger_factory"] is not before["logger_factory"]
    reset_logging()
    after = structlog.get_config()
    assert after["logger_factory"] is before["logger_factory"]
    assert after["processors"] == before["processors"]
    assert after["wrapper_class"] is before["wrapper_class"]


def test_invalid_arguments() -> None:
    """Unknown formats and levels are refused."""
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml")
    with pytest.raises(ValueError, match="log level"):
        configure_logging("json", "loud")


# --------------------------------------------------------------------------- redaction


def test_sensitive_keys_and_registered_secrets_are_masked() -> None:
    """api_key-like keys, nested headers and registered values never reach the output."""
    register_secret(SECRET)
    out = io.StringIO()
    configure_logging("json", "debug", out)
    log = get_logger("agent.test")
    log.info(
        "request",
        api_key="plain-unregistered-value",
        headers={"X-API-Key": "abc", "Authorization": "Bearer xyz", "accept": "json"},
        url=f"https://example.com/api?key={SECRET}",
        attempts=[{"token": "t0k3n"}, SECRET],
        password="hunter2",
        prompt_tokens=12,
        token_count=3,
        missing_key=None,
    )
    log.info(f"event text with {SECRET} inside")
    (first, second) = json_lines(out)
    assert first["api_key"] == MASK
    assert first["headers"] == {"X-API-Key": MASK, "Authorization": MASK, "accept": "json"}
    assert first["url"] == f"https://example.com/api?key={MASK}"
    assert first["attempts"] == [{"token": MASK}, MASK]
    assert first["password"] == MASK
    assert (first["prompt_tokens"], first["token_count"]) == (12, 3)
    assert second["event"] == f"event text with {MASK} inside"
    text = out.getvalue()
    for leaked in (SECRET, "plain-unregistered-value", "Bearer xyz", "hunter2", "t0k3n"):
        assert leaked not in text


def test_unset_key_stays_visible_as_unset() -> None:
    """api_key=None is logged as null: "not configured" stays diagnosable."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    get_logger("agent.test").warning("no key", api_key=None)
    assert json_lines(out)[0]["api_key"] is None


def test_configured_keys_are_registered_automatically() -> None:
    """Keys held by config Structs are masked wherever they show up, under any name."""
    client_key, collector_key = "sk-CLIENTCFG-0a9b8c7d", "ck-COLLECTORCFG-1f2e3d"
    ClientConfig(api_key=client_key)
    CollectorConfig(api_keys=(collector_key,))
    out = io.StringIO()
    configure_logging("console", "info", out)
    get_logger("agent.test").info("start", value=client_key, other=f"k={collector_key}")
    text = out.getvalue()
    assert client_key not in text
    assert collector_key not in text
    assert text.count(MASK) == 2


def test_secret_inside_an_object_repr_and_a_traceback() -> None:
    """The rendered line itself is scanned, so reprs and tracebacks cannot leak a key."""
    register_secret(SECRET)

    class Holder:
        def __repr__(self) -> str:
            return f"Holder({SECRET})"

    out = io.StringIO()
    configure_logging("json", "info", out)
    log = get_logger("agent.test")
    log.info("holder", holder=Holder())
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("failed")
    assert SECRET not in out.getvalue()
    holder, failed = json_lines(out)
    assert holder["holder"] == f"Holder({MASK})"
    assert f"ValueError: bad key {MASK}" in failed["exception"]


def test_short_secrets_only_mask_exact_values() -> None:
    """A toy key such as "k" masks a value equal to it, not every letter k."""
    register_secret("k")
    assert redact("k") == MASK
    assert redact("keep kittens") == "keep kittens"
    register_secret(SECRET)
    assert redact(f"a{SECRET}b") == f"a{MASK}b"
    register_secret(None)
    register_secret("")


def test_redact_secrets_processor_directly() -> None:
    """redact_secrets is a plain structlog processor (no configuration needed)."""
    register_secret(SECRET)
    event = {"event": f"x {SECRET}", "x-api-key": "v", "nested": {"cookie": "c", "n": 1}}
    assert redact_secrets(None, "info", event) == {
        "event": f"x {MASK}",
        "x-api-key": MASK,
        "nested": {"cookie": MASK, "n": 1},
    }


def test_capture_logs_sees_logger_events() -> None:
    """structlog's capture_logs works with our loggers (for other tests to assert events)."""
    configure_logging("json", "info", io.StringIO())
    with structlog.testing.capture_logs() as captured:
        get_logger("agent.test").warning("dropped", reason="queue_full", count=2)
    assert captured == [
        {"event": "dropped", "reason": "queue_full", "count": 2, "log_level": "warning"}
    ]


# --------------------------------------------------------------------------- stdlib


def test_stdlib_logging_is_routed_through_the_same_renderer() -> None:
    """httpx/uvicorn records come out as the same JSON lines, at WARNING for those libraries."""
    register_secret(SECRET)
    out = io.StringIO()
    configure_logging("json", "debug", out)
    logging.getLogger("httpx").info("HTTP Request: hidden at info")
    logging.getLogger("uvicorn.access").info("GET / 200 (hidden)")
    logging.getLogger("httpx").warning("retrying %s", f"https://h/?k={SECRET}")
    logging.getLogger("uvicorn.error").error("bind failed")
    logging.getLogger("agent.pipeline").debug("our stdlib-side debug shows at debug")
    try:
        raise OSError("disk full")
    except OSError:
        logging.getLogger("some.library").exception("write failed")
    records = json_lines(out)
    assert [(r["logger"], r["level"], r["event"]) for r in records] == [
        ("httpx", "warning", f"retrying https://h/?k={MASK}"),
        ("uvicorn.error", "error", "bind failed"),
        ("agent.pipeline", "debug", "our stdlib-side debug shows at debug"),
        ("some.library", "error", "write failed"),
    ]
    assert "OSError: disk full" in records[-1]["exception"]
    assert all("timestamp" in r for r in records)
    assert SECRET not in out.getvalue()


def test_library_loggers_with_their_own_handlers_are_taken_over() -> None:
    """uvicorn's default log_config gives its loggers own handlers and propagate=False;
    configure_logging takes them over, reset_logging gives them back."""
    uvicorn_error = logging.getLogger("uvicorn.error")
    before = (list(uvicorn_error.handlers), uvicorn_error.propagate, uvicorn_error.level)
    elsewhere = io.StringIO()
    own = logging.StreamHandler(elsewhere)
    uvicorn_error.addHandler(own)
    uvicorn_error.propagate = False
    try:
        out = io.StringIO()
        configure_logging("json", "info", out)
        uvicorn_error.error("Address already in use")
        assert json_lines(out)[0]["logger"] == "uvicorn.error"
        assert elsewhere.getvalue() == ""
        reset_logging()
        assert own in uvicorn_error.handlers
        assert uvicorn_error.propagate is False
    finally:
        uvicorn_error.removeHandler(own)
        uvicorn_error.propagate = before[1]
    assert (list(uvicorn_error.handlers), uvicorn_error.propagate, uvicorn_error.level) == before


def test_httpx_request_logs_never_contain_the_key() -> None:
    """Even when httpx's INFO request log is enabled, the key (header or URL) is masked."""
    key = "sk-HTTPXLOG-93f0a1b2c3"
    ClientConfig(api_key=key)  # registers it, as a loaded config does
    out = io.StringIO()
    configure_logging("json", "info", out)
    logging.getLogger("httpx").setLevel(logging.INFO)  # reset by reset_logging()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert request.headers["x-api-key"] == key
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.post("http://collector.test/api/graphql", headers={"x-api-key": key})
        client.get(f"http://collector.test/api/x?api_key={key}")
    records = json_lines(out)
    assert [r["logger"] for r in records] == ["httpx", "httpx"]
    assert records[0]["event"].startswith("HTTP Request: POST http://collector.test/api/graphql")
    assert MASK in records[1]["event"]
    assert key not in out.getvalue()


def test_own_logs_never_enter_stdlib_logging() -> None:
    """Agent logs go straight to the stream: no logging handler (ours or the host's) sees them.

    This is what keeps the agent's logs out of any handler that ships logs, such as an
    OpenTelemetry log exporter installed by the host application.
    """
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger()
    collect = Collect(level=logging.DEBUG)
    root.addHandler(collect)
    try:
        out = io.StringIO()
        configure_logging("json", "debug", out)
        get_logger("agent.pipeline").warning("batch dropped", reason="deadline")
        logging.getLogger("a.library").warning("library record")
    finally:
        root.removeHandler(collect)
    assert [r.name for r in seen] == ["a.library"]
    assert [r["event"] for r in json_lines(out)] == ["batch dropped", "library record"]
