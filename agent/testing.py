"""Test helpers: run a real collector on loopback, in a thread or as a separate process.

``CollectorThread`` runs the ASGI app under uvicorn in a background thread of the current
process (fast; for most tests). ``CollectorProcess`` runs ``python -m agent collector`` as a
subprocess (for outage tests: ``stop()`` sends SIGTERM, ``kill()`` SIGKILL, ``restart()`` brings
it back on the same port). Both wait for readiness by polling ``GET /health``, never by
sleeping a fixed time, and expose ``.url``, ``.api_key`` and ``.data_dir``.

The subprocess receives its key through the environment variable
``LITERAL_AGENT_COLLECTOR_API_KEYS`` (:data:`ENV_COLLECTOR_API_KEYS`, comma-separated).

Both store in SQLite under ``data_dir`` by default; ``database_url="postgresql://..."``
selects PostgreSQL instead (the subprocess gets it as
``LITERAL_AGENT_COLLECTOR_DATABASE_URL``, :data:`ENV_COLLECTOR_DATABASE_URL`).
:func:`pg_database` makes a fresh, empty schema on a PostgreSQL server for one test (the
server named by ``LITERAL_TEST_POSTGRES_URL``, :data:`ENV_TEST_POSTGRES_URL`, by default).

Example::

    with CollectorThread(tmp_path) as collector:
        api = LiteralAPI(api_key=collector.api_key, url=collector.url)

    with pg_database() as url, CollectorThread(tmp_path, database_url=url) as collector:
        ...
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

__all__ = [
    "ENV_COLLECTOR_API_KEYS",
    "ENV_COLLECTOR_DATABASE_URL",
    "ENV_TEST_POSTGRES_URL",
    "CollectorProcess",
    "CollectorThread",
    "pg_database",
]

#: Environment variable read by ``literal-agent collector`` for its accepted keys.
ENV_COLLECTOR_API_KEYS = "LITERAL_AGENT_COLLECTOR_API_KEYS"
#: Environment variable read by ``literal-agent collector`` for its database URL.
ENV_COLLECTOR_DATABASE_URL = "LITERAL_AGENT_COLLECTOR_DATABASE_URL"
#: PostgreSQL server used by the tests (``.ci/run`` starts one and sets it).
ENV_TEST_POSTGRES_URL = "LITERAL_TEST_POSTGRES_URL"
_READY_PREFIX = "literal-agent collector listening on "
_START_TIMEOUT = 20.0


def _wait_healthy(url: str, deadline: float, alive: Any = None) -> None:
    """Poll ``url/health`` until it answers 200 or ``deadline`` (monotonic) passes."""
    delay = 0.005
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if alive is not None and not alive():
                raise RuntimeError(f"collector at {url} exited before becoming ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"collector at {url} not ready in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _schema_url(server_url: str, schema: str) -> str:
    """``server_url`` with ``search_path`` set to ``schema`` (libpq ``options``)."""
    parts = urlsplit(server_url)
    query = "&".join(q for q in (parts.query, f"options=-csearch_path%3D{schema}") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@contextmanager
def pg_database(server_url: str | None = None) -> Iterator[str]:
    """A fresh empty schema on a PostgreSQL server (dropped on exit); yields a URL using it.

    ``server_url`` defaults to ``$LITERAL_TEST_POSTGRES_URL``. A schema rather than a database
    per use: ``CREATE DATABASE`` costs ~0.5 s. Needs psycopg (the ``postgres`` extra).
    """
    import psycopg

    server = server_url or os.environ.get(ENV_TEST_POSTGRES_URL)
    if not server:
        raise RuntimeError(f"no PostgreSQL server: set {ENV_TEST_POSTGRES_URL}")
    name = f"literal_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}".encode())
    try:
        yield _schema_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE".encode())


class CollectorThread:
    """A collector served by uvicorn in a background thread on 127.0.0.1.

    The storage is SQLite in ``data_dir`` unless ``database_url`` names another (see
    :func:`agent.collector._backends.open_storage`); uploads still go under ``data_dir``.
    ``ingest_journal`` as ``[collector] ingest_journal`` (default on, as the real command):
    an answered batch is readable at once through the collector, but a test reading the
    database file itself may have to wait for the commit.
    """

    def __init__(
        self,
        data_dir: Path,
        api_key: str = "test-key",
        port: int = 0,
        *,
        max_body_bytes: int | None = None,
        database_url: str | None = None,
        ingest_journal: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.ingest_journal = ingest_journal
        self.api_key = api_key
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.database_url = database_url
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._storage: Any = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (what ``LITERAL_API_URL`` should be)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start serving and wait until ``/health`` answers."""
        from agent.collector._app import DEFAULT_MAX_BODY_BYTES, create_app
        from agent.collector._backends import open_storage
        from agent.collector._command import UPLOAD_DIR, bind_socket, make_server

        if self._thread is not None:
            raise RuntimeError("collector already started")
        self._storage = open_storage(
            self.database_url, self.data_dir, ingest_journal=self.ingest_journal
        )
        app = create_app(
            self._storage,
            api_keys=[self.api_key],
            max_body_bytes=self.max_body_bytes or DEFAULT_MAX_BODY_BYTES,
            upload_dir=self.data_dir / UPLOAD_DIR,
        )
        sock = bind_socket("127.0.0.1", self.port)
        self.port = sock.getsockname()[1]
        self._server = make_server(app)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="collector", daemon=True
        )
        self._thread.start()
        try:
            _wait_healthy(self.url, time.monotonic() + _START_TIMEOUT, self._thread.is_alive)
        except BaseException:
            self.stop()
            sock.close()
            raise
        return self

    def stop(self) -> None:
        """Stop serving and close the storage (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._storage is not None:
            self._storage.close()
            self._storage = None
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class CollectorProcess:
    """``python -m agent collector`` as a subprocess on 127.0.0.1.

    ``database_url`` is passed as ``LITERAL_AGENT_COLLECTOR_DATABASE_URL`` (default: SQLite
    in ``data_dir``); ``env`` adds or overrides other variables.
    """

    def __init__(
        self,
        data_dir: Path,
        api_key: str = "test-key",
        port: int = 0,
        *,
        env: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.port = port
        self.database_url = database_url
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=1000)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running, else ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the process (on ``self.port``; 0 picks one) and wait until it is ready."""
        if self.running:
            raise RuntimeError("collector process already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._extra_env, ENV_COLLECTOR_API_KEYS: self.api_key}
        if self.database_url is not None:
            env[ENV_COLLECTOR_DATABASE_URL] = self.database_url
        env.setdefault("LITERAL_AGENT_LOGGING_FORMAT", "json")
        stderr = (self.data_dir / "collector.log").open("ab")
        argv = [
            sys.executable,
            "-m",
            "agent",
            "collector",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        try:
            self._proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, bufsize=1
            )
        finally:
            stderr.close()
        ready = threading.Event()
        proc = self._proc

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line.rstrip("\n"))
                if line.startswith(_READY_PREFIX) and not ready.is_set():
                    url = line[len(_READY_PREFIX) :].split(" ", 1)[0]
                    self.port = int(url.rsplit(":", 1)[1])
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, name="collector-stdout", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + _START_TIMEOUT
        if not ready.wait(_START_TIMEOUT) or proc.poll() is not None:
            self.kill()
            log = (self.data_dir / "collector.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"collector process did not start:\n{log}")
        _wait_healthy(self.url, deadline, lambda: proc.poll() is None)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait for exit; returns the exit status (``None`` if not running)."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL, wait for exit; returns the exit status."""
        return self._end(signal.SIGKILL, 10.0)

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port."""
        if self.running:
            self.stop()
        return self.start()

    def _end(self, sig: int, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        self._proc = None
        return proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
