"""Agent configuration: TOML files and environment variables, typed and validated.

The configuration is a tree of frozen :mod:`msgspec` Structs::

    AgentConfig
     ├── client     ClientConfig     the Literal API endpoint and its key
     ├── pipeline   PipelineConfig   queue bounds, overflow policy, batching
     ├── retry      RetryConfig      backoff and the per-batch time budget
     ├── spool      SpoolConfig      the on-disk spool of batches not yet delivered
     ├── daemon     DaemonConfig     the local daemon's socket(s) and durability
     ├── collector  CollectorConfig  the self-hosted collector
     └── logging    LoggingConfig    format and level of the agent's own logs

Each TOML table ``[client]``, ``[pipeline]``, ... maps to one Struct; ``config/agent.toml``
documents every key. :func:`load_config` reads, in increasing precedence:

1. the defaults (the ``DEFAULT_*`` constants below);
2. the TOML file (argument, else the file named by ``$LITERAL_AGENT_CONFIG``);
3. ``LITERAL_API_KEY``, ``LITERAL_API_URL``, ``LITERAL_ENV`` (as the reference SDK);
4. ``LITERAL_AGENT_<SECTION>_<KEY>``, e.g. ``LITERAL_AGENT_PIPELINE_BATCH_SIZE=100``,
   parsed to the field's type (lists are comma separated; optional values accept
   ``""``/``none``). Variables whose ``<SECTION>`` is not a section are ignored; an
   unknown ``<KEY>`` in a known section is an error.

Sizes (``*_bytes``) are integers or strings such as ``"64MiB"``, ``"1GB"``, ``"512k"``.
``socket_mode`` is an integer (TOML ``0o660``) or an octal string (``"0660"``).

Every problem raises :class:`ConfigError` (a ``ValueError``) whose message says where
(file or environment variable), which key and what is expected, e.g.::

    /etc/literal-agent/agent.toml: [pipeline] batch_size: expected an integer >= 1, got "ten"

All value rules live in one function, :func:`validate` (``load_config`` calls it; call it
yourself on Structs you build by hand). API keys stay plain ``str`` (``cfg.client.api_key``
goes straight into an httpx header) but never appear in a config's ``repr``/``str``/rich
repr or in an error message, and every Struct holding one registers it with
:func:`agent._logging.register_secret` when built, so no log line can contain it. The same
holds for the password of ``[collector] database_url`` (the repr shows the URL with
``***`` in its place).
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from agent._logging import redact, register_secret

__all__ = [
    "DEFAULT_API_URL",
    "ENV_API_KEY",
    "ENV_API_URL",
    "ENV_CONFIG",
    "ENV_ENVIRONMENT",
    "ENV_PREFIX",
    "RULES",
    "SECTIONS",
    "AgentConfig",
    "ClientConfig",
    "CollectorConfig",
    "ConfigError",
    "DaemonConfig",
    "LoggingConfig",
    "OverflowPolicy",
    "PipelineConfig",
    "RetryConfig",
    "SpoolConfig",
    "default_data_dir",
    "default_socket_path",
    "default_spool_dir",
    "env_var_name",
    "load_config",
    "parse_address",
    "parse_size",
    "validate",
]

# --------------------------------------------------------------------------- units

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
TiB: Final = 1024 * GiB

# --------------------------------------------------------------------------- environment

ENV_API_KEY: Final = "LITERAL_API_KEY"
"""API key of the Literal backend (same variable as the reference SDK)."""
ENV_API_URL: Final = "LITERAL_API_URL"
"""Base URL of the Literal backend (same variable as the reference SDK)."""
ENV_ENVIRONMENT: Final = "LITERAL_ENV"
"""Environment stamped on steps (sent as the ``x-env`` header)."""
ENV_CONFIG: Final = "LITERAL_AGENT_CONFIG"
"""Path of the TOML file :func:`load_config` reads when no path is given."""
ENV_PREFIX: Final = "LITERAL_AGENT_"
"""Prefix of the generic overrides ``LITERAL_AGENT_<SECTION>_<KEY>``."""

# --------------------------------------------------------------------------- defaults

# [client]
DEFAULT_API_URL: Final = "https://cloud.getliteral.ai"
DEFAULT_TIMEOUT: Final = 10.0  # seconds, whole request
DEFAULT_CONNECT_TIMEOUT: Final = 5.0  # seconds
DEFAULT_MAX_CONNECTIONS: Final = 10
# [pipeline]
DEFAULT_MAX_QUEUE_EVENTS: Final = 100_000
DEFAULT_MAX_QUEUE_BYTES: Final = 64 * MiB
DEFAULT_BLOCK_TIMEOUT: Final = 0.05  # seconds
DEFAULT_SPILL_WAIT: Final = 0.5  # seconds
DEFAULT_BATCH_SIZE: Final = 500  # events
DEFAULT_BATCH_BYTES: Final = 4 * MiB
DEFAULT_FLUSH_INTERVAL: Final = 0.2  # seconds
DEFAULT_MAX_IN_FLIGHT: Final = 2  # batches
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0  # seconds
# [retry]
DEFAULT_INITIAL_BACKOFF: Final = 0.1  # seconds
DEFAULT_MAX_BACKOFF: Final = 5.0  # seconds
DEFAULT_BACKOFF_MULTIPLIER: Final = 2.0
DEFAULT_JITTER: Final = 0.1  # seconds of random jitter added to each backoff
DEFAULT_RETRY_DEADLINE: Final = 30.0  # seconds per batch before it spills
DEFAULT_MAX_ATTEMPTS: Final = 10
# [spool]
DEFAULT_SPOOL_ENABLED: Final = True
DEFAULT_SPOOL_MAX_BYTES: Final = 1 * GiB
DEFAULT_SPOOL_SEGMENT_BYTES: Final = 16 * MiB
DEFAULT_FSYNC_INTERVAL: Final = 0.005  # seconds; None = leave it to the OS
DEFAULT_SPOOL_FULL_POLICY: Final = "drop_oldest"
SPOOL_FULL_POLICIES: Final = ("drop_oldest", "drop_newest")
DEAD_LETTER_FILENAME: Final = "dead-letter.jsonl"
# [daemon]
DEFAULT_SOCKET_MODE: Final = 0o660
DEFAULT_DAEMON_TCP_PORT: Final = 8798  # for `tcp = "127.0.0.1:8798"`; TCP is off by default
DEFAULT_DURABILITY: Final = "memory"
DURABILITIES: Final = ("memory", "disk")
DEFAULT_MAX_FRAME_BYTES: Final = 1 * MiB
DEFAULT_DAEMON_MAX_CONNECTIONS: Final = 256
DEFAULT_IDLE_TIMEOUT: Final = 60.0  # seconds
DEFAULT_DRAIN_TIMEOUT: Final = 5.0  # seconds
SOCKET_NAME: Final = "agent.sock"
# [collector]
DEFAULT_COLLECTOR_HOST: Final = "127.0.0.1"
DEFAULT_COLLECTOR_PORT: Final = 8799
DEFAULT_MAX_BODY_BYTES: Final = 16 * MiB
# [logging]
DEFAULT_LOG_FORMAT: Final = "auto"
LOG_FORMATS: Final = ("auto", "json", "console")
DEFAULT_LOG_LEVEL: Final = "info"
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

APP_DIR: Final = "literal-agent"


# --------------------------------------------------------------------------- helpers


def _masked_fields(struct: msgspec.Struct, secret: frozenset[str]) -> Iterator[tuple[str, Any]]:
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if name in secret and value is not None:
            value = tuple(_MASKED for _ in value) if isinstance(value, tuple) else _MASKED
        yield name, value


class _Masked:
    """Renders as ``***`` (no quotes) in a Struct's ``repr``."""

    def __repr__(self) -> str:
        return "***"


_MASKED: Final = _Masked()


def _masked_repr(struct: msgspec.Struct, secret: frozenset[str]) -> str:
    fields = ", ".join(f"{name}={value!r}" for name, value in _masked_fields(struct, secret))
    return f"{type(struct).__name__}({fields})"


class ConfigError(ValueError):
    """Invalid configuration: the message names the source, the key and what is expected.

    ``problems`` holds one line per problem found (all of them, not only the first).
    """

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = tuple(redact(p) for p in problems)
        super().__init__("\n".join(self.problems))


class OverflowPolicy(enum.StrEnum):
    """What the pipeline does with a new event when its queue is full."""

    SPILL = "spill"
    """Write the overflow to the spool (memory stays bounded, nothing is lost)."""
    DROP_NEWEST = "drop_newest"
    """Drop the event being added."""
    DROP_OLDEST = "drop_oldest"
    """Drop the oldest queued event to make room."""
    BLOCK = "block"
    """Block the producer up to ``block_timeout`` seconds, then drop the new event."""


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    value = env.get(var, "")
    if value and os.path.isabs(value):  # the spec says relative values are ignored
        return Path(value)
    return _home(env) / fallback


def default_spool_dir(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/literal-agent/spool``, else ``~/.local/state/literal-agent/spool``."""
    env = os.environ if env is None else env
    return str(_xdg(env, "XDG_STATE_HOME", ".local/state") / APP_DIR / "spool")


def default_data_dir(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_DATA_HOME/literal-agent``, else ``~/.local/share/literal-agent``."""
    env = os.environ if env is None else env
    return str(_xdg(env, "XDG_DATA_HOME", ".local/share") / APP_DIR)


def default_socket_path(env: Mapping[str, str] | None = None) -> str:
    """Where the daemon listens (and clients connect) when ``[daemon] socket`` is unset.

    ``$XDG_RUNTIME_DIR/literal-agent/agent.sock``; else, under systemd with
    ``RuntimeDirectory=literal-agent``, ``$RUNTIME_DIRECTORY/agent.sock`` (i.e.
    ``/run/literal-agent/agent.sock``); else ``/tmp/literal-agent-<uid>/agent.sock``.
    """
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return str(Path(runtime) / APP_DIR / SOCKET_NAME)
    service = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if service and os.path.isabs(service):
        return str(Path(service) / SOCKET_NAME)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return f"/tmp/{APP_DIR}-{uid}/{SOCKET_NAME}"  # noqa: S108 - per-uid dir, created 0700


_SIZE = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": TiB,
    "tib": TiB,
    "tb": 1000**4,
}


def parse_size(value: str | int) -> int:
    """Parse a size in bytes: ``4096``, ``"4096"``, ``"64MiB"``, ``"1GB"``, ``"1.5 GiB"``.

    ``KiB/MiB/GiB/TiB`` and bare ``K/M/G/T`` are powers of 1024; ``KB/MB/GB/TB`` are
    powers of 1000 (case-insensitive). Raises ``ValueError`` otherwise.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    unit = _SIZE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"not a size: {value!r}")
    try:
        number = Decimal(match.group(1).replace("_", ""))
    except InvalidOperation:
        raise ValueError(f"not a size: {value!r}") from None
    return int(number * unit)


def parse_address(value: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[::1]:8798"`` for IPv6) into ``(host, port)``.

    Raises ``ValueError`` if the host is empty or the port is not in 0-65535.
    """
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"not a host:port address: {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError if not
    elif ":" in host or any(c.isspace() for c in host):
        raise ValueError(f"not a host:port address: {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {value!r}")
    return host, port


# --------------------------------------------------------------------------- structs

_STRUCT: Final[dict[str, Any]] = {"frozen": True, "forbid_unknown_fields": True, "kw_only": True}


_CLIENT_SECRETS: Final = frozenset({"api_key"})
_COLLECTOR_SECRETS: Final = frozenset({"api_keys"})


class ClientConfig(msgspec.Struct, **_STRUCT):
    """Connection to the Literal API (hosted service or our collector)."""

    api_key: str | None = None
    """API key sent as ``x-api-key`` (env ``LITERAL_API_KEY``); masked in ``repr``."""
    url: str = DEFAULT_API_URL
    """Base URL of the API (env ``LITERAL_API_URL``); loading strips a trailing ``/``."""
    environment: str | None = None
    """Environment stamped on steps via ``x-env`` (env ``LITERAL_ENV``)."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds allowed for a whole request."""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    """Seconds allowed to establish a connection."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Size of the HTTP connection pool."""

    def __post_init__(self) -> None:
        register_secret(self.api_key)

    def __repr__(self) -> str:
        return _masked_repr(self, _CLIENT_SECRETS)

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(_masked_fields(self, _CLIENT_SECRETS))

    @classmethod
    def from_env(
        cls,
        *,
        api_key: str | None = None,
        url: str | None = None,
        environment: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        """Build a validated client config from environment variables only (no file).

        Reads ``LITERAL_API_KEY``, ``LITERAL_API_URL``, ``LITERAL_ENV`` and
        ``LITERAL_AGENT_CLIENT_*``; the non-``None`` arguments beat them (the reference
        SDK's ``LiteralClient(api_key=None, url=None)`` behaviour).
        """
        raw = _Raw()
        _read_env(os.environ if env is None else env, raw, only="client")
        for key, value in (("api_key", api_key), ("url", url), ("environment", environment)):
            if value is not None:
                raw.set("client", key, value, "argument", from_env=False)
        return _build(raw).client


class PipelineConfig(msgspec.Struct, **_STRUCT):
    """The in-process pipeline: bounded queue, overflow policy, batching, shutdown."""

    max_queue_events: int = DEFAULT_MAX_QUEUE_EVENTS
    """Most events held in memory."""
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    """Most encoded bytes held in memory."""
    overflow: OverflowPolicy = OverflowPolicy.SPILL
    """What to do with a new event when the queue is full."""
    block_timeout: float = DEFAULT_BLOCK_TIMEOUT
    """Seconds a producer may block with ``overflow = "block"``."""
    spill_wait: float = DEFAULT_SPILL_WAIT
    """Seconds a producer that outruns the disk may wait with ``overflow = "spill"``."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Most events per batch."""
    batch_bytes: int = DEFAULT_BATCH_BYTES
    """Most encoded bytes per batch."""
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    """Seconds a partial batch waits before it is sent."""
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    """Batches being sent concurrently."""
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    """Seconds given to flush at shutdown before what is left spills."""


class RetryConfig(msgspec.Struct, **_STRUCT):
    """Retry of failed sends: exponential backoff with jitter, bounded by a deadline."""

    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    """Seconds before the first retry."""
    max_backoff: float = DEFAULT_MAX_BACKOFF
    """Upper bound of one backoff, in seconds."""
    multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    """Factor applied to the backoff after each attempt."""
    jitter: float = DEFAULT_JITTER
    """Seconds of random jitter added to each backoff (uniform in [0, jitter])."""
    deadline: float = DEFAULT_RETRY_DEADLINE
    """Overall time budget per batch, in seconds, before it spills."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Most attempts per batch (the first one included)."""


class SpoolConfig(msgspec.Struct, **_STRUCT):
    """On-disk spool of batches not yet delivered."""

    enabled: bool = DEFAULT_SPOOL_ENABLED
    """Whether undeliverable batches go to disk (else they are dropped and counted)."""
    directory: str | None = None
    """Spool directory; ``None`` = :func:`default_spool_dir`."""
    max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    """Most bytes on disk."""
    segment_bytes: int = DEFAULT_SPOOL_SEGMENT_BYTES
    """Size at which a segment file is closed and a new one started."""
    fsync_interval: float | None = DEFAULT_FSYNC_INTERVAL
    """Seconds between fsyncs (0 = every write, ``None`` = never: left to the OS)."""
    full_policy: str = DEFAULT_SPOOL_FULL_POLICY
    """``"drop_oldest"`` or ``"drop_newest"`` when ``max_bytes`` is reached."""
    dead_letter: str | None = None
    """File receiving batches the backend rejects for good; ``None`` = next to the spool."""

    @property
    def resolved_directory(self) -> str:
        """``directory``, or :func:`default_spool_dir` when unset."""
        return self.directory or default_spool_dir()

    @property
    def resolved_dead_letter(self) -> str:
        """``dead_letter``, or ``<spool dir>/../dead-letter.jsonl`` when unset."""
        if self.dead_letter:
            return self.dead_letter
        return str(Path(self.resolved_directory).parent / DEAD_LETTER_FILENAME)


class DaemonConfig(msgspec.Struct, **_STRUCT):
    """The local daemon: where it listens and how it keeps accepted events."""

    socket: str | None = None
    """Unix socket path; ``None`` = :func:`default_socket_path`."""
    socket_mode: int = DEFAULT_SOCKET_MODE
    """Permissions of the socket file."""
    tcp: str | None = None
    """Also listen on TCP ``"host:port"`` (loopback unless you name another host)."""
    durability: str = DEFAULT_DURABILITY
    """``"memory"``: acknowledge when queued; ``"disk"``: when written to the spool."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest accepted frame."""
    max_connections: int = DEFAULT_DAEMON_MAX_CONNECTIONS
    """Most concurrent client connections."""
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds after which an idle connection is closed."""
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    """Seconds given to connections to finish at shutdown."""

    @property
    def resolved_socket(self) -> str:
        """``socket``, or :func:`default_socket_path` when unset."""
        return self.socket or default_socket_path()


class CollectorConfig(msgspec.Struct, **_STRUCT):
    """The self-hosted, Literal-compatible collector."""

    host: str = DEFAULT_COLLECTOR_HOST
    """Interface to bind."""
    port: int = DEFAULT_COLLECTOR_PORT
    """TCP port (0 = any free port)."""
    data_dir: str | None = None
    """Data directory (database, uploads, generated key); ``None`` = :func:`default_data_dir`."""
    api_keys: tuple[str, ...] = ()
    """Accepted ``x-api-key`` values (masked in ``repr``); empty = generate one."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest accepted request body (larger: 413)."""
    database_url: str | None = None
    """``None`` = SQLite file in ``data_dir``; its password is masked in ``repr``."""
    database_pool_size: int = 10
    """PostgreSQL: most connections one collector process opens (a pool; unused on SQLite)."""
    ingest_journal: bool = True
    """SQLite: answer a checked ``send_steps`` batch once it is appended to the ingest journal
    (``<database>-ingest``), committing to SQLite afterwards in large groups."""

    def __post_init__(self) -> None:
        for key in self.api_keys:
            register_secret(key)
        if self.database_url:
            from agent.collector._backends import url_secrets

            for password in url_secrets(self.database_url):
                register_secret(password)

    def _shown_fields(self) -> list[tuple[str, Any]]:
        from agent.collector._backends import redact_url

        return [
            (name, redact_url(value) if name == "database_url" and value else value)
            for name, value in _masked_fields(self, _COLLECTOR_SECRETS)
        ]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._shown_fields())
        return f"{type(self).__name__}({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return self._shown_fields()

    @property
    def resolved_data_dir(self) -> str:
        """``data_dir``, or :func:`default_data_dir` when unset."""
        return self.data_dir or default_data_dir()


class LoggingConfig(msgspec.Struct, **_STRUCT):
    """The agent's own logs (see :mod:`agent._logging`)."""

    format: str = DEFAULT_LOG_FORMAT
    """``"auto"`` (console on a TTY, else JSON), ``"json"`` or ``"console"``."""
    level: str = DEFAULT_LOG_LEVEL
    """``debug``, ``info``, ``warning``, ``error`` or ``critical``."""


class AgentConfig(msgspec.Struct, **_STRUCT):
    """The whole configuration; ``AgentConfig()`` is all defaults."""

    client: ClientConfig = msgspec.field(default_factory=ClientConfig)
    pipeline: PipelineConfig = msgspec.field(default_factory=PipelineConfig)
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    spool: SpoolConfig = msgspec.field(default_factory=SpoolConfig)
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    collector: CollectorConfig = msgspec.field(default_factory=CollectorConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)


SECTIONS: Final[dict[str, type[msgspec.Struct]]] = {
    "client": ClientConfig,
    "pipeline": PipelineConfig,
    "retry": RetryConfig,
    "spool": SpoolConfig,
    "daemon": DaemonConfig,
    "collector": CollectorConfig,
    "logging": LoggingConfig,
}
"""TOML table name -> Struct, in documentation order."""


def env_var_name(section: str, key: str) -> str:
    """``env_var_name("pipeline", "batch_size") == "LITERAL_AGENT_PIPELINE_BATCH_SIZE"``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class _Rule:
    """What one key accepts. ``kind`` is the value shape; the rest are bounds."""

    kind: str  # bool int size mode float str url address choice strlist
    optional: bool = False
    low: float | None = None
    low_open: bool = False  # True: value > low; False: value >= low
    high: float | None = None
    choices: tuple[str, ...] = ()
    enum: type[enum.StrEnum] | None = None
    secret: bool = False
    nonempty: bool = False


_GT0: Final[dict[str, Any]] = {"low": 0.0, "low_open": True}
_GE0: Final[dict[str, Any]] = {"low": 0.0}
_GE1: Final[dict[str, Any]] = {"low": 1}
_SIZE_RULE: Final[dict[str, Any]] = {"kind": "size", "low": 1}
_NONEMPTY: Final[dict[str, Any]] = {"nonempty": True}

_OVERRIDES: Final[dict[str, dict[str, dict[str, Any]]]] = {
    "client": {
        "api_key": {"secret": True, "nonempty": True},
        "url": {"kind": "url"},
        "environment": _NONEMPTY,
        "timeout": _GT0,
        "connect_timeout": _GT0,
        "max_connections": _GE1,
    },
    "pipeline": {
        "max_queue_events": _GE1,
        "max_queue_bytes": _SIZE_RULE,
        "block_timeout": _GT0,
        "spill_wait": _GT0,
        "batch_size": _GE1,
        "batch_bytes": _SIZE_RULE,
        "flush_interval": _GT0,
        "max_in_flight": _GE1,
        "shutdown_timeout": _GT0,
    },
    "retry": {
        "initial_backoff": _GT0,
        "max_backoff": _GT0,
        "multiplier": {"low": 1.0},
        "jitter": _GE0,
        "deadline": _GT0,
        "max_attempts": _GE1,
    },
    "spool": {
        "directory": _NONEMPTY,
        "max_bytes": _SIZE_RULE,
        "segment_bytes": _SIZE_RULE,
        "fsync_interval": _GE0,
        "full_policy": {"kind": "choice", "choices": SPOOL_FULL_POLICIES},
        "dead_letter": _NONEMPTY,
    },
    "daemon": {
        "socket": _NONEMPTY,
        "socket_mode": {"kind": "mode", "low": 0, "high": 0o777},
        "tcp": {"kind": "address"},
        "durability": {"kind": "choice", "choices": DURABILITIES},
        "max_frame_bytes": _SIZE_RULE,
        "max_connections": _GE1,
        "idle_timeout": _GT0,
        "drain_timeout": _GT0,
    },
    "collector": {
        "host": _NONEMPTY,
        "port": {"low": 0, "high": 65535},
        "data_dir": _NONEMPTY,
        "api_keys": {"secret": True, "nonempty": True},
        "max_body_bytes": _SIZE_RULE,
        "database_url": _NONEMPTY,
        "database_pool_size": {"low": 1, "high": 1000},
        "ingest_journal": {},
    },
    "logging": {
        "format": {"kind": "choice", "choices": LOG_FORMATS},
        "level": {"kind": "choice", "choices": LOG_LEVELS},
    },
}


def _base_rule(tp: Any) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base["optional"] = True
        tp = args[0]
    if tp is bool:
        base["kind"] = "bool"
    elif tp is int:
        base["kind"] = "int"
    elif tp is float:
        base["kind"] = "float"
    elif tp is str:
        base["kind"] = "str"
    elif isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        base.update(kind="choice", choices=tuple(m.value for m in tp), enum=tp)
    elif typing.get_origin(tp) is tuple:
        base["kind"] = "strlist"
    else:  # pragma: no cover - a field type this module does not know
        raise TypeError(f"unsupported config field type {tp!r}")
    return base


def _make_rules() -> dict[str, dict[str, _Rule]]:
    rules: dict[str, dict[str, _Rule]] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        overrides = _OVERRIDES.get(section, {})
        unknown = set(overrides) - set(cls.__struct_fields__)
        assert not unknown, f"rules for unknown keys [{section}] {unknown}"
        rules[section] = {
            key: _Rule(**{**_base_rule(hints[key]), **overrides.get(key, {})})
            for key in cls.__struct_fields__
        }
    return rules


RULES: Final = _make_rules()
"""``RULES[section][key]``: what each key accepts (used by loading and :func:`validate`)."""


def _bound(rule: _Rule) -> str:
    def fmt(x: float) -> str:
        return f"0o{int(x):03o}" if rule.kind == "mode" else f"{x:g}"

    if rule.low is not None and rule.high is not None:
        return f" between {fmt(rule.low)} and {fmt(rule.high)}"
    if rule.low is not None:
        return f" {'>' if rule.low_open else '>='} {fmt(rule.low)}"
    if rule.high is not None:
        return f" <= {fmt(rule.high)}"
    return ""


def _describe(rule: _Rule) -> str:
    """The "expected ..." part of an error message for *rule*."""
    kind = rule.kind
    if kind == "bool":
        text = "true or false"
    elif kind == "int":
        text = "an integer" + _bound(rule)
    elif kind == "size":
        text = f'a size in bytes{_bound(rule)} (an integer or a string like "64MiB")'
    elif kind == "mode":
        text = f'a file mode{_bound(rule)} (like 0o660, or the string "0660")'
    elif kind == "float":
        text = "a number" + _bound(rule)
    elif kind == "url":
        text = 'an http:// or https:// URL (like "https://cloud.getliteral.ai")'
    elif kind == "address":
        text = 'a "host:port" address (like "127.0.0.1:8798")'
    elif kind == "choice":
        text = "one of " + ", ".join(f'"{c}"' for c in rule.choices)
    elif kind == "strlist":
        text = "a list of non-empty strings" if rule.nonempty else "a list of strings"
    else:
        text = "a non-empty string" if rule.nonempty else "a string"
    if rule.optional and kind not in ("str", "url", "address"):
        text += ' (or "none")'
    return text


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _show(value: object, rule: _Rule) -> str:
    """How a bad value appears after "got": TOML-like, and never a secret."""
    if rule.secret:
        return f"{_type_name(value)} (value hidden)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if rule.kind == "mode" and isinstance(value, int):
        return f"{value} (= {oct(value)})"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


class _InvalidError(Exception):
    """Internal: a value does not fit its rule."""


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_NONE: Final = frozenset({"", "none", "null"})


def _coerce(rule: _Rule, value: Any, *, from_env: bool) -> Any:
    """Convert a TOML value (or, *from_env*, a string) to the field's type."""
    kind = rule.kind
    if rule.optional and isinstance(value, str):
        if kind in ("str", "url", "address"):
            if value == "":
                return None
        elif value.strip().lower() in _NONE:
            return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _InvalidError
    if kind in ("int", "size", "mode"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip()
            try:
                if kind == "size":
                    return parse_size(text)
                if kind == "mode":
                    return int(text.removeprefix("0o").removeprefix("0O") or "x", 8)
                if from_env:
                    return int(text)
            except ValueError:
                raise _InvalidError from None
        raise _InvalidError
    if kind == "float":
        number: float
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif from_env and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise _InvalidError from None
        else:
            raise _InvalidError
        if not math.isfinite(number):
            raise _InvalidError
        return number
    if kind == "strlist":
        if from_env and isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise _InvalidError
    if not isinstance(value, str):
        raise _InvalidError
    if kind == "choice":
        choice = value.strip().lower()
        if choice not in rule.choices:
            raise _InvalidError
        return rule.enum(choice) if rule.enum is not None else choice
    if kind == "url":
        return value.strip().rstrip("/")  # callers append "/api/graphql"
    if kind == "address":
        return value.strip()
    return value


def _is_http_url(value: str) -> bool:
    if any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError if the port is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check(rule: _Rule, value: Any) -> bool:
    """Whether an already typed *value* satisfies *rule*."""
    if value is None:
        return rule.optional
    kind = rule.kind
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("int", "size", "mode", "float"):
        numeric = (int, float) if kind == "float" else (int,)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return False
        if kind == "float" and not math.isfinite(value):
            return False
        if rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low):
            return False
        return rule.high is None or value <= rule.high
    if kind == "strlist":
        return isinstance(value, tuple | list) and all(
            isinstance(v, str) and (v.strip() or not rule.nonempty) for v in value
        )
    if not isinstance(value, str):
        return False
    if kind == "choice":
        return str(value) in rule.choices
    if kind == "url":
        return _is_http_url(value)
    if kind == "address":
        try:
            parse_address(value)
        except ValueError:
            return False
        return True
    return bool(value.strip()) or not rule.nonempty


# --------------------------------------------------------------------------- validation

_Origin = Callable[[str, str], str]
"""``origin(section, key)`` -> where the value came from (file path, env var, ...)."""
_DEFAULTS: Final = "<defaults>"


def _problem(source: str, section: str, key: str, expected: str, got: str) -> str:
    return f"{source}: [{section}] {key}: expected {expected}, got {got}"


_ORDERED: Final = (
    ("retry", "initial_backoff", "max_backoff"),
    ("spool", "segment_bytes", "max_bytes"),
    ("pipeline", "batch_bytes", "max_queue_bytes"),
    ("pipeline", "batch_size", "max_queue_events"),
)
"""Pairs ``(section, small, large)`` that must satisfy ``small <= large``."""

_NOUN: Final = {"size": "a size", "float": "a number", "int": "an integer"}


def _validate_section(
    section: str, struct: msgspec.Struct, origin: _Origin, *, cross: bool = True
) -> list[str]:
    problems = []
    for key, rule in RULES[section].items():
        value = getattr(struct, key)
        if not _check(rule, value):
            problems.append(
                _problem(origin(section, key), section, key, _describe(rule), _show(value, rule))
            )
    if problems or not cross:
        return problems
    # Rules between keys of one section: blame the key that was set, not the default.
    for pair_section, small, large in _ORDERED:
        if pair_section != section or getattr(struct, small) <= getattr(struct, large):
            continue
        key, other, relation = small, large, "<="
        if origin(section, small) == _DEFAULTS and origin(section, large) != _DEFAULTS:
            key, other, relation = large, small, ">="
        noun = _NOUN[RULES[section][key].kind]
        problems.append(
            _problem(
                origin(section, key),
                section,
                key,
                f"{noun} {relation} [{section}] {other} ({getattr(struct, other)})",
                str(getattr(struct, key)),
            )
        )
    return problems


def _validate(
    config: AgentConfig, origin: _Origin, *, no_cross: frozenset[str] = frozenset()
) -> list[str]:
    problems: list[str] = []
    for section in SECTIONS:
        struct = getattr(config, section)
        problems += _validate_section(section, struct, origin, cross=section not in no_cross)
    return problems


def validate(config: AgentConfig, *, source: str = "<config>") -> AgentConfig:
    """Check every value of *config* against its rule; return it or raise :class:`ConfigError`.

    This is the one place value rules are enforced: positive sizes and counts, timeouts
    > 0, enum values, port range, ``socket_mode`` in 0o000-0o777, ``tcp`` as
    ``host:port``, URLs, and the rules between keys (``max_backoff >= initial_backoff``,
    ``segment_bytes <= max_bytes``, ``batch_bytes <= max_queue_bytes``,
    ``batch_size <= max_queue_events``). *source* prefixes each message.
    """
    problems = _validate(config, lambda section, key: source)
    if problems:
        raise ConfigError(*problems)
    return config


# --------------------------------------------------------------------------- loading


@dataclass
class _Raw:
    """Raw values by section and key, each with the source it came from."""

    values: dict[str, dict[str, tuple[Any, str, bool]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def set(self, section: str, key: str, value: Any, source: str, *, from_env: bool) -> None:
        self.values.setdefault(section, {})[key] = (value, source, from_env)

    def origin(self, section: str, key: str) -> str:
        entry = self.values.get(section, {}).get(key)
        return entry[1] if entry else _DEFAULTS


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"? ' if close else ""


def _unknown_key(source: str, section: str, key: str) -> str:
    valid = list(RULES[section])
    return (
        f'{source}: [{section}] unknown key "{key}"; {_suggest(key, valid)}'
        f"valid keys: {', '.join(valid)}"
    )


def _read_file(path: str, raw: _Raw, *, named_by: str | None = None) -> None:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        note = f" (named by {named_by})" if named_by else ""
        raise ConfigError(
            f"{path}: cannot read configuration file{note}: {exc.strerror or exc}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: invalid TOML: not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if where:
            reason = message[: where.start()]
            location = f"line {where.group(1)}, column {where.group(2)}"
        else:
            reason = message.removesuffix(" (at end of document)")
            location = f"line {text.count(chr(10)) + 1} (end of file)"
        raise ConfigError(f"{path}: {location}: invalid TOML: {reason}") from None

    sections = list(SECTIONS)
    for name, table in document.items():
        if name in SECTIONS and not isinstance(table, dict):
            raw.problems.append(f"{path}: [{name}]: expected a table, got {_type_name(table)}")
            continue
        if not isinstance(table, dict):
            owners = [s for s in sections if name in RULES[s]]
            hint = f"did you mean [{owners[0]}] {name}? " if owners else ""
            raw.problems.append(
                f'{path}: unknown top-level key "{name}"; keys belong in a section: '
                f"{hint}valid sections: {', '.join(f'[{s}]' for s in sections)}"
            )
            continue
        if name not in SECTIONS:
            close = difflib.get_close_matches(name, sections, n=1, cutoff=0.6)
            hint = f"did you mean [{close[0]}]? " if close else ""
            raw.problems.append(
                f"{path}: unknown section [{name}]; {hint}"
                f"valid sections: {', '.join(f'[{s}]' for s in sections)}"
            )
            continue
        for key, value in table.items():
            if key not in RULES[name]:
                raw.problems.append(_unknown_key(path, name, key))
            else:
                raw.set(name, key, value, path, from_env=False)


def _read_env(env: Mapping[str, str], raw: _Raw, *, only: str | None = None) -> None:
    # The reference SDK's variables first, so that LITERAL_AGENT_CLIENT_* beat them.
    for var, key in (
        (ENV_API_KEY, "api_key"),
        (ENV_API_URL, "url"),
        (ENV_ENVIRONMENT, "environment"),
    ):
        value = env.get(var)
        if value:
            raw.set("client", key, value, f"environment variable {var}", from_env=True)
    # Longest section names first, in case one ever prefixes another.
    sections = sorted(SECTIONS, key=len, reverse=True)
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG:
            continue
        rest = var[len(ENV_PREFIX) :]
        section = next((s for s in sections if rest.startswith(s.upper() + "_")), None)
        if section is None or (only is not None and section != only):
            continue  # not ours (documented: unknown sections are ignored)
        key = rest[len(section) + 1 :].lower()
        source = f"environment variable {var}"
        if key not in RULES[section]:
            valid = list(RULES[section])
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f"did you mean {env_var_name(section, close[0])}? " if close else ""
            raw.problems.append(
                f'{source}: [{section}] unknown key "{key}"; {hint}valid keys: {", ".join(valid)}'
            )
            continue
        raw.set(section, key, env[var], source, from_env=True)


def _build(raw: _Raw) -> AgentConfig:
    """Coerce *raw* values, build the Structs, validate them; raise on any problem."""
    problems = list(raw.problems)
    failed: set[str] = set()  # sections with a value of the wrong type
    kwargs: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for section, entries in raw.values.items():
        for key, (value, source, from_env) in entries.items():
            rule = RULES[section][key]
            if rule.secret and isinstance(value, str):
                register_secret(value)
            elif rule.secret and isinstance(value, list | tuple):
                for item in value:
                    if isinstance(item, str):
                        register_secret(item)
            try:
                kwargs[section][key] = _coerce(rule, value, from_env=from_env)
            except _InvalidError:
                problems.append(_problem(source, section, key, _describe(rule), _show(value, rule)))
                failed.add(section)  # that key keeps its default; still check the others
    sections: dict[str, Any] = {name: cls(**kwargs[name]) for name, cls in SECTIONS.items()}
    config = AgentConfig(**sections)
    problems += _validate(config, raw.origin, no_cross=frozenset(failed))
    if problems:
        raise ConfigError(*problems)
    return config


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Load the configuration: defaults < TOML file < environment variables.

    *path* ``None`` means the file named by ``$LITERAL_AGENT_CONFIG``, or no file.
    *env* defaults to ``os.environ`` (pass a dict in tests). Raises :class:`ConfigError`
    listing every problem found.
    """
    env = os.environ if env is None else env
    raw = _Raw()
    named_by = None
    if path is None and env.get(ENV_CONFIG):
        path, named_by = env[ENV_CONFIG], ENV_CONFIG
    if path is not None:
        _read_file(os.fspath(path), raw, named_by=named_by)
    _read_env(env, raw)
    return _build(raw)
