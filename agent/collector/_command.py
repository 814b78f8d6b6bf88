"""`literal-agent collector`: run the self-hosted collector (uvicorn) until SIGTERM/SIGINT.

Settings come from the configuration (``[collector]`` section, ``--config`` file and
``LITERAL_AGENT_COLLECTOR_*`` variables, e.g. ``LITERAL_AGENT_COLLECTOR_API_KEYS=k1,k2``)
and the command-line flags, which win. Without any configured key the collector uses the key
stored in ``<data dir>/api_key``, creating it (mode 0600) on first start.

When ready it prints exactly one line to stdout::

    literal-agent collector listening on http://HOST:PORT (api key file: PATH)

(``PATH`` is ``-`` when the keys come from the configuration.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: Name of the generated key file inside the data directory.
API_KEY_FILE = "api_key"
#: Folder of uploaded files inside the data directory (SQLite; on PostgreSQL uploaded bytes
#: live in the database, shared by the replicas).
UPLOAD_DIR = "uploads"
READY_LINE = "literal-agent collector listening on {url} (api key file: {key_file})"


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """Resolved settings of one collector run."""

    host: str
    port: int
    data_dir: Path
    api_keys: tuple[str, ...]
    max_body_bytes: int
    database_url: str | None
    database_pool_size: int = 10
    ingest_journal: bool = True
    log_format: str = "auto"
    log_level: str = "info"


def add_parser(subparsers: Any) -> None:
    """Register ``collector`` on the CLI's sub-parsers."""
    parser = subparsers.add_parser(
        "collector",
        help="run the self-hosted Literal-AI-compatible collector",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--host", help="interface to bind (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port, 0 = any free port")
    parser.add_argument("--data-dir", help="database, uploads and generated key live here")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument(
        "--replay-dead-letters",
        action="store_true",
        help="store the batches kept in <database>-ingest/dead-letter/ again (once what made"
        " SQLite refuse them is fixed), then exit; the collector must not be running",
    )
    parser.set_defaults(func=run)


def resolve_settings(args: argparse.Namespace) -> CollectorSettings:
    """Merge configuration and flags."""
    from agent._config import load_config

    config = load_config(args.config)
    cfg = config.collector
    return CollectorSettings(
        host=args.host or cfg.host,
        port=cfg.port if args.port is None else args.port,
        data_dir=Path(args.data_dir or cfg.resolved_data_dir).expanduser(),
        api_keys=tuple(cfg.api_keys),
        max_body_bytes=cfg.max_body_bytes,
        database_url=cfg.database_url,
        database_pool_size=cfg.database_pool_size,
        ingest_journal=cfg.ingest_journal,
        log_format=config.logging.format,
        log_level=config.logging.level,
    )


def ensure_api_key(data_dir: Path) -> tuple[str, Path]:
    """Return the key stored in ``<data_dir>/api_key``, creating it (0600) when absent."""
    path = data_dir / API_KEY_FILE
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if not key:
            raise SystemExit(f"literal-agent collector: empty API key file {path}") from None
        return key, path
    key = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    print(f"literal-agent collector: created API key file {path}", file=sys.stderr, flush=True)
    log.info("created collector API key file", path=str(path))
    return key, path


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``SO_REUSEADDR``, so a restart can take the same port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets whose proto says TCP
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def open_storage(settings: CollectorSettings) -> Any:
    """The storage named by ``database_url`` (default: SQLite file in the data dir).

    An unusable URL or an unreachable database ends the command with a one-line message
    (no traceback; the URL's password is already redacted by the backend).
    """
    from agent.collector._backends import StorageOpenError
    from agent.collector._backends import open_storage as open_backend

    try:
        return open_backend(
            settings.database_url,
            settings.data_dir,
            pool_size=settings.database_pool_size,
            ingest_journal=settings.ingest_journal,
        )
    except (ValueError, StorageOpenError) as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise SystemExit(f"literal-agent collector: {message}") from None


def make_server(app: Any, on_ready: Callable[[], None] | None = None) -> Any:
    """A uvicorn server whose signal handling we own (see :func:`_serve`).

    ``on_ready`` is called once the listening sockets accept connections.
    """
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # handled by _serve: graceful exit with status 0, no re-raise

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready()

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


async def _serve(server: Any, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await server.serve(sockets=[sock])


#: Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.0005


def _tune_interpreter() -> None:
    """Service-process GC and GIL settings: ingest allocates many short-lived dicts (no
    cycles), and the writer thread hands the GIL back and forth with the event loop.

    The start-up objects (schema, modules) are frozen out of the collected generations and
    young collections run less often, which keeps full collections rare under load.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    # A thread waiting for the GIL gets it when the holder blocks or after this interval.
    # The SQLite writer releases the GIL around every statement it steps and needs it back
    # to go on, while the event loop checks the next batch: at the default 5 ms, the writer
    # mostly waits for the switch (measured at batch 500: ~52k -> ~59-67k steps/s at 0.5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL)


def _replay_dead_letters(storage: Any) -> int:
    """``--replay-dead-letters``: 0 when every dead letter is stored, else 1."""
    from agent.collector._storage import StorageError

    try:
        replay = getattr(storage, "replay_dead_letters", None)
        if replay is None:
            print("literal-agent collector: only SQLite has an ingest journal", file=sys.stderr)
            return 1
        stored, refused = replay()
    except StorageError as exc:  # no journal configured
        print(f"literal-agent collector: {exc}", file=sys.stderr)
        return 1
    finally:
        storage.close()
    for path, error in refused:
        print(f"literal-agent collector: {path} refused again: {error}", file=sys.stderr)
    print(f"literal-agent collector: {stored} dead-letter batches stored, {len(refused)} refused")
    return 1 if refused else 0


def run(args: argparse.Namespace) -> int:
    """Run the collector until SIGTERM or SIGINT; returns the exit status."""
    from agent._logging import configure_logging, register_secret
    from agent.collector._app import create_app

    settings = resolve_settings(args)
    configure_logging(settings.log_format, settings.log_level, secrets=settings.api_keys)
    if settings.api_keys:
        keys, key_file = settings.api_keys, "-"
    else:
        key, path = ensure_api_key(settings.data_dir)
        keys, key_file = (key,), str(path)
    for key in keys:
        register_secret(key)
    storage = open_storage(settings)
    if getattr(args, "replay_dead_letters", False):
        return _replay_dead_letters(storage)
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        storage.close()
        print(
            f"literal-agent collector: cannot bind {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(
        storage,
        api_keys=keys,
        max_body_bytes=settings.max_body_bytes,
        upload_dir=settings.data_dir / UPLOAD_DIR,
    )
    _tune_interpreter()
    line = READY_LINE.format(url=f"http://{shown}:{port}", key_file=key_file)

    def ready() -> None:
        print(line, flush=True)
        log.info(
            "collector listening", url=f"http://{shown}:{port}", data_dir=str(settings.data_dir)
        )

    server = make_server(app, on_ready=ready)
    try:
        asyncio.run(_serve(server, sock))
    finally:
        sock.close()
        storage.close()
    log.info("collector stopped")
    return 0
