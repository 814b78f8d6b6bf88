"""When and how long to retry a batch: the retryable errors, backoff, Retry-After, deadline.

Retried: :class:`~agent._exceptions.TransportError` (connect, reset, timeout),
:class:`~agent._exceptions.RateLimitedError` (429; its ``Retry-After`` is honoured exactly)
and :class:`~agent._exceptions.ServerError` (5xx). Everything else is decided by the worker
(400/401/403 are never retried, 413 splits the batch, per-step failures go to the dead-letter
file). Backoff is exponential with jitter, and the whole thing is bounded by an overall
deadline: a sleep that would cross it is not taken. The ``sleep`` is injected: the worker's
sleep wakes up early (and gives up) when a flush or shutdown deadline is near.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import tenacity
from tenacity import RetryCallState

from agent._exceptions import RateLimitedError, ServerError, TransportError

__all__ = ["RetryPolicy", "backoff_delay", "is_retryable", "make_retrying"]

RETRYABLE: tuple[type[BaseException], ...] = (TransportError, RateLimitedError, ServerError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff parameters (seconds), as in the ``[retry]`` configuration table.

    The delay before retry *n* is ``min(max_backoff, initial_backoff * multiplier**(n-1))``
    plus a random jitter in ``[0, jitter]`` seconds; ``deadline`` bounds the whole thing
    (first attempt to last) and ``max_attempts`` the number of attempts (0: no limit).
    """

    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.1
    deadline: float = 30.0
    max_attempts: int = 10

    @classmethod
    def from_config(cls, config: Any) -> RetryPolicy:
        if config is None:
            return cls()
        defaults = cls()
        return cls(
            **{
                name: type(getattr(defaults, name))(getattr(config, name, getattr(defaults, name)))
                for name in (
                    "initial_backoff",
                    "max_backoff",
                    "multiplier",
                    "jitter",
                    "deadline",
                    "max_attempts",
                )
            }
        )


def is_retryable(exc: BaseException | None) -> bool:
    return isinstance(exc, RETRYABLE)


def backoff_delay(policy: RetryPolicy, attempt: int) -> float:
    """The jittered delay before retry number ``attempt`` (1-based)."""
    base = policy.initial_backoff * policy.multiplier ** max(0, attempt - 1)
    base = min(policy.max_backoff, base)
    if policy.jitter > 0:
        base += random.uniform(0.0, policy.jitter)
    return max(0.0, base)


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        return backoff_delay(self.policy, retry_state.attempt_number)


def make_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]],
    keep_going: Callable[[], bool],
    on_retry: Callable[[BaseException | None], None],
    deadline: float | None = None,
) -> tenacity.AsyncRetrying:
    """A tenacity ``AsyncRetrying`` for one batch.

    ``keep_going()`` is consulted before each retry (False: the backend is known to be down
    or the pipeline is hurrying to a deadline - give up now, the worker spills).
    """
    limit = policy.deadline if deadline is None else deadline
    stop: Any = _StopUnless(keep_going) | tenacity.stop_before_delay(limit)
    if policy.max_attempts > 0:
        stop = stop | tenacity.stop_after_attempt(policy.max_attempts)

    def before_sleep(state: RetryCallState) -> None:
        on_retry(state.outcome.exception() if state.outcome else None)

    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=_Wait(policy),
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )


class _StopUnless(tenacity.stop.stop_base):
    def __init__(self, keep_going: Callable[[], bool]) -> None:
        self.keep_going = keep_going

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self.keep_going()
