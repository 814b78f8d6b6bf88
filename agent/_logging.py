"""Logging for the agent's own processes: structlog setup and API-key redaction.

Output
    :func:`configure_logging` renders one JSON object per line (``timestamp``,
    ``level``, ``logger``, ``event`` plus the bound keys) for services, or readable
    console lines when the stream is a terminal (``format="auto"``). Output goes to
    ``stderr`` unless another stream is given. Calling it again replaces the previous
    configuration (idempotent: no duplicated handlers).

Redaction (always installed)
    :func:`redact_secrets` masks, anywhere in the event dict (nested dicts, lists and
    tuples included), the values of keys named like ``api_key``, ``x-api-key``,
    ``authorization``, ``token``, ``password`` or ``secret``; every value equal to a
    secret registered with :func:`register_secret` (also inside longer strings, for
    secrets of at least :data:`MIN_SUBSTRING_SECRET` characters). The rendered line is
    scanned once more for registered secrets, so a key hidden inside an arbitrary
    object's ``repr`` is masked too. :func:`redact` applies the same masking to any
    string (error messages). Configuration objects register their API keys themselves
    when they are built.

Standard library logging
    Records of ``logging`` loggers (httpx, httpcore, uvicorn, ...) go through the
    same timestamp/level/redaction/renderer chain via a handler on the root logger.
    The noisy libraries in :data:`LIBRARY_LOGGERS` are held at ``WARNING`` (or the
    configured level if higher), and their own handlers are removed so that their
    records propagate here. httpx logs request URLs (never headers) at INFO; the
    redaction above covers keys in URLs anyway. uvicorn re-installs its handlers when a
    ``uvicorn.Config`` is built with the default ``log_config``: pass ``log_config=None``.

No feedback into telemetry
    The agent's own structlog output is written straight to a stream by a structlog
    ``WriteLogger``: it never passes through the ``logging`` module, so no handler
    (ours or the host application's, such as an OpenTelemetry log exporter) can ship
    it into the telemetry pipeline. This module installs no handler that sends
    anything anywhere but the given stream. Do not add one.

Library mode
    :func:`configure_logging` is for entry points (CLI, daemon, collector, ``up``).
    Library code (the client hook inside a user's process) only calls
    :func:`get_logger` and leaves the process's logging to its owner.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "LIBRARY_LOGGERS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MASK",
    "MIN_SUBSTRING_SECRET",
    "LogFormat",
    "configure_logging",
    "get_logger",
    "is_configured",
    "redact",
    "redact_secrets",
    "register_secret",
    "reset_logging",
]

LogFormat = Literal["auto", "json", "console"]

MASK: Final = "***"
"""What a secret is replaced with."""

LOG_FORMATS: Final[tuple[str, ...]] = ("auto", "json", "console")
LOG_LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

LIBRARY_LOGGERS: Final[tuple[str, ...]] = (
    "httpx",
    "httpcore",
    "hpack",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "asyncio",
)
"""Standard-library loggers kept at WARNING (or the configured level if higher)."""

MIN_SUBSTRING_SECRET: Final = 6
"""Registered secrets at least this long are also masked inside longer strings.

Shorter ones (toy keys in tests) are masked only where a value equals them, so that a
key like ``"k"`` does not blank out every letter k of every log line."""

_SENSITIVE_KEY = re.compile(
    r"""^(?:x_)?api_?keys?$          # api_key, apikey, x-api-key, api_keys
       |authorization
       |(?:^|_)token$                # token, access_token (not tokens, token_count)
       |passw(?:or)?d
       |(?:^|_)secret$
       |cookie
    """,
    re.VERBOSE,
)
_MAX_DEPTH: Final = 8

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, replaced atomically (copy on write)
_configured = False
_handler: logging.Handler | None = None
_saved_libraries: dict[str, tuple[int, list[logging.Handler], bool]] = {}
_saved_root_level: int | None = None
_saved_structlog: dict[str, Any] | None = None


# --------------------------------------------------------------------------- secrets


def register_secret(value: str | None) -> None:
    """Add *value* to the secrets masked in every log line and by :func:`redact`.

    ``None`` and empty strings are ignored; registering twice is harmless.
    """
    global _secrets
    if not value:
        return
    value = str(value)
    with _lock:
        if value in _secrets:
            return
        _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def redact(text: str) -> str:
    """Return *text* with every registered secret replaced by :data:`MASK`."""
    secrets = _secrets
    if not secrets or not text:
        return text
    for secret in secrets:
        if text == secret:
            return MASK
        if len(secret) >= MIN_SUBSTRING_SECRET and secret in text:
            text = text.replace(secret, MASK)
    return text


def _is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    return _SENSITIVE_KEY.search(key.lower().replace("-", "_")) is not None


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, MutableMapping | dict):
        return {
            k: (MASK if _is_sensitive_key(k) and v is not None else _redact_value(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_value(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact_value(v, depth + 1) for v in value)
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask API keys anywhere in the event dict.

    Values of sensitive keys (``api_key``, ``x-api-key``, ``authorization``,
    ``token``, ``password``, ``secret``, ...) become :data:`MASK` (``None`` stays
    ``None``, which tells "not set" apart from "set"); registered secrets are masked
    wherever they appear in strings, at any nesting depth.
    """
    for key, value in list(event_dict.items()):
        if _is_sensitive_key(key) and value is not None:
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


_FIRST_KEYS: Final = ("timestamp", "level", "logger", "event")


def _order_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Put ``timestamp``, ``level``, ``logger``, ``event`` first in JSON lines."""
    ordered = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


class _RedactRendered:
    """Wrap a renderer and mask registered secrets in the final string once more."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        rendered = self._renderer(logger, method_name, event_dict)
        text = rendered if isinstance(rendered, str) else str(rendered)
        return redact(text)


# --------------------------------------------------------------------------- loggers


class _NamedWriteLogger(structlog.WriteLogger):
    """A :class:`structlog.WriteLogger` that knows the name it was created with."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _NamedWriteLogger(self._file, name)


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if "logger" not in event_dict:
        record = event_dict.get("_record")
        name = record.name if record is not None else getattr(logger, "name", None)
        if name:
            event_dict["logger"] = name
    return event_dict


def _normalize_level(method_name: str, event_dict: EventDict) -> EventDict:
    if event_dict.get("level") == "warn":
        event_dict["level"] = "warning"
    return event_dict


def _add_level(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    return _normalize_level(
        method_name, structlog.processors.add_log_level(logger, method_name, event_dict)
    )


def _use_console(format: str, stream: TextIO) -> bool:
    if format == "console":
        return True
    if format == "json":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # closed or detached stream
        return False


def configure_logging(
    format: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog and stdlib logging for an agent process.

    *format*: ``"json"`` (one object per line), ``"console"`` (human readable) or
    ``"auto"`` (console if *stream* is a TTY, JSON otherwise). *level*: ``debug``,
    ``info``, ``warning``, ``error`` or ``critical``. *stream* defaults to
    ``sys.stderr`` at call time. *secrets* are passed to :func:`register_secret`.
    Calling it again replaces the previous configuration.
    """
    global _configured, _handler, _saved_root_level, _saved_structlog
    fmt = format.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format: expected one of {', '.join(LOG_FORMATS)}, got {format!r}")
    level_name = level.strip().lower()
    if level_name == "warn":
        level_name = "warning"
    if level_name not in LOG_LEVELS:
        raise ValueError(f"log level: expected one of {', '.join(LOG_LEVELS)}, got {level!r}")
    for secret in secrets:
        register_secret(secret)
    out: TextIO = stream if stream is not None else sys.stderr
    levelno = LOG_LEVELS[level_name]
    console = _use_console(fmt, out)

    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=_use_console("auto", out),
            exception_formatter=structlog.dev.plain_traceback,
        )
    else:
        json_renderer = structlog.processors.JSONRenderer(default=repr)

        def renderer(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
            rendered = json_renderer(
                logger, method_name, _order_keys(logger, method_name, event_dict)
            )
            return str(rendered)

    final = _RedactRendered(renderer)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)

    if not _configured:
        saved = structlog.get_config()
        saved["processors"] = list(saved["processors"])
        _saved_structlog = saved
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_level,
            _add_logger_name,
            timestamper,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            final,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=_NamedWriteLoggerFactory(out),
        context_class=dict,
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_add_level, _add_logger_name, timestamper],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            final,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name("literal-agent")

    with _lock:
        root = logging.getLogger()
        if _handler is not None:
            root.removeHandler(_handler)
            _handler.close()
        else:
            _saved_root_level = root.level
        root.addHandler(handler)
        root.setLevel(levelno)
        _handler = handler
        for name in LIBRARY_LOGGERS:
            lib = logging.getLogger(name)
            if name not in _saved_libraries:
                _saved_libraries[name] = (lib.level, list(lib.handlers), lib.propagate)
            # Take the library's records over (uvicorn's default log_config gives its
            # loggers their own handlers and propagate=False).
            for own in list(lib.handlers):
                lib.removeHandler(own)
            lib.propagate = True
            lib.setLevel(max(logging.WARNING, levelno))
        _configured = True


def reset_logging() -> None:
    """Undo :func:`configure_logging`: the structlog configuration, root handler and levels
    in place before it are restored.

    For tests; registered secrets stay registered.
    """
    global _configured, _handler, _saved_root_level, _saved_structlog
    with _lock:
        if _saved_structlog is not None:
            structlog.configure(**_saved_structlog)
            _saved_structlog = None
        root = logging.getLogger()
        if _handler is not None:
            root.removeHandler(_handler)
            _handler.close()
            _handler = None
        if _saved_root_level is not None:
            root.setLevel(_saved_root_level)
            _saved_root_level = None
        for name, (lvl, handlers, propagate) in _saved_libraries.items():
            lib = logging.getLogger(name)
            lib.setLevel(lvl)
            for own in handlers:
                lib.addHandler(own)
            lib.propagate = propagate
        _saved_libraries.clear()
        _configured = False


def is_configured() -> bool:
    """Whether :func:`configure_logging` is in effect."""
    return _configured


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """Return a structlog logger; *name* shows as the ``logger`` key of each line.

    Same as ``structlog.get_logger(name)``. Safe to call at import time: the
    configuration is looked up when the logger is first used.
    """
    if name is None:
        return structlog.get_logger(**initial_values)
    return structlog.get_logger(name, **initial_values)
