"""Decorators and context managers of the library hook (``client.step/run/thread``).

Each decorated call opens a scope, runs the user's code and closes the scope; what differs
by kind of callable is only *when* the scope is active:

* functions and coroutine functions: from the call to the return (or the exception);
* generators and async generators: the step spans the whole iteration (first ``next`` to
  exhaustion, ``close`` or error) but is the *current* step only while the generator body
  runs, so the consumer's code between two items never sees it as its parent.

User exceptions are recorded on the step and re-raised unchanged (the same object, its
traceback intact); failures of the hook itself are counted and never reach user code.

Input capture (a deliberate, cheaper take on the reference SDK's ``flatten_args_kwargs``):
the bound arguments are collected in a dict keyed by parameter name, defaults included,
*without* ``deepcopy`` and without ``inspect.Signature.bind`` for ordinary signatures (the
parameter names are computed once, at decoration time). A leading ``self``/``cls`` is not
captured. Values are referenced, not copied: they are encoded later on the pipeline's
worker thread, so mutating an argument after the call may show in what is sent. Return
values are captured the same way (a dict as is, anything else as ``{"content": value}``).
Generators: the output is the concatenation of the items when they are all strings (a token
stream), else the list of items.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from agent._hook_core import HookCore, StepSpec

__all__ = ["capture_output", "decorate_step", "make_binder"]

F = TypeVar("F", bound=Callable[..., Any])
Binder = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def make_binder(func: Callable[..., Any]) -> Binder | None:
    """A function turning ``(args, kwargs)`` of a call into the input dict, or ``None``."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    first = params[0] if params else None
    is_self = first is not None and first.name in ("self", "cls") and first.kind in _POSITIONAL
    drop = first.name if first is not None and is_self else None

    def slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        out = dict(bound.arguments)
        if drop is not None:
            out.pop(drop, None)
        return out

    if any(p.kind in _VARIADIC for p in params):
        return slow
    return _generate_fast_binder(params, drop, slow)


def _generate_fast_binder(
    params: list[inspect.Parameter], drop: str | None, slow: Binder
) -> Binder:
    """Generate ``bind(args, kwargs)`` for a signature without ``*args``/``**kwargs``.

    For each possible number of positional arguments, the input dict is one dict literal
    (``{"a": args[0], "b": <default>}``), which is several times cheaper than
    ``Signature.bind``; keyword arguments or a missing required argument take the slow path
    (which reports the user's ``TypeError`` as the call itself will).
    """
    positional = [p for p in params if p.kind in _POSITIONAL]
    namespace: dict[str, Any] = {"slow": slow}
    branches: list[str] = []
    for count in range(len(positional) + 1):
        rest = [p for p in params if p not in positional[:count]]
        if any(p.default is p.empty for p in rest):
            continue  # a required argument would be missing: let the slow path complain
        items = []
        for index, param in enumerate(params):
            if param.name == drop:
                continue
            if index < count:
                items.append(f"{param.name!r}: args[{index}]")
            else:
                namespace[f"d{index}"] = param.default
                items.append(f"{param.name!r}: d{index}")
        branches.append(f"    if n == {count}:\n        return {{{', '.join(items)}}}\n")
    source = (
        "def bind(args, kwargs):\n"
        "    if kwargs:\n        return slow(args, kwargs)\n"
        "    n = len(args)\n" + "".join(branches) + "    return slow(args, kwargs)\n"
    )
    exec(source, namespace)  # noqa: S102 - source built from parameter names (identifiers)
    bind: Binder = namespace["bind"]
    return bind


def capture_output(result: Any) -> Any:
    """The step output for a return value: a dict as is, anything else as ``{"content": ...}``."""
    if isinstance(result, dict):
        return result
    return {"content": result}


def _generator_output(items: list[Any]) -> Any:
    if items and all(isinstance(i, str) for i in items):
        return {"content": "".join(items)}
    return {"content": items}


def decorate_step(client: HookCore, func: F, spec: StepSpec) -> F:
    """Wrap ``func`` so that each call (or iteration) is a step described by ``spec``."""
    binder: Binder | None = None
    if spec.capture_input:
        try:
            binder = make_binder(func)
        except Exception as exc:  # never let instrumentation break the decorated code
            client._stats.count("input_binder_failed", error=repr(exc))
    if inspect.isasyncgenfunction(func):
        return _wrap_async_gen(client, func, spec, binder)  # type: ignore[return-value]
    if inspect.isgeneratorfunction(func):
        return _wrap_gen(client, func, spec, binder)  # type: ignore[return-value]
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(client, func, spec, binder)  # type: ignore[return-value]
    return _wrap_function(client, func, spec, binder)  # type: ignore[return-value]


def _wrap_function(
    client: HookCore, func: Callable[..., Any], spec: StepSpec, binder: Binder | None
) -> Callable[..., Any]:
    call = client._call

    @functools.wraps(func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(spec, binder, func, args, kwargs)

    return sync_wrapper


def _wrap_coroutine(
    client: HookCore, func: Callable[..., Any], spec: StepSpec, binder: Binder | None
) -> Callable[..., Any]:
    open_step = client._open_step
    close_step = client._close_step

    @functools.wraps(func)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        opened = open_step(spec, binder, args, kwargs)
        if opened is None:
            return await func(*args, **kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            close_step(opened, exc, None, False)
            raise
        close_step(opened, None, result, True)
        return result

    return async_wrapper


def _wrap_gen(
    client: HookCore, func: Callable[..., Any], spec: StepSpec, binder: Binder | None
) -> Callable[..., Any]:
    @functools.wraps(func)
    def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        opened = client._open_step(spec, binder, args, kwargs)
        if opened is None:
            return (yield from func(*args, **kwargs))
        items: list[Any] = []
        try:
            gen = func(*args, **kwargs)
        except BaseException as exc:
            client._close_step(opened, exc, None, False)
            raise
        client._suspend(opened)
        send: Callable[[Any], Any] = gen.send
        value: Any = None
        while True:
            client._resume(opened)
            try:
                item = send(value)
            except StopIteration as stop:
                client._close_step(opened, None, _generator_output(items), True)
                return stop.value
            except BaseException as exc:
                client._close_step(opened, exc, None, False)
                raise
            client._suspend(opened)
            items.append(item)
            try:
                value = yield item
                send = gen.send
            except GeneratorExit:
                client._resume(opened)
                try:
                    gen.close()
                except BaseException as exc:
                    client._close_step(opened, exc, None, False)
                    raise
                client._close_step(opened, None, _generator_output(items), True)
                raise
            except BaseException as exc:
                send, value = gen.throw, exc

    return gen_wrapper


def _wrap_async_gen(
    client: HookCore, func: Callable[..., Any], spec: StepSpec, binder: Binder | None
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        opened = client._open_step(spec, binder, args, kwargs)
        if opened is None:
            async for item in func(*args, **kwargs):
                yield item
            return
        items: list[Any] = []
        try:
            agen = func(*args, **kwargs)
        except BaseException as exc:
            client._close_step(opened, exc, None, False)
            raise
        client._suspend(opened)
        send: Callable[[Any], Any] = agen.asend
        value: Any = None
        while True:
            client._resume(opened)
            try:
                item = await send(value)
            except StopAsyncIteration:
                client._close_step(opened, None, _generator_output(items), True)
                return
            except BaseException as exc:
                client._close_step(opened, exc, None, False)
                raise
            client._suspend(opened)
            items.append(item)
            try:
                value = yield item
                send = agen.asend
            except GeneratorExit:
                client._resume(opened)
                try:
                    await agen.aclose()
                except BaseException as exc:
                    client._close_step(opened, exc, None, False)
                    raise
                client._close_step(opened, None, _generator_output(items), True)
                raise
            except BaseException as exc:
                send, value = agen.athrow, exc

    return agen_wrapper
