"""Test helpers: run a real collector on loopback, in a thread or as a separate process.

``CollectorThread`` runs the ASGI app under uvicorn in a background thread of the current
process (fast; for most tests). ``CollectorProcess`` runs ``python -m agent collector`` as a
subprocess (for outage tests: ``stop()`` sends SIGTERM, ``kill()`` SIGKILL, ``restart()`` brings
it back on the same port). Both wait for readiness by polling ``GET /health``, never by
sleeping a fixed time, and expose ``.url``, ``.api_key`` and ``.data_dir``.

The subprocess receives its key through the environment variable
``LITERAL_AGENT_COLLECTOR_API_KEYS`` (:data:`ENV_COLLECTOR_API_KEYS`, comma-separated).

Example::

    with CollectorThread(tmp_path) as collector:
        api = LiteralAPI(api_key=collector.api_key, url=collector.url)
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

__all__ = ["ENV_COLLECTOR_API_KEYS", "CollectorProcess", "CollectorThread"]

#: Environment variable read by ``literal-agent collector`` for its accepted keys.
ENV_COLLECTOR_API_KEYS = "LITERAL_AGENT_COLLECTOR_API_KEYS"
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


class CollectorThread:
    """A collector served by uvicorn in a background thread on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        api_key: str = "test-key",
        port: int = 0,
        *,
        max_body_bytes: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.port = port
        self.max_body_bytes = max_body_bytes
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
        from agent.collector._command import UPLOAD_DIR, bind_socket, make_server
        from agent.collector._sqlite import open_sqlite

        if self._thread is not None:
            raise RuntimeError("collector already started")
        self._storage = open_sqlite(self.data_dir)
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
    """``python -m agent collector`` as a subprocess on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        api_key: str = "test-key",
        port: int = 0,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.port = port
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
