"""Run a :class:`DaemonServer` on its own event loop in a background thread (embedding, tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Sequence

from agent.daemon._backend import Backend
from agent.daemon._server import DaemonServer, ServerSettings

__all__ = ["DaemonThread"]


class DaemonThread:
    """``with DaemonThread(backend, [sock]) as daemon: ...`` serves until the block ends."""

    def __init__(
        self,
        backend: Backend,
        sockets: Sequence[socket.socket],
        settings: ServerSettings | None = None,
    ) -> None:
        self.server = DaemonServer(backend, settings)
        self._sockets = list(sockets)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="literal-daemon", daemon=True)

    def start(self) -> DaemonThread:
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, grace: float = 1.0) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(grace + 5.0)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> DaemonThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start(self._sockets)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.close()
