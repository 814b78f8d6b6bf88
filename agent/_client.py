"""LiteralClient / AsyncLiteralClient: the library hook (decorators, context managers, context).

Mirrors the reference SDK's client (``literalai/client.py``, §6 of the protocol notes) with
three deliberate differences:

* Nothing blocks the caller: ended steps, scores and thread upserts are *enqueued* on the
  pipeline (started lazily, on the first item). The reference flushes synchronously when a
  step raises and upserts threads with a blocking HTTP call; we do neither.
* The hook never raises into user code: its own failures are counted
  (:meth:`BaseLiteralClient.hook_stats`) and logged. User exceptions are recorded on the
  step (``error``) and re-raised unchanged.
* A ``run`` step is the root run until *it* exits (the reference clears the root run when
  any step exits), and ``client.thread`` restores the enclosing thread on exit.

Filling of ``parent_id``, ``thread_id`` and ``root_run_id`` follows the reference: explicit
argument, else the innermost open step's, else the active thread / root run.

Where items go: an injected ``sink=`` (anything with the pipeline's ``Sink`` interface), else
``transport="pipeline"`` (default: an in-process :class:`~agent.pipeline.Pipeline`) or
``transport="daemon"`` (the local daemon, :class:`~agent.daemon.DaemonSink`), started on the
first item.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from agent._context import (
    get_current_experiment_run_id,
    get_current_root_run,
    get_current_step,
    get_current_thread,
    reset_context,
    state_var,
)
from agent._hook_attach import Uploader
from agent._hook_core import _SPEC_CACHE, HookCore, StepSpec
from agent._hook_core import STEP as _STEP
from agent._hook_core import TOKEN as _TOKEN
from agent._hook_frozen import FROZEN_EMPTY
from agent._hook_ids import iso_now, new_step_id
from agent._hook_managers import (
    EnvironmentContextManager,
    ExperimentItemRunContextManager,
    StepContextManager,
    ThreadContextManager,
    new_step_manager,
)
from agent._hook_sink import SinkHolder, SinkLike
from agent._hook_stats import HookStats
from agent._models import (
    Attachment,
    Score,
    ScoreType,
    Step,
    StepType,
    Thread,
)

if TYPE_CHECKING:
    from agent._api import AsyncLiteralAPI, LiteralAPI

__all__ = [
    "AsyncLiteralClient",
    "BaseLiteralClient",
    "EnvironmentContextManager",
    "ExperimentItemRunContextManager",
    "LiteralClient",
    "StepContextManager",
    "StepSpec",
    "ThreadContextManager",
]

F = TypeVar("F", bound=Callable[..., Any])

_TRANSPORTS = frozenset({"pipeline", "daemon"})
_new_object = object.__new__
_MESSAGE_TYPES = frozenset(
    {StepType.USER_MESSAGE, StepType.ASSISTANT_MESSAGE, StepType.SYSTEM_MESSAGE}
)


class BaseLiteralClient(HookCore):
    """What :class:`LiteralClient` and :class:`AsyncLiteralClient` share (all but I/O)."""

    def __init__(  # noqa: PLR0917 - the reference constructor is positional
        self,
        batch_size: int = 5,
        api_key: str | None = None,
        url: str | None = None,
        environment: str | None = None,
        disabled: bool = False,
        release: str | None = None,
        *,
        config: Any = None,
        sink: SinkLike | None = None,
        preprocess: Callable[[list[Any]], list[Any]] | None = None,
        transport: str = "pipeline",
        _holder: SinkHolder | None = None,
    ) -> None:
        if transport not in _TRANSPORTS:
            raise ValueError(f"transport must be one of {sorted(_TRANSPORTS)}, not {transport!r}")
        self.transport = transport
        # batch_size is accepted for compatibility; batching is the pipeline's (config).
        self.batch_size = batch_size
        self._api_key = api_key
        self._url = url
        self._environment = environment
        self._config = config
        self._preprocess = preprocess
        self.disabled = disabled
        if environment:
            # The reference sets the process-wide LITERAL_ENV (the x-env header at send time).
            os.environ["LITERAL_ENV"] = environment
        self.global_metadata: dict[str, Any] | None = (
            {"release": release.strip()} if release and release.strip() else None
        )
        self._holder = _holder or SinkHolder(
            self._make_sink, sink=sink, disabled=disabled, stats=HookStats("agent.hook")
        )
        self._stats = self._holder.stats
        self._api: Any = None
        self._uploader = Uploader(self._holder, self._upload_api)

    # ------------------------------------------------------------------ plumbing

    def _make_sink(self) -> SinkLike:
        """Start the transport (called on the first enqueued item): the in-process pipeline,
        or ``transport="daemon"``: a connection to the local daemon (its socket from
        ``config.daemon``, else the configured default)."""
        if self.transport == "daemon":
            from agent.daemon import DaemonSink

            daemon = getattr(self._config, "daemon", None)
            return DaemonSink(daemon.resolved_socket if daemon is not None else None)
        from agent.pipeline import Pipeline

        return Pipeline(
            self._config, api_key=self._api_key, url=self._url, preprocess=self._preprocess
        )

    def _upload_api(self) -> Any:
        """A synchronous API client for background uploads (its own, never the loop's)."""
        from agent._api import LiteralAPI

        return LiteralAPI(api_key=self._api_key, url=self._url, environment=self._environment)

    @property
    def sink(self) -> SinkLike | None:
        """The pipeline (or injected sink) steps go to; started on first access."""
        return self._holder.get()

    def hook_stats(self) -> dict[str, int]:
        """Counters of the hook's own failures and of the items it dropped, by reason."""
        return self._holder.stats.snapshot()

    def set_preprocess_steps_function(
        self, preprocess_steps_function: Callable[[list[Any]], list[Any]] | None
    ) -> None:
        """Set the function run on each batch of step dicts before sending (e.g. PII removal).

        Takes effect when the pipeline starts; a running pipeline keeps its function unless
        it exposes ``set_preprocess``.
        """
        self._preprocess = preprocess_steps_function
        sink = self._holder._sink
        setter = getattr(sink, "set_preprocess", None)
        if setter is not None:
            try:
                setter(preprocess_steps_function)
            except Exception as exc:
                self._stats.count("set_preprocess_failed", error=repr(exc))
        elif sink is not None:
            self._stats.count("preprocess_ignored_pipeline_running")

    # ------------------------------------------------------------------ public API

    @property
    def api(self) -> Any:
        """The API client (built on first access)."""
        raise NotImplementedError

    @overload
    def thread(self, original_function: F, /) -> F: ...
    @overload
    def thread(
        self,
        original_function: None = None,
        /,
        *,
        thread_id: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> ThreadContextManager: ...
    def thread(
        self,
        original_function: Callable[..., Any] | None = None,
        /,
        *,
        thread_id: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """A thread, as decorator (``@client.thread`` / ``@client.thread(name=...)``) or
        (async) context manager. ``metadata``, ``tags``, ``participant_id`` go to the thread;
        it is upserted (through the pipeline) when the block exits."""
        cm = ThreadContextManager(self, thread_id=thread_id, name=name, **kwargs)
        if original_function is not None:
            return cm(original_function)
        return cm

    @overload
    def step(self, original_function: F, /) -> F: ...
    @overload
    def step(
        self,
        original_function: None = None,
        /,
        *,
        name: str = "",
        type: StepType | str = "undefined",
        id: str | None = None,
        parent_id: str | None = None,
        thread_id: str | None = None,
        root_run_id: str | None = None,
        **kwargs: Any,
    ) -> StepContextManager: ...
    def step(
        self,
        original_function: Callable[..., Any] | None = None,
        /,
        *,
        name: str = "",
        type: StepType | str = "undefined",
        id: str | None = None,
        parent_id: str | None = None,
        thread_id: str | None = None,
        root_run_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """A step, as decorator (with or without arguments; functions, coroutines,
        generators, async generators) or (async) context manager.

        Extra keyword arguments: ``metadata``, ``tags`` and any :class:`Step` field
        (``input``, ``output``, ``generation``, ``attachments``...); ``capture_input=False``
        / ``capture_output=False`` turn off argument and return-value capture.
        """
        if not kwargs and id is None and parent_id is None and thread_id is None and (
            root_run_id is None
        ):
            # inline ``with client.step(name=..., type=...)``: HookCore._spec's cache, inlined
            try:
                spec = _SPEC_CACHE.get((name, type)) or self._spec(
                    name, type, None, None, None, None, kwargs
                )
            except TypeError:  # unhashable type: let _spec count it
                spec = self._spec(name, type, id, parent_id, thread_id, root_run_id, kwargs)
            if original_function is None:  # new_step_manager(), inlined
                cm: StepContextManager = _new_object(StepContextManager)
                cm._client = self
                cm._spec = spec
                cm._opened = []
                return cm
        else:
            spec = self._spec(name, type, id, parent_id, thread_id, root_run_id, kwargs)
        cm = new_step_manager(self, spec)
        if original_function is not None:
            return cm(original_function)
        return cm

    @overload
    def run(self, original_function: F, /) -> F: ...
    @overload
    def run(
        self,
        original_function: None = None,
        /,
        *,
        name: str = "",
        id: str | None = None,
        parent_id: str | None = None,
        thread_id: str | None = None,
        root_run_id: str | None = None,
        **kwargs: Any,
    ) -> StepContextManager: ...
    def run(
        self,
        original_function: Callable[..., Any] | None = None,
        /,
        *,
        name: str = "",
        id: str | None = None,
        parent_id: str | None = None,
        thread_id: str | None = None,
        root_run_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """``step`` with ``type="run"``; the outermost run of a context is its root run."""
        spec = self._spec(name, StepType.RUN, id, parent_id, thread_id, root_run_id, kwargs)
        cm = new_step_manager(self, spec)
        if original_function is not None:
            return cm(original_function)
        return cm

    @overload
    def environment(self, original_function: F, /) -> F: ...
    @overload
    def environment(
        self, original_function: None = None, /, env: str = "prod"
    ) -> EnvironmentContextManager: ...
    def environment(
        self, original_function: Callable[..., Any] | None = None, /, env: str = "prod"
    ) -> Any:
        """Send with ``x-env: env`` while a block (or each call of a decorated function)
        runs: ``with client.environment(env="staging"): ...``. Process-wide, like the
        reference (see :class:`~agent._hook_managers.EnvironmentContextManager`)."""
        cm = EnvironmentContextManager(self, env)
        if original_function is not None:
            return cm(original_function)
        return cm

    @overload
    def experiment_item_run(self, original_function: F, /) -> F: ...
    @overload
    def experiment_item_run(
        self, original_function: None = None, /, *, flush_timeout: float | None = 30.0
    ) -> ExperimentItemRunContextManager: ...
    def experiment_item_run(
        self,
        original_function: Callable[..., Any] | None = None,
        /,
        *,
        flush_timeout: float | None = 30.0,
    ) -> Any:
        """One run of an experiment item: a ``run`` step ("Experiment Run") whose id
        ``DatasetExperiment.log`` attaches as ``experimentRunId``, sent in the ``experiment``
        environment (the pipeline is flushed when the block exits, at most
        ``flush_timeout`` seconds). As decorator or (async) context manager."""
        cm = ExperimentItemRunContextManager(self, flush_timeout)
        if original_function is not None:
            return cm(original_function)
        return cm

    def start_step(  # noqa: PLR0917 - reference signature
        self,
        name: str = "",
        type: StepType | str | None = None,
        id: str | None = None,
        parent_id: str | None = None,
        thread_id: str | None = None,
        root_run_id: str | None = None,
        **kwargs: Any,
    ) -> Step:
        """Open a step in the current context; end it with ``client.end_step(step)``
        (``step.end()`` also works, as in the reference SDK)."""
        spec = self._spec(name, type, id, parent_id, thread_id, root_run_id, kwargs)
        opened = self._open_step(spec, None, (), {})
        if opened is None:
            return Step(name=name)
        step: Step = opened[_STEP]
        # ended whenever the caller likes, maybe after other context changes: no token reset
        # (which would restore the whole context as it was), remove just this step
        opened[_TOKEN] = None
        try:
            step.__dict__["_literal_opened"] = opened
            step.__dict__["end"] = lambda: self.end_step(step)
        except Exception as exc:
            self._stats.count("step_start_failed", error=repr(exc))
        return step

    def end_step(self, step: Step) -> None:
        """End a step opened by :meth:`start_step` and enqueue it (once)."""
        opened = step.__dict__.pop("_literal_opened", None)
        if not isinstance(opened, list):
            self._stats.count("step_ended_twice_or_not_started")
            return
        self._close_step(opened, None, None, False)

    def message(  # noqa: PLR0917 - reference signature
        self,
        content: str = "",
        id: str | None = None,
        parent_id: str | None = None,
        type: StepType | str = "assistant_message",
        name: str | None = None,
        thread_id: str | None = None,
        attachments: list[Attachment] | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        root_run_id: str | None = None,
    ) -> Step:
        """Log a chat message (a message step, ``output = {"content": content}``) now."""
        try:
            try:
                step_type = StepType(type)
                if step_type not in _MESSAGE_TYPES:
                    raise ValueError(type)
            except ValueError:
                self._stats.count("invalid_message_type", type=repr(type))
                step_type = StepType.ASSISTANT_MESSAGE
            steps, thread, root = state_var.get()
            if steps:
                parent = steps[-1]
                parent_id = parent_id or parent.id
                thread_id = thread_id or parent.thread_id
                root_run_id = root_run_id or parent.root_run_id
            if not thread_id and thread is not None:
                thread_id = thread.id
            if not root_run_id and root is not None:
                root_run_id = root.id
            if not thread_id and not parent_id:
                # The reference raises here; we log it and send the message anyway.
                self._stats.count("message_without_thread_or_parent")
            now = iso_now()
            step = Step(
                id=id or new_step_id(),
                name=name,
                type=step_type,
                thread_id=thread_id,
                parent_id=parent_id,
                root_run_id=root_run_id,
                start_time=now,
                end_time=now,
                output={"content": content},
                metadata=self._step_metadata(metadata),
                tags=tags,
                scores=FROZEN_EMPTY,
                attachments=list(attachments) if attachments else FROZEN_EMPTY,
            )
        except Exception as exc:
            self._stats.count("message_failed", error=repr(exc))
            return Step(name=name, output={"content": content})
        self._holder.enqueue(step)
        return step

    def score(
        self,
        name: str,
        value: float,
        *,
        type: ScoreType | str = ScoreType.HUMAN,
        comment: str | None = None,
        tags: list[str] | None = None,
        label: str | None = None,
        step_id: str | None = None,
    ) -> Score | None:
        """Score the current step (or ``step_id``); the score travels through the pipeline.

        Returns the :class:`Score`, or ``None`` (counted, logged) when the value is not a
        finite number, the type is unknown or there is no step to score.
        """
        try:
            number = float(value)
        except (TypeError, ValueError):
            self._stats.count("score_value_invalid", score=name)
            return None
        if not math.isfinite(number):
            self._stats.count("score_value_not_finite", score=name, value=repr(number))
            return None
        try:
            score_type = ScoreType(type)
        except ValueError:
            self._stats.count("score_type_invalid", score=name, type=repr(type))
            return None
        if step_id is None:
            current = get_current_step()
            if current is None:
                self._stats.count("score_without_step", score=name)
                return None
            step_id = current.id
        score = Score(
            name=name,
            type=score_type,
            value=number,
            step_id=step_id,
            comment=comment,
            tags=tags,
            label=label,
        )
        self._holder.enqueue(score)
        return score

    def attach(
        self,
        *,
        name: str | None = None,
        content: bytes | str | None = None,
        path: str | None = None,
        url: str | None = None,
        mime: str | None = None,
        metadata: dict[str, Any] | None = None,
        step: Step | None = None,
    ) -> Attachment | None:
        """Attach a file to the current step (or ``step``) without blocking the caller.

        A ``url`` is attached as is (it travels with the step, or as an update of a step that
        already ended). ``content`` or a ``path`` is uploaded in the background through
        ``api.upload_file``; the attachment (with its object key) is then sent as an update
        of the step. Returns the :class:`Attachment`, or ``None`` (counted) without a step.
        """
        target = step if step is not None else get_current_step()
        if target is None:
            self._stats.count("attachment_without_step", name=name)
            return None
        attachment = Attachment(
            name=name,
            mime=mime,
            url=url,
            metadata=dict(metadata or {}),
            step_id=target.id,
            thread_id=target.thread_id,
        )
        if self.disabled:
            return attachment
        if content is None and path is None:
            if target.end_time is None:
                target.attachments.append(attachment)
            else:
                self._holder.enqueue({"id": target.id, "attachments": [attachment.to_dict()]})
            return attachment
        self._uploader.submit(attachment, target.id, content, path)
        return attachment

    def get_current_step(self) -> Step | None:
        """The innermost open step of the current context."""
        return get_current_step()

    def get_current_thread(self) -> Thread | None:
        """The active thread of the current context."""
        return get_current_thread()

    def get_current_root_run(self) -> Step | None:
        """The root run of the current context."""
        return get_current_root_run()

    def get_current_experiment_run_id(self) -> str | None:
        """The id of the current ``experiment_item_run()`` of this context, or ``None``."""
        return get_current_experiment_run_id()

    def reset_context(self) -> None:
        """Forget the open steps, the active thread and the root run of this context."""
        reset_context()

    def _flush(self, timeout: float | None) -> Any:
        if self._uploader.pending:
            started = time.monotonic()
            if not self._uploader.wait(timeout):
                self._stats.count("flush_uploads_pending")
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started))
        return self._holder.flush(timeout)

    def flush_and_stop(self, timeout: float | None = None) -> Any:
        """Deliver what is queued, then stop the pipeline (later items are counted drops)."""
        self._uploader.wait(timeout)
        self._uploader.shutdown()
        return self._holder.shutdown(timeout)


class LiteralClient(BaseLiteralClient):
    """Synchronous client: ``api`` is a :class:`~agent.LiteralAPI`; ``flush()`` blocks."""

    @property
    def api(self) -> LiteralAPI:
        """The synchronous API client (built on first access)."""
        if self._api is None:
            from agent._api import LiteralAPI

            self._api = LiteralAPI(
                api_key=self._api_key, url=self._url, environment=self._environment
            )
        return self._api  # type: ignore[no-any-return]

    def flush(self, timeout: float | None = None) -> Any:
        """Wait until what was queued so far (and pending uploads) is delivered or spooled;
        the sink's result."""
        return self._flush(timeout)

    def to_sync(self) -> LiteralClient:
        """This client (for parity with :meth:`AsyncLiteralClient.to_sync`)."""
        return self


class AsyncLiteralClient(BaseLiteralClient):
    """Asynchronous client: ``api`` is an :class:`~agent.AsyncLiteralAPI`; ``await flush()``."""

    @property
    def api(self) -> AsyncLiteralAPI:
        """The asynchronous API client (built on first access)."""
        if self._api is None:
            from agent._api import AsyncLiteralAPI

            self._api = AsyncLiteralAPI(
                api_key=self._api_key, url=self._url, environment=self._environment
            )
        return self._api  # type: ignore[no-any-return]

    async def flush(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - sync twin's API
        """Wait (in a worker thread, the loop keeps running) until the queue is delivered."""
        return await asyncio.to_thread(self._flush, timeout)

    def to_sync(self) -> LiteralClient:
        """A :class:`LiteralClient` sharing this client's pipeline, settings and counters."""
        client = LiteralClient(
            self.batch_size,
            self._api_key,
            self._url,
            self._environment,
            self.disabled,
            None,
            config=self._config,
            preprocess=self._preprocess,
            transport=self.transport,
            _holder=self._holder,
        )
        client.global_metadata = self.global_metadata
        client._uploader = self._uploader
        return client
