"""What the worker sends batches through: a two-method interface and its API implementation.

``send_steps`` returns the per-step failures of a batch (index -> server message, from the
aliases that answered ``ok: false``) and raises the client's typed errors
(:mod:`agent._exceptions`) for everything else; the worker decides what to retry. The
default :class:`ApiExporter` goes through one pooled :class:`~agent._api.AsyncLiteralAPI`
(one ``send_steps`` per batch). Tests can plug any object with the same methods.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from agent._exceptions import GraphQLError

__all__ = ["ApiExporter", "Exporter", "failures_by_index"]


class Exporter(Protocol):
    async def send_steps(self, steps: list[dict[str, Any]]) -> dict[int, str]:
        """Ingest ``steps``; return ``{index: message}`` for the steps the server rejected."""
        ...

    async def upsert_thread(self, thread: dict[str, Any]) -> None:
        """Create or update a thread (``id``, optional ``name``, ``metadata``, ``tags``,
        ``participantId``)."""
        ...

    async def aclose(self) -> None: ...


def failures_by_index(exc: GraphQLError, n: int) -> dict[int, str] | None:
    """Map ``step<i>`` aliases to batch indexes; None when the error is not per-step."""
    if not exc.failures:
        return None
    out: dict[int, str] = {}
    for alias, message in exc.failures.items():
        if not alias.startswith("step"):
            return None
        try:
            index = int(alias[4:])
        except ValueError:
            return None
        if not 0 <= index < n:
            return None
        out[index] = message
    return out


class ApiExporter:
    """Exporter over one :class:`~agent._api.AsyncLiteralAPI` (built on the worker's loop)."""

    def __init__(self, *, api_key: str | None, url: str | None, client_config: Any = None) -> None:
        from agent._api import AsyncLiteralAPI

        kwargs: dict[str, Any] = {"api_key": api_key, "url": url}
        params = inspect.signature(AsyncLiteralAPI).parameters
        if client_config is not None:
            for name in ("environment", "timeout", "connect_timeout", "max_connections"):
                value = getattr(client_config, name, None)
                if value is not None and name in params:
                    kwargs[name] = value
        self.api = AsyncLiteralAPI(**kwargs)

    async def send_steps(self, steps: list[dict[str, Any]]) -> dict[int, str]:
        try:
            await self.api.send_steps(steps)  # type: ignore[arg-type]
        except GraphQLError as exc:
            failures = failures_by_index(exc, len(steps))
            if failures is None:
                raise
            return failures
        return {}

    async def upsert_thread(self, thread: dict[str, Any]) -> None:
        await self.api.upsert_thread(
            id=thread["id"],
            name=thread.get("name"),
            metadata=thread.get("metadata"),
            participant_id=thread.get("participantId"),
            tags=thread.get("tags"),
        )

    async def aclose(self) -> None:
        await self.api.aclose()
