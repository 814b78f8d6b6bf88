"""Where the library hook and the tracer hand their steps, scores and threads over.

:class:`SinkHolder` owns the lazily started pipeline (or an injected :class:`SinkLike`, for
instance the daemon transport) and is shared by every front door of one client: the sync
and async clients (``to_sync()``) and tracer providers built with ``client=``. Its
:meth:`~SinkHolder.enqueue` is the only thing the hot path calls; it never raises and counts
every item it could not hand over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from agent._hook_stats import HookStats

__all__ = ["SinkHolder", "SinkLike"]


class SinkLike(Protocol):
    """The pipeline's ``Sink`` contract, as far as the hook uses it."""

    def enqueue(self, item: Any) -> bool:
        """Queue one item (``Step``, ``Score``, ``Thread`` or step dict); O(1), never raises."""
        ...

    def flush(self, timeout: float | None = None) -> Any:
        """Wait until what was queued so far is delivered or spooled."""
        ...

    def shutdown(self, timeout: float | None = None) -> Any:
        """Flush, then stop accepting items."""
        ...


class SinkHolder:
    """A lazily created sink plus the hook's counters; thread-safe, shared by front doors."""

    __slots__ = (
        "_factory",
        "_lock",
        "_put",
        "_sink",
        "_stopped",
        "disabled",
        "stats",
    )

    def __init__(
        self,
        factory: Callable[[], SinkLike] | None,
        *,
        sink: SinkLike | None = None,
        disabled: bool = False,
        stats: HookStats | None = None,
    ) -> None:
        self._factory = factory
        self._sink = sink
        # the sink's bound ``enqueue``: the hot path's only lookup
        self._put: Callable[[Any], bool] | None = (
            sink.enqueue if sink is not None and not disabled else None
        )
        self._lock = threading.Lock()
        self._stopped = False
        self.disabled = disabled
        self.stats = stats or HookStats("agent.hook")

    @property
    def started(self) -> bool:
        """Whether a sink exists (the pipeline is started on the first enqueue)."""
        return self._sink is not None

    def get(self) -> SinkLike | None:
        """The sink, started on first use; ``None`` when disabled, stopped or broken."""
        sink = self._sink
        if sink is not None or self.disabled or self._stopped:
            return sink
        with self._lock:
            if self._sink is None and not self._stopped:
                if self._factory is None:
                    return None
                try:
                    self._sink = self._factory()
                    self._put = self._sink.enqueue
                except Exception as exc:
                    self.stats.count("pipeline_start_failed", level="error", error=repr(exc))
                    self._stopped = True
                    return None
            return self._sink

    def enqueue(self, item: Any) -> bool:
        """Hand ``item`` over; ``False`` (counted, logged) when it could not be."""
        put = self._put
        if put is None:
            if self.disabled:
                return False
            sink = self.get()
            if sink is None:
                self.stats.count("dropped_no_sink")
                return False
            put = sink.enqueue
        try:
            if put(item):
                return True
        except Exception as exc:
            self.stats.count("sink_error", error=repr(exc))
            return False
        self.stats.count("enqueue_rejected")
        return False

    def flush(self, timeout: float | None = None) -> Any:
        """Flush the sink if it was started; returns its result (``None`` otherwise)."""
        sink = self._sink
        if sink is None:
            return None
        try:
            return sink.flush(timeout)
        except Exception as exc:
            self.stats.count("flush_failed", error=repr(exc))
            return None

    def shutdown(self, timeout: float | None = None) -> Any:
        """Flush and stop the sink; later items are dropped and counted."""
        with self._lock:
            sink, self._stopped = self._sink, True
            self._put = None
        if sink is None:
            return None
        try:
            return sink.shutdown(timeout)
        except Exception as exc:
            self.stats.count("shutdown_failed", error=repr(exc))
            return None
