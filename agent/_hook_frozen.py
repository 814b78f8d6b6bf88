"""A shared, frozen empty list for the ``scores`` / ``attachments`` of handed-over steps.

Once a step is enqueued it must not change (the worker reads it later). Its empty
``scores`` and ``attachments`` lists are then replaced by :data:`FROZEN_EMPTY`: one shared
object instead of two lists per step, which matters because queued steps survive until the
worker sends them, and every object they hold is one the garbage collector must walk (it is
what sets the hook's p99). Steps made from spans are built with it directly.

Appending to it (a late ``step.attachments.append(...)``) changes nothing, never raises, and
is counted (``step_mutated_after_end``) and logged: the step was already handed over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, SupportsIndex

from agent._hook_stats import HookStats

__all__ = ["FROZEN_EMPTY", "FROZEN_STATS"]

#: Counts late mutations of handed-over steps (``step_mutated_after_end``).
FROZEN_STATS = HookStats("agent.hook")


class _FrozenEmptyList(list[Any]):
    """An empty list that ignores (and counts) every attempt to grow it."""

    __slots__ = ()

    def _ignored(self, operation: str) -> None:
        FROZEN_STATS.count("step_mutated_after_end", operation=operation)

    def append(self, item: Any, /) -> None:
        self._ignored("append")

    def extend(self, items: Iterable[Any], /) -> None:
        self._ignored("extend")

    def insert(self, index: SupportsIndex, item: Any, /) -> None:
        self._ignored("insert")

    def __iadd__(self, items: Iterable[Any], /) -> _FrozenEmptyList:  # type: ignore[override,misc]
        self._ignored("+=")
        return self

    def __imul__(self, count: SupportsIndex, /) -> _FrozenEmptyList:  # type: ignore[override,misc]
        return self

    def __setitem__(self, index: Any, value: Any, /) -> None:
        self._ignored("setitem")


#: The shared empty ``scores`` / ``attachments`` of steps that were handed over.
FROZEN_EMPTY: list[Any] = _FrozenEmptyList()
