"""Delivering one batch: retries, 413/400 splitting, per-step failures, thread upserts.

:meth:`Delivery.deliver` sends a list of events through the exporter and fills an
:class:`Outcome`: how many the backend acknowledged, which it rejected for good (with the
server's message, for the dead-letter file), and which could not be delivered *now* (the
worker spills those). Decisions:

* retryable errors (connect/reset/timeout, 429, 5xx) are retried by :mod:`._retry`;
  when they persist, or on 401/403, or when the API client is missing, the rest of the
  batch is *undeliverable* (kept, spilled) and ``on_failure`` tells the worker;
* 413, 400, a document-level GraphQL error or an encoding failure split the batch in halves
  to isolate what the server refuses; a single refused step is *dead*;
* ``ok: false`` aliases make just those steps dead; the others count as delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent._exceptions import (
    AuthenticationError,
    BadRequestError,
    GraphQLError,
    HTTPStatusError,
    LiteralError,
    RequestTooLargeError,
)
from agent.pipeline._events import KIND_KEY, THREAD, Event
from agent.pipeline._exporter import Exporter
from agent.pipeline._retry import RetryPolicy, is_retryable, make_retrying

__all__ = ["Delivery", "Hurried", "NoExporter", "Outcome", "message_of"]

log = structlog.get_logger("agent.pipeline")


class Hurried(Exception):  # noqa: N818 - a state, not an error
    """A flush or shutdown deadline is near: stop retrying, spill."""


class NoExporter(Exception):  # noqa: N818 - a state, not an error
    """The API client could not be built (e.g. no API key): keep the events."""


@dataclass(slots=True)
class Outcome:
    delivered: int = 0
    dead: list[tuple[Event, str, int | None]] = field(default_factory=list)
    undelivered: list[Event] = field(default_factory=list)
    error: BaseException | None = None

    @classmethod
    def kept(cls, events: list[Event]) -> Outcome:
        """Nothing known delivered (cancelled): keep every event."""
        return cls(undelivered=list(events), error=Hurried())


def _status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, HTTPStatusError) else None


def message_of(exc: BaseException) -> str:
    return exc.message if isinstance(exc, LiteralError) else f"{type(exc).__name__}: {exc}"


def undeliverable(exc: BaseException) -> bool:
    """The events are fine but cannot be delivered now (keep them)."""
    return is_retryable(exc) or isinstance(exc, AuthenticationError | Hurried | NoExporter)


class Delivery:
    """Sends events through an exporter; the worker supplies the policy hooks."""

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        batch_size: int,
        batch_bytes: int,
        sleep: Callable[[float], Awaitable[None]],
        keep_going: Callable[[], bool],
        on_retry: Callable[[BaseException | None], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.policy = policy
        self.batch_size = max(1, batch_size)
        self.batch_bytes = max(1, batch_bytes)
        self.sleep = sleep
        self.keep_going = keep_going
        self.on_retry = on_retry
        self.on_failure = on_failure
        self.exporter: Exporter | None = None
        self.exporter_error: str | None = None

    async def deliver(
        self,
        events: list[Event],
        outcome: Outcome,
        *,
        retry: bool = True,
        nbytes: int = 0,
        threads_in: int | None = None,
    ) -> None:
        """Steps in ``send_steps`` chunks of at most ``batch_size`` events and about
        ``batch_bytes`` (``nbytes``: their encoded size, when known), then thread upserts
        (``threads_in``: how many thread events there are, when known)."""
        if threads_in is None or threads_in:
            steps = [e for e in events if e.get(KIND_KEY) != THREAD]
            threads = [e for e in events if e.get(KIND_KEY) == THREAD]
        else:  # the batcher counted none: no need to look
            steps, threads = events, []
        chunk = self.batch_size
        if nbytes and events:
            chunk = max(1, min(chunk, self.batch_bytes * len(events) // nbytes))
        for start in range(0, len(steps), chunk):
            await self._deliver_steps(steps[start : start + chunk], outcome, retry=retry)
        exporter = self.exporter
        for thread in threads:
            if outcome.error is not None or exporter is None:
                outcome.undelivered.append(thread)
                continue
            try:
                await self._call(exporter.upsert_thread, thread, retry=retry)
            except Exception as exc:
                if undeliverable(exc):
                    self.on_failure(exc)
                    outcome.error = exc
                    outcome.undelivered.append(thread)
                else:
                    outcome.dead.append((thread, message_of(exc), _status(exc)))
            else:
                outcome.delivered += 1

    async def _deliver_steps(self, steps: list[Event], outcome: Outcome, *, retry: bool) -> None:
        exporter = self.exporter
        if outcome.error is not None or exporter is None:
            outcome.undelivered.extend(steps)
            if outcome.error is None:
                outcome.error = NoExporter(self.exporter_error or "no API client")
            return
        try:
            failures = await self._call(exporter.send_steps, steps, retry=retry)
        except Exception as exc:
            if undeliverable(exc):
                self.on_failure(exc)
                outcome.error = exc
                outcome.undelivered.extend(steps)
                return
            # 413, 400, a document-level GraphQL error, an encoding failure: split to
            # isolate what the server refuses; a single step goes to the dead-letter file
            if len(steps) == 1:
                outcome.dead.append((steps[0], message_of(exc), _status(exc)))
                return
            if not isinstance(exc, RequestTooLargeError | BadRequestError | GraphQLError):
                log.warning("pipeline.batch_rejected", error=message_of(exc), events=len(steps))
            mid = len(steps) // 2
            await self._deliver_steps(steps[:mid], outcome, retry=retry)
            await self._deliver_steps(steps[mid:], outcome, retry=retry)
            return
        if failures:
            outcome.dead.extend((steps[i], msg, None) for i, msg in sorted(failures.items()))
        outcome.delivered += len(steps) - len(failures)

    async def _call(self, fn: Callable[[Any], Awaitable[Any]], arg: Any, *, retry: bool) -> Any:
        if not retry:
            return await fn(arg)
        retrying = make_retrying(
            self.policy, sleep=self.sleep, keep_going=self.keep_going, on_retry=self.on_retry
        )
        return await retrying(fn, arg)
