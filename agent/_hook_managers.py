"""``client.step(...)`` / ``client.thread(...)`` objects: context managers and decorators."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from agent._context import get_current_step, get_current_thread, set_thread
from agent._hook_core import STEP as _STEP
from agent._hook_core import HookCore, StepSpec
from agent._hook_ids import new_step_id
from agent._hook_scope import decorate_step
from agent._models import Step, Thread

__all__ = ["StepContextManager", "ThreadContextManager"]

F = TypeVar("F", bound=Callable[..., Any])

_NO_KWARGS: dict[str, Any] = {}  # a context manager's step has no call arguments (read only)

_THREAD_FIELDS = frozenset({"metadata", "tags", "participant_id", "participant_identifier"})


class StepContextManager:
    """``client.step(...)`` without a function: a context manager or a decorator."""

    __slots__ = ("_client", "_opened", "_spec")

    def __init__(self, client: HookCore, spec: StepSpec) -> None:
        self._client = client
        self._spec = spec
        self._opened: list[list[Any] | None] = []

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
        opened = self._client._open_step(self._spec, None, (), _NO_KWARGS)
        self._opened.append(opened)
        return opened[_STEP] if opened is not None else Step(name=self._spec.name)

    def _exit(self, exc: BaseException | None) -> None:
        stack = self._opened
        if len(stack) == 1:  # the usual case: entered once at a time
            opened = stack.pop()
        elif not stack:
            return
        else:
            # Entered by several tasks at once: close the entry whose step is current in
            # *this* context (else the latest one).
            current = get_current_step()
            index = len(stack) - 1
            for i in range(len(stack) - 1, -1, -1):
                entry = stack[i]
                if entry is not None and entry[_STEP] is current:
                    index = i
                    break
            opened = stack.pop(index)
        if opened is not None:
            self._client._close_step(opened, exc, None, False)

    def __enter__(self) -> Step:
        return self._enter()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Step:
        return self._enter()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._exit(exc)


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
