"""``client.step(...)`` / ``client.thread(...)`` / ``client.environment(...)`` /
``client.experiment_item_run()`` objects: context managers and decorators."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from agent._context import (
    experiment_run_var,
    get_current_thread,
    set_thread,
)
from agent._hook_core import HookCore, StepBlock, StepSpec
from agent._hook_ids import new_step_id
from agent._hook_scope import decorate_step
from agent._models import Step, StepType, Thread

__all__ = [
    "EnvironmentContextManager",
    "ExperimentItemRunContextManager",
    "StepContextManager",
    "ThreadContextManager",
    "new_step_manager",
]


F = TypeVar("F", bound=Callable[..., Any])


_THREAD_FIELDS = frozenset({"metadata", "tags", "participant_id", "participant_identifier"})


class StepContextManager(StepBlock):
    """``client.step(...)`` without a function: a context manager (:class:`StepBlock`: the
    step opens on entry, closes on exit) or a decorator."""

    __slots__ = ()

    def __call__(self, func: F) -> F:
        spec = self._spec
        if not spec.name:
            spec = StepSpec(
                name=getattr(func, "__name__", "") or "",
                type=spec.type,
                id=spec.id,
                parent_id=spec.parent_id,
                thread_id=spec.thread_id,
                root_run_id=spec.root_run_id,
                metadata=spec.metadata,
                tags=spec.tags,
                fields=spec.fields,
                capture_input=spec.capture_input,
                capture_output=spec.capture_output,
            )
        return decorate_step(self._client, func, spec)

    def _enter(self) -> Step:
        return self.__enter__()

    def _exit(self, exc: BaseException | None) -> None:
        self.__exit__(None, exc, None)


_new_object = object.__new__


def new_step_manager(client: HookCore, spec: StepSpec) -> StepContextManager:
    """``StepContextManager(client, spec)`` at half the cost (no ``__init__`` call): what
    ``client.step(...)`` returns, built at every pass of an inline ``with`` block."""
    cm: StepContextManager = _new_object(StepContextManager)
    cm._client = client
    cm._spec = spec
    cm._opened = []
    return cm


class ThreadContextManager:
    """``client.thread(...)``: sets the active thread; upserts it (enqueued) on exit."""

    __slots__ = ("_client", "_fields", "_name", "_saved", "_thread_id")

    def __init__(
        self,
        client: HookCore,
        thread_id: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._client = client
        self._thread_id = thread_id
        self._name = name
        self._fields: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in _THREAD_FIELDS:
                self._fields[key] = value
            else:
                client._stats.count("unknown_thread_argument", argument=key)
        self._saved: list[tuple[Thread | None, Thread | None]] = []

    def __call__(self, func: F) -> F:
        def scope() -> ThreadContextManager:
            return ThreadContextManager(
                self._client, thread_id=self._thread_id, name=self._name, **self._fields
            )

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with scope():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with scope():
                return func(*args, **kwargs)

        return sync_wrapper  # type: ignore[return-value]

    def _enter(self) -> Thread:
        previous = get_current_thread()
        thread: Thread | None = None
        try:
            fields = dict(self._fields)
            if isinstance(fields.get("metadata"), Mapping):
                fields["metadata"] = dict(fields["metadata"])
            if isinstance(fields.get("tags"), list | tuple):
                fields["tags"] = list(fields["tags"])
            thread = Thread(id=self._thread_id or new_step_id(), name=self._name, **fields)
            set_thread(thread)
        except Exception as exc:
            self._client._stats.count("thread_start_failed", error=repr(exc))
        self._saved.append((previous, thread))
        return thread if thread is not None else Thread(id=self._thread_id or "")

    def _exit(self) -> None:
        saved = self._saved
        if not saved:
            return
        current = get_current_thread()
        index = len(saved) - 1
        for i in range(len(saved) - 1, -1, -1):
            if saved[i][1] is current:
                index = i
                break
        previous, thread = saved.pop(index)
        try:
            set_thread(previous)
        except Exception as exc:
            self._client._stats.count("thread_end_failed", error=repr(exc))
        if thread is not None:  # changes made inside the block (tags...) are sent too
            self._client._enqueue_thread(thread)

    def __enter__(self) -> Thread:
        return self._enter()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit()

    async def __aenter__(self) -> Thread:
        return self._enter()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit()


def _wrap_scope(func: F, scope: Callable[[], Any]) -> F:
    """Run each call of ``func`` (a function or coroutine function) inside ``scope()``."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            async with scope():
                return await func(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        with scope():
            return func(*args, **kwargs)

    return sync_wrapper  # type: ignore[return-value]


# The open environment blocks of the process, oldest first: (key, env). Blocks of concurrent
# tasks or threads may exit in any order; the active environment is always the latest
# still open (None when there is none).
_environments: list[tuple[object, str]] = []
_environments_lock = threading.Lock()


def _push_environment(env: str) -> object:
    from agent import _api  # here: importing it loads httpx

    key = object()
    with _environments_lock:
        _environments.append((key, env))
        _api.active_environment = env
    return key


def _pop_environment(key: object) -> None:
    from agent import _api

    with _environments_lock:
        _environments[:] = [entry for entry in _environments if entry[0] is not key]
        _api.active_environment = _environments[-1][1] if _environments else None


class EnvironmentContextManager:
    """``client.environment(env=...)``: steps and API requests sent while the block runs carry
    ``x-env: env`` (the server's environment: ``prod``, ``staging``, ``dev``, ``experiment``).

    Process-wide, as in the reference SDK, but through the API clients' active environment
    (:data:`agent._api.active_environment`, which wins over their ``environment=`` and
    ``LITERAL_ENV``) rather than by rewriting ``LITERAL_ENV``: writing the process
    environment is not thread-safe, and a pipeline starting inside the block would keep that
    value for good. Nested or overlapping blocks (concurrent tasks) may exit in any order:
    the active environment is the latest block still open, none once all have exited. Steps
    still queued when the block exits are sent with the environment of that later moment
    (``experiment_item_run()`` flushes first for that reason). A daemon transport
    (``transport="daemon"``) sends with the daemon's own environment.
    """

    __slots__ = ("_client", "_env", "_saved")

    def __init__(self, client: HookCore, env: str = "prod") -> None:
        self._client = client
        self._env = env
        self._saved: list[object] = []

    def __call__(self, func: F) -> F:
        return _wrap_scope(func, lambda: EnvironmentContextManager(self._client, self._env))

    def _enter(self) -> None:
        try:
            self._saved.append(_push_environment(self._env))
        except Exception as exc:
            self._client._stats.count("environment_enter_failed", error=repr(exc))

    def _exit(self) -> None:
        if not self._saved:
            return
        try:
            _pop_environment(self._saved.pop())
        except Exception as exc:
            self._client._stats.count("environment_exit_failed", error=repr(exc))

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit()

    async def __aenter__(self) -> None:
        self._enter()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit()


# (run id, experiment_run_var token, environment scope, the run step's manager)
_RunEntry = tuple[str, Any, EnvironmentContextManager, StepContextManager]


class ExperimentItemRunContextManager:
    """``client.experiment_item_run()``: one run of an experiment item, as the reference's.

    On entry: a ``run`` step named ``Experiment Run`` with a fresh id opens, that id becomes
    the current experiment-item run (``DatasetExperiment.log`` attaches it as
    ``experimentRunId``) and the environment is ``experiment``. On exit: the step closes,
    the pipeline is flushed (bounded by ``flush_timeout``; in a worker thread for
    ``async with``) so the run's steps are sent as ``experiment``, then the environment and
    the experiment-item run are put back. The flush is the one place the hook waits, as the
    reference does here: an evaluation harness, not a request path.
    """

    __slots__ = ("_client", "_entries", "flush_timeout")

    def __init__(self, client: HookCore, flush_timeout: float | None = 30.0) -> None:
        self._client = client
        self.flush_timeout = flush_timeout
        self._entries: list[_RunEntry] = []

    def __call__(self, func: F) -> F:
        return _wrap_scope(
            func, lambda: ExperimentItemRunContextManager(self._client, self.flush_timeout)
        )

    def _enter(self) -> Step:
        client = self._client
        run_id = new_step_id()
        token = experiment_run_var.set(run_id)
        env = EnvironmentContextManager(client, "experiment")
        env._enter()
        spec = client._spec("Experiment Run", StepType.RUN, run_id, None, None, None, {})
        step_cm = StepContextManager(client, spec)
        self._entries.append((run_id, token, env, step_cm))
        return step_cm._enter()

    def _pop(self) -> _RunEntry | None:
        entries = self._entries
        if not entries:
            return None
        current = experiment_run_var.get()
        for i in range(len(entries) - 1, -1, -1):  # this context's entry, else the latest
            if entries[i][0] == current:
                return entries.pop(i)
        return entries.pop()

    def _finish(self, entry: _RunEntry) -> None:
        _, token, env, _ = entry
        env._exit()
        try:
            experiment_run_var.reset(token)
        except (ValueError, RuntimeError):  # exited in another context
            experiment_run_var.set(None)

    def _flush(self) -> None:
        try:
            self._client._flush(self.flush_timeout)  # type: ignore[attr-defined]
        except Exception as exc:
            self._client._stats.count("experiment_flush_failed", error=repr(exc))

    def __enter__(self) -> Step:
        return self._enter()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        entry = self._pop()
        if entry is None:
            return
        entry[3]._exit(exc)
        self._flush()
        self._finish(entry)

    async def __aenter__(self) -> Step:
        return self._enter()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        entry = self._pop()
        if entry is None:
            return
        entry[3]._exit(exc)
        await asyncio.to_thread(self._flush)
        self._finish(entry)
