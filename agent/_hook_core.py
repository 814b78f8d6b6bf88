"""The step lifecycle shared by every front door of the library hook.

:class:`HookCore` opens a step in the current context (resolving its parent, thread and root
run as the reference SDK does), closes it (recording an exception or the return value),
hides and re-shows a generator's step around each item, and hands ended steps and threads
to the sink. Everything here runs on the caller's thread: no I/O, no encoding, and no
exception escapes (failures are counted in the client's :class:`~agent._hook_stats.HookStats`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from agent._context import pop_step, push_step, state_var
from agent._hook_frozen import FROZEN_EMPTY
from agent._hook_ids import _MICROS, _time, ms_entry, new_step_id
from agent._hook_scope import Binder
from agent._hook_sink import SinkHolder
from agent._hook_stats import HookStats
from agent._models import Step, StepType, Thread

__all__ = ["STEP", "TOKEN", "HookCore", "StepBlock", "StepSpec", "describe_exception"]

_STEP_FIELDS = frozenset(
    f for f in Step.__struct_fields__ if f not in {"id", "name", "type", "thread_id", "parent_id",
                                                  "root_run_id", "metadata", "tags"}
)


def describe_exception(exc: BaseException) -> str:
    """``str(exc)``, or its repr when empty (``CancelledError()``); never raises."""
    try:
        text = str(exc)
        return text or repr(exc)
    except Exception:
        return f"<{type(exc).__name__}>"


class StepSpec:
    """What a ``client.step(...)`` call site asked for; built once per decorator."""

    __slots__ = (
        "capture_input",
        "capture_output",
        "fields",
        "id",
        "is_run",
        "merge_metadata",
        "metadata",
        "name",
        "parent_id",
        "root_run_id",
        "tags",
        "thread_id",
        "type",
    )

    def __init__(
        self,
        *,
        name: str,
        type: StepType,
        id: str | None,
        parent_id: str | None,
        thread_id: str | None,
        root_run_id: str | None,
        metadata: dict[str, Any] | None,
        tags: list[str] | None,
        fields: dict[str, Any],
        capture_input: bool = True,
        capture_output: bool = True,
    ) -> None:
        self.name = name
        self.type = type
        self.is_run = type == StepType.RUN
        self.id = id
        self.parent_id = parent_id
        self.thread_id = thread_id
        self.root_run_id = root_run_id
        self.metadata = metadata
        # False: no metadata of its own (steps start with {} unless a release is set)
        self.merge_metadata = bool(metadata)
        self.tags = tags
        self.fields = fields
        self.capture_input = capture_input
        self.capture_output = capture_output


# An open step: [step, spec, is_root, saved_root, token]. A list, not a class: it is built
# on every decorated call and a list costs a fifth of an instance. ``token`` resets the
# context in one operation when the step closes where it opened (functions, ``with``).
_Opened = list
_STEP, _SPEC, _IS_ROOT, _SAVED_ROOT, _TOKEN = range(5)
STEP, TOKEN = _STEP, _TOKEN

# the cache of the copy of iso_now() inlined in _open_step and _close_step
_now_cache: tuple[float, str] = (0.0, "")


# Specs of ``step(name=..., type=...)`` calls without other arguments, by name and type: bounded
# (cleared when full), shared by every client (a spec holds no reference to its client).
# Only specs whose type was valid are kept, so an invalid type is counted at every call.
_SPEC_CACHE: dict[tuple[Any, ...], StepSpec] = {}
_SPEC_CACHE_SIZE = 512
_UNDEFINED = frozenset({None, StepType.UNDEFINED})


class HookCore:
    """Opening, closing, suspending and resuming steps; handing items to the sink."""

    _holder: SinkHolder
    _stats: HookStats
    global_metadata: dict[str, Any] | None

    def _open_step(
        self,
        spec: StepSpec,
        binder: Binder | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> list[Any] | None:
        """Create a step, make it current; ``None`` (counted) if the hook failed."""
        global _now_cache
        try:
            steps, thread, root = state_var.get()
            if steps:
                parent = steps[-1]
                parent_id: str | None = spec.parent_id or parent.id
                thread_id: str | None = spec.thread_id or parent.thread_id
                root_run_id: str | None = spec.root_run_id or parent.root_run_id
            else:
                parent_id = spec.parent_id
                thread_id = spec.thread_id
                root_run_id = spec.root_run_id
            if not thread_id and thread is not None:
                thread_id = thread.id
            if not root_run_id and root is not None:
                root_run_id = root.id
            captured = False
            step_input = None
            if binder is not None:
                try:
                    step_input = binder(args, kwargs)
                    captured = True
                except Exception as exc:
                    self._stats.count("input_capture_failed", level="debug", error=repr(exc))
            # iso_now(), inlined (one call less per step)
            t = _time()
            cache = _now_cache
            d = t - cache[0]
            if not 0.0 <= d < 0.001:
                cache = _now_cache = ms_entry(t)
                d = t - cache[0]
            step = Step(
                id=spec.id or new_step_id(),
                name=spec.name,
                type=spec.type,
                thread_id=thread_id,
                parent_id=parent_id,
                root_run_id=root_run_id,
                start_time=cache[1] + _MICROS[int(d * 1e6)],
                input=step_input,
                metadata=(
                    self._step_metadata(spec.metadata)
                    if spec.merge_metadata or self.global_metadata
                    else {}
                ),
                tags=list(spec.tags) if spec.tags else None,
            )
            if spec.fields:
                for key, value in spec.fields.items():
                    if key != "input" or not captured:  # captured arguments win
                        setattr(step, key, value)
            open_steps = (*steps, step) if steps else (step,)
            if root is None and spec.is_run:
                return [step, spec, True, None, state_var.set((open_steps, thread, step))]
            return [step, spec, False, None, state_var.set((open_steps, thread, root))]
        except Exception as exc:
            self._stats.count("step_start_failed", error=repr(exc))
            return None

    def _call(
        self,
        spec: StepSpec,
        binder: Binder | None,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """One call of a decorated (plain) function as a step: the hot path.

        :meth:`_open_step`, the call and :meth:`_close_step` in one frame, without the
        ``opened`` list: the same steps, one function call fewer per step and less work. Keep
        the two copies in step (``test_hook.py`` checks both paths build the same steps).
        """
        global _now_cache
        try:  # -- _open_step
            steps, thread, root = state_var.get()
            if steps:
                parent = steps[-1]
                parent_id: str | None = spec.parent_id or parent.id
                thread_id: str | None = spec.thread_id or parent.thread_id
                root_run_id: str | None = spec.root_run_id or parent.root_run_id
            else:
                parent_id = spec.parent_id
                thread_id = spec.thread_id
                root_run_id = spec.root_run_id
            if not thread_id and thread is not None:
                thread_id = thread.id
            if not root_run_id and root is not None:
                root_run_id = root.id
            captured = False
            step_input = None
            if binder is not None:
                try:
                    step_input = binder(args, kwargs)
                    captured = True
                except Exception as exc:
                    self._stats.count("input_capture_failed", level="debug", error=repr(exc))
            t = _time()
            cache = _now_cache
            d = t - cache[0]
            if not 0.0 <= d < 0.001:
                cache = _now_cache = ms_entry(t)
                d = t - cache[0]
            step = Step(
                id=spec.id or new_step_id(),
                name=spec.name,
                type=spec.type,
                thread_id=thread_id,
                parent_id=parent_id,
                root_run_id=root_run_id,
                start_time=cache[1] + _MICROS[int(d * 1e6)],
                input=step_input,
                metadata=(
                    self._step_metadata(spec.metadata)
                    if spec.merge_metadata or self.global_metadata
                    else {}
                ),
                tags=list(spec.tags) if spec.tags else None,
            )
            if spec.fields:
                for key, value in spec.fields.items():
                    if key != "input" or not captured:
                        setattr(step, key, value)
            is_root = root is None and spec.is_run
            token = state_var.set(
                ((*steps, step) if steps else (step,), thread, step if is_root else root)
            )
        except Exception as exc:
            self._stats.count("step_start_failed", error=repr(exc))
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._close_step([step, spec, is_root, None, token], exc, None, False)
            raise
        try:  # -- _close_step, for a returned value
            if step.output is None and spec.capture_output:
                step.output = result if isinstance(result, dict) else {"content": result}
            t = _time()
            cache = _now_cache
            d = t - cache[0]
            if not 0.0 <= d < 0.001:
                cache = _now_cache = ms_entry(t)
                d = t - cache[0]
            step.end_time = cache[1] + _MICROS[int(d * 1e6)]
            if not step.scores:
                step.scores = FROZEN_EMPTY
            if not step.attachments:
                step.attachments = FROZEN_EMPTY
            try:
                state_var.reset(token)  # a function returns in the context it was called in
            except (ValueError, RuntimeError):  # unless it is closed elsewhere: remove it
                self._unwind(step, is_root, None)
        except Exception as err:
            self._stats.count("step_end_failed", error=repr(err))
            return result
        holder = self._holder
        put = holder._put
        if put is None:
            holder.enqueue(step)
            return result
        try:
            if put(step):
                return result
        except Exception as sink_error:
            holder.stats.count("sink_error", error=repr(sink_error))
            return result
        holder.stats.count("enqueue_rejected")
        return result

    def _step_metadata(self, metadata: dict[str, Any] | None) -> dict[str, Any]:
        glob = self.global_metadata
        if metadata:
            return {**metadata, **glob} if glob else dict(metadata)
        return dict(glob) if glob else {}

    def _close_step(
        self, opened: list[Any], exc: BaseException | None, result: Any, has_result: bool
    ) -> None:
        """End an open step (recording ``exc``/``result``) and enqueue it; never raises."""
        global _now_cache
        try:
            step: Step = opened[_STEP]
            if exc is not None:
                step.error = describe_exception(exc)
            elif has_result and step.output is None and opened[_SPEC].capture_output:
                step.output = result if isinstance(result, dict) else {"content": result}
            # iso_now(), inlined
            t = _time()
            cache = _now_cache
            d = t - cache[0]
            if not 0.0 <= d < 0.001:
                cache = _now_cache = ms_entry(t)
                d = t - cache[0]
            step.end_time = cache[1] + _MICROS[int(d * 1e6)]
            if not step.scores:  # handed over: share one frozen empty list (fewer GC objects)
                step.scores = FROZEN_EMPTY
            if not step.attachments:
                step.attachments = FROZEN_EMPTY
            token = opened[_TOKEN]
            if token is not None:
                try:
                    state_var.reset(token)  # back to the state before the step opened
                except (ValueError, RuntimeError):  # closed in another context
                    token = None
            if token is None:
                self._unwind(step, opened[_IS_ROOT], opened[_SAVED_ROOT])
        except Exception as err:
            self._stats.count("step_end_failed", error=repr(err))
            return
        # SinkHolder.enqueue, inlined for the started sink (one call less per step)
        holder = self._holder
        put = holder._put
        if put is None:
            holder.enqueue(step)
            return
        try:
            if put(step):
                return
        except Exception as sink_error:
            holder.stats.count("sink_error", error=repr(sink_error))
            return
        holder.stats.count("enqueue_rejected")

    def _unwind(self, step: Step, is_root: bool, saved_root: Step | None) -> None:
        """Remove ``step`` from this context's open steps without its token (it was closed
        in another context, or suspended); a root run gives ``saved_root`` back."""
        steps, thread, root = state_var.get()
        if is_root:
            root = saved_root
        if steps and steps[-1] is step:
            state_var.set((steps[:-1], thread, root))
        elif not pop_step(step, restore_root=is_root, root=root):
            self._stats.count("step_not_open_at_end", level="debug")

    def _resume(self, opened: list[Any]) -> None:
        """Make a generator's step current again while its body runs."""
        try:
            previous = push_step(opened[_STEP], root=opened[_IS_ROOT])
            if opened[_IS_ROOT]:
                opened[_SAVED_ROOT] = previous
        except Exception as exc:
            self._stats.count("step_resume_failed", error=repr(exc))

    def _suspend(self, opened: list[Any]) -> None:
        """Hide a generator's step from the consumer between two items."""
        try:
            opened[_TOKEN] = None  # resumed elsewhere: the open-time state is stale
            pop_step(opened[_STEP], restore_root=opened[_IS_ROOT], root=opened[_SAVED_ROOT])
        except Exception as exc:
            self._stats.count("step_suspend_failed", error=repr(exc))

    def _spec(  # noqa: PLR0917 - internal, mirrors step()'s parameters
        self,
        name: str,
        type: StepType | str | None,
        id: str | None,
        parent_id: str | None,
        thread_id: str | None,
        root_run_id: str | None,
        kwargs: dict[str, Any],
    ) -> StepSpec:
        if not kwargs and id is None and parent_id is None and thread_id is None and (
            root_run_id is None
        ):
            # ``with client.step(name=..., type=...)`` written inline builds the same spec
            # at every pass: reuse it (specs are never mutated)
            key = (name, type)
            try:
                cached = _SPEC_CACHE.get(key)
            except TypeError:  # an unhashable argument: no caching
                return self._new_spec(name, type, id, parent_id, thread_id, root_run_id, kwargs)
            if cached is not None:
                return cached
            spec = self._new_spec(name, type, id, parent_id, thread_id, root_run_id, kwargs)
            if spec.type is not StepType.UNDEFINED or type in _UNDEFINED:
                if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
                    _SPEC_CACHE.clear()
                _SPEC_CACHE[key] = spec
            return spec
        return self._new_spec(name, type, id, parent_id, thread_id, root_run_id, kwargs)

    def _new_spec(  # noqa: PLR0917 - internal, mirrors step()'s parameters
        self,
        name: str,
        type: StepType | str | None,
        id: str | None,
        parent_id: str | None,
        thread_id: str | None,
        root_run_id: str | None,
        kwargs: dict[str, Any],
    ) -> StepSpec:
        try:
            step_type = StepType(type) if type is not None else StepType.UNDEFINED
        except ValueError:
            self._stats.count("invalid_step_type", type=repr(type))
            step_type = StepType.UNDEFINED
        metadata = kwargs.pop("metadata", None)
        tags = kwargs.pop("tags", None)
        capture_input = bool(kwargs.pop("capture_input", True))
        capture_out = bool(kwargs.pop("capture_output", True))
        fields: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in _STEP_FIELDS:
                fields[key] = value
            else:
                self._stats.count("unknown_step_argument", argument=key)
        spec = StepSpec(
            name=name,
            type=step_type,
            id=id,
            parent_id=parent_id,
            thread_id=thread_id,
            root_run_id=root_run_id,
            metadata=metadata if isinstance(metadata, dict) else None,
            tags=list(tags) if isinstance(tags, list | tuple) else None,
            fields=fields,
            capture_input=capture_input,
            capture_output=capture_out,
        )
        return spec

    def _enqueue_thread(self, thread: Thread) -> None:
        try:
            glob = self.global_metadata
            if glob:
                thread = msgspec.structs.replace(
                    thread, metadata={**glob, **(thread.metadata or {})}
                )
            self._holder.enqueue(thread)
        except Exception as exc:
            self._stats.count("thread_upsert_failed", error=repr(exc))


class StepBlock:
    """A ``with client.step(...)`` block (the base of
    :class:`~agent._hook_managers.StepContextManager`): the step opens on entry and closes
    on exit.

    Entering is :meth:`HookCore._open_step` inlined (one call fewer per block; keep the
    copies in step, ``test_hook.py`` checks every path builds the same steps). One manager
    may be entered by several tasks or threads at once: each exit closes the entry whose
    step is open in its own context (list ``append``/``remove`` are atomic, so no entry is
    lost or taken twice).
    """

    __slots__ = ("_client", "_opened", "_spec")

    def __init__(self, client: HookCore, spec: StepSpec) -> None:
        self._client = client
        self._spec = spec
        self._opened: list[list[Any]] = []

    def __enter__(self) -> Step:
        global _now_cache
        spec = self._spec
        try:  # -- HookCore._open_step, without arguments to capture
            steps, thread, root = state_var.get()
            if steps:
                parent = steps[-1]
                parent_id: str | None = spec.parent_id or parent.id
                thread_id: str | None = spec.thread_id or parent.thread_id
                root_run_id: str | None = spec.root_run_id or parent.root_run_id
            else:
                parent_id = spec.parent_id
                thread_id = spec.thread_id
                root_run_id = spec.root_run_id
            if not thread_id and thread is not None:
                thread_id = thread.id
            if not root_run_id and root is not None:
                root_run_id = root.id
            t = _time()
            cache = _now_cache
            d = t - cache[0]
            if not 0.0 <= d < 0.001:
                cache = _now_cache = ms_entry(t)
                d = t - cache[0]
            client = self._client
            step = Step(
                id=spec.id or new_step_id(),
                name=spec.name,
                type=spec.type,
                thread_id=thread_id,
                parent_id=parent_id,
                root_run_id=root_run_id,
                start_time=cache[1] + _MICROS[int(d * 1e6)],
                metadata=(
                    client._step_metadata(spec.metadata)
                    if spec.merge_metadata or client.global_metadata
                    else {}
                ),
                tags=list(spec.tags) if spec.tags else None,
            )
            if spec.fields:
                for key, value in spec.fields.items():
                    setattr(step, key, value)
            is_root = root is None and spec.is_run
            token = state_var.set(
                ((*steps, step) if steps else (step,), thread, step if is_root else root)
            )
        except Exception as exc:  # the block runs without a step
            self._client._stats.count("step_start_failed", error=repr(exc))
            return Step(name=spec.name)
        self._opened.append([step, spec, is_root, None, token])
        return step

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        global _now_cache
        entries = self._opened
        if not entries:
            return
        # this context's block: its step is the current one (usually the latest entered)
        steps = state_var.get()[0]
        opened: list[Any] | None
        try:
            opened = entries[-1]
            if steps and opened[_STEP] is steps[-1]:
                entries.remove(opened)  # atomic; compares by identity first
            else:
                opened = self._other_entry(steps)
        except (IndexError, ValueError):  # taken meanwhile by another thread
            opened = self._other_entry(steps)
        if opened is None:
            return
        if exc is not None:
            self._client._close_step(opened, exc, None, False)
            return
        step: Step = opened[_STEP]
        try:  # -- HookCore._close_step, for a block that ended normally
            t = _time()
            cache = _now_cache
            d = t - cache[0]
            if not 0.0 <= d < 0.001:
                cache = _now_cache = ms_entry(t)
                d = t - cache[0]
            step.end_time = cache[1] + _MICROS[int(d * 1e6)]
            if not step.scores:
                step.scores = FROZEN_EMPTY
            if not step.attachments:
                step.attachments = FROZEN_EMPTY
            try:
                state_var.reset(opened[_TOKEN])
            except (ValueError, RuntimeError):  # exited in another context
                self._client._unwind(step, opened[_IS_ROOT], None)
        except Exception as err:
            self._client._stats.count("step_end_failed", error=repr(err))
            return
        holder = self._client._holder
        put = holder._put
        if put is None:
            holder.enqueue(step)
            return
        try:
            if put(step):
                return
        except Exception as sink_error:
            holder.stats.count("sink_error", error=repr(sink_error))
            return
        holder.stats.count("enqueue_rejected")

    def _other_entry(self, steps: tuple[Step, ...]) -> list[Any] | None:
        """The entry of this context's block when it is not the latest entered (another
        task or thread entered the same manager since): the innermost of this context's
        open steps that is one of this manager's; else (this context was reset inside the
        block) the latest entry."""
        entries = self._opened
        for step in reversed(steps):
            for opened in reversed(entries):
                if opened[_STEP] is step:
                    try:
                        entries.remove(opened)
                    except ValueError:  # taken meanwhile by another thread
                        continue
                    return opened  # type: ignore[no-any-return]
        try:
            return entries.pop()
        except IndexError:  # taken meanwhile by another thread
            return None

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)
