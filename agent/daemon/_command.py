"""`literal-agent run`: the daemon. Listens on a local socket and feeds the pipeline.

Sockets: those passed by systemd socket activation (``LISTEN_FDS``) when present, else the
Unix socket ``[daemon] socket`` (default :func:`~agent._config.default_socket_path`, mode
``socket_mode``) plus, when ``[daemon] tcp`` is set, a TCP listener.

When ready it prints exactly one line to stdout and notifies systemd (``READY=1``)::

    literal-agent daemon listening on unix:/run/literal-agent/agent.sock (durability memory)

Signals: SIGTERM/SIGINT stop accepting, then drain the pipeline to the backend within
``[daemon] drain_timeout`` seconds; what is still undelivered goes to the spool (exit 0).
SIGHUP reloads the configuration file; see :func:`reloadable` for what changes live.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from agent.daemon._backend import Backend, MemoryBackend, PipelineBackend
from agent.daemon._server import DaemonServer, Durability, ServerSettings
from agent.daemon._sockets import bind_tcp, bind_unix
from agent.daemon._systemd import listen_fds, notify, watchdog_interval

if TYPE_CHECKING:
    from agent._config import AgentConfig
    from agent.pipeline import Pipeline

__all__ = [
    "GC_THRESHOLDS",
    "READY_LINE",
    "Daemon",
    "add_parser",
    "reloadable",
    "run",
    "server_settings",
    "tune_gc",
]

log = structlog.get_logger(__name__)

READY_LINE = "literal-agent daemon listening on {addresses} (durability {durability})"


def add_parser(subparsers: Any) -> None:
    """Register ``run`` on the CLI's sub-parsers."""
    parser = subparsers.add_parser(
        "run",
        help="run the daemon: a local socket any process can feed",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--socket", help="Unix socket path (default from config)")
    parser.add_argument("--tcp", help="also listen on HOST:PORT (loopback)")
    parser.add_argument("--durability", choices=("memory", "disk"), help="ack policy")
    parser.add_argument("--api-key", help="backend API key (default: config / LITERAL_API_KEY)")
    parser.add_argument("--url", help="backend URL (default: config / LITERAL_API_URL)")
    parser.add_argument(
        "--discard",
        action="store_true",
        help="accept and count events but send nothing (measures the intake alone)",
    )
    parser.set_defaults(func=run)


def load(args: argparse.Namespace) -> AgentConfig:
    """The configuration with this command's flags applied."""
    from agent._config import load_config

    config = load_config(getattr(args, "config", None))
    daemon = config.daemon
    changes: dict[str, Any] = {}
    if getattr(args, "socket", None):
        changes["socket"] = args.socket
    if getattr(args, "tcp", None):
        changes["tcp"] = args.tcp
    if getattr(args, "durability", None):
        changes["durability"] = args.durability
    if changes:
        daemon = msgspec.structs.replace(daemon, **changes)
    client = config.client
    if getattr(args, "api_key", None) or getattr(args, "url", None):
        client = msgspec.structs.replace(
            client, api_key=args.api_key or client.api_key, url=args.url or client.url
        )
    return msgspec.structs.replace(config, daemon=daemon, client=client)


#: Cyclic-GC thresholds of the daemon process (see :func:`tune_gc`).
GC_THRESHOLDS = (100_000, 50, 1000)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process that queues many small dicts.

    Queued events are acyclic containers (freed by reference counting), but with the
    default thresholds every few hundred allocations trigger a collection that traverses
    them all: measured at 4x the cost of the whole intake path with 400k events queued.
    Start-up objects are frozen out of the collector's view, and collections happen after
    100,000 allocations instead of 700 (cycles are still collected).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def server_settings(config: AgentConfig) -> ServerSettings:
    """The listener's settings from ``[daemon]``."""
    d = config.daemon
    durability: Durability = "disk" if d.durability == "disk" else "memory"
    return ServerSettings(
        durability=durability,
        max_frame_bytes=d.max_frame_bytes,
        max_connections=d.max_connections,
        idle_timeout=d.idle_timeout,
    )


def reloadable(old: AgentConfig, new: AgentConfig) -> tuple[AgentConfig, list[str]]:
    """What SIGHUP applies: ``[logging]`` and the listener limits of ``[daemon]``.

    ``durability``, ``max_frame_bytes``, ``max_connections`` and ``idle_timeout`` apply to
    connections opened after the reload. Everything else (sockets, backend, pipeline, spool)
    needs a restart: the names of the keys that changed but were not applied are returned.
    """
    live = ("durability", "max_frame_bytes", "max_connections", "idle_timeout")
    daemon = msgspec.structs.replace(old.daemon, **{k: getattr(new.daemon, k) for k in live})
    applied = msgspec.structs.replace(old, daemon=daemon, logging=new.logging)
    ignored = [
        f"{section}.{key}"
        for section in ("client", "pipeline", "retry", "spool", "daemon", "collector")
        for key in msgspec.structs.asdict(getattr(new, section))
        if getattr(getattr(applied, section), key) != getattr(getattr(new, section), key)
    ]
    return applied, ignored


@dataclass
class Daemon:
    """One daemon run: config, sockets, backend, server; driven by :meth:`serve`."""

    config: AgentConfig
    config_path: str | None = None
    discard: bool = False
    ready_stream: Any = None
    sockets: list[socket.socket] = field(default_factory=list)
    owned_paths: list[Path] = field(default_factory=list)
    pipeline: Pipeline | None = None
    server: DaemonServer | None = None
    _stop: asyncio.Event | None = None

    def open_sockets(self) -> None:
        """Take the systemd sockets, or bind our own."""
        self.sockets = listen_fds()
        if self.sockets:
            log.info("daemon.socket_activation", count=len(self.sockets))
            return
        d = self.config.daemon
        path = Path(d.resolved_socket)
        self.sockets.append(bind_unix(path, d.socket_mode))
        self.owned_paths.append(path)
        if d.tcp:
            self.sockets.append(bind_tcp(d.tcp))

    def make_backend(self) -> Backend:
        if self.discard:
            return MemoryBackend(keep=False)
        from agent.pipeline import Pipeline

        self.pipeline = Pipeline(self.config)
        return PipelineBackend(self.pipeline)

    def stop(self) -> None:
        """Ask :meth:`serve` to return (thread-safe only from the loop's thread)."""
        if self._stop is not None:
            self._stop.set()

    async def serve(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`), then drain and spool."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.server = DaemonServer(self.make_backend(), server_settings(self.config))
        tune_gc()
        await self.server.start(self.sockets)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        addresses = " ".join(self.server.addresses)
        durability = self.server.settings.durability
        line = READY_LINE.format(addresses=addresses, durability=durability)
        print(line, file=self.ready_stream or sys.stdout, flush=True)
        log.info("daemon.ready", listening=self.server.addresses, durability=durability)
        notify(f"READY=1\nSTATUS=listening on {addresses}\nMAINPID={os.getpid()}")
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await self._stop.wait()
        finally:
            watchdog.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, then drain the pipeline within ``drain_timeout`` and spool the rest."""
        assert self.server is not None
        notify("STOPPING=1\nSTATUS=draining")
        drain = self.config.daemon.drain_timeout
        log.info("daemon.stopping", drain_timeout=drain)
        await self.server.close(grace=min(1.0, drain / 2))
        for path in self.owned_paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self.pipeline is not None:
            pipeline = self.pipeline
            await asyncio.to_thread(pipeline.shutdown, drain)
            stats = pipeline.stats().as_dict()
            log.info("daemon.stopped", pipeline=stats)
        for sock in self.sockets:
            sock.close()

    def reload(self) -> None:
        """SIGHUP: re-read the configuration and apply what can change live."""
        from agent._config import ConfigError, load_config
        from agent._logging import configure_logging

        try:
            fresh = load_config(self.config_path)
        except (ConfigError, OSError) as exc:
            log.error("daemon.reload_failed", error=str(exc))
            return
        self.config, ignored = reloadable(self.config, fresh)
        configure_logging(self.config.logging.format, self.config.logging.level)
        if self.server is not None:
            self.server.settings = server_settings(self.config)
        log.info("daemon.reloaded", needs_restart=ignored or None)

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``literal-agent run``."""
    from agent._config import ConfigError
    from agent._logging import configure_logging

    try:
        config = load(args)
    except ConfigError as exc:
        print(f"literal-agent run: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging.format, config.logging.level)
    if config.daemon.durability == "disk" and not config.spool.enabled:
        print("literal-agent run: durability = disk needs [spool] enabled = true", file=sys.stderr)
        return 2
    daemon = Daemon(config, config_path=args.config, discard=args.discard)
    try:
        daemon.open_sockets()
    except OSError as exc:
        print(f"literal-agent run: cannot listen: {exc}", file=sys.stderr)
        return 1
    asyncio.run(daemon.serve())
    return 0
