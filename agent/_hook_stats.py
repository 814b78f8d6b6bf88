"""Counters of what the library hook and the tracer dropped, converted or failed to do.

The hook never raises into user code: each of its own failures, and each piece of bad
input it repaired or dropped, is counted here under a reason and logged through structlog.
Logging is rate-limited per reason (the 1st, 10th, 100th, ... occurrence) so a hot loop of
bad input cannot flood the logs.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import structlog

__all__ = ["HookStats"]


class HookStats:
    """Thread-safe counters by reason, with rate-limited structlog warnings."""

    __slots__ = ("_counts", "_lock", "_logger")

    def __init__(self, logger_name: str) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._logger = structlog.get_logger(logger_name)

    def count(self, reason: str, *, level: str = "warning", **details: Any) -> int:
        """Count one occurrence of ``reason``; log it on the 1st, 10th, 100th... time."""
        with self._lock:
            n = self._counts.get(reason, 0) + 1
            self._counts[reason] = n
        if n in _LOG_AT or n % 1_000_000 == 0:
            with contextlib.suppress(Exception):  # logging must never break the caller
                getattr(self._logger, level)(reason, occurrences=n, **details)
        return n

    def get(self, reason: str) -> int:
        """How many times ``reason`` was counted."""
        return self._counts.get(reason, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counts)


_LOG_AT = frozenset({1, 10, 100, 1_000, 10_000, 100_000})
