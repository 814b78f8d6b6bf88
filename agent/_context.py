"""Context variables of the library hook: the open steps, the active thread, the root run.

Standard :mod:`contextvars` semantics, like the reference SDK (``literalai/context.py``):

* asyncio tasks (and ``asyncio.to_thread``) start with a *copy* of their creator's context,
  so a task created inside a step sees that step as its parent; what the task opens is
  invisible to its creator and its siblings;
* a new OS thread starts with an *empty* context: steps opened there have no parent and no
  thread unless the caller carries the context over (``contextvars.copy_context().run``).

The experiment-item run of ``client.experiment_item_run()`` (the id that
``DatasetExperiment.log`` attaches, as the reference's ``active_experiment_item_run_id_var``)
is a second variable: it is rarely set and never read on the hot path.

The three values live in *one* context variable holding an immutable
``(open_steps, thread, root_run)`` tuple (innermost step last): a decorated call then costs
one ``get`` and one ``set`` on entry and on exit, and a copied context can never be mutated
by the code that copied it.
"""

from __future__ import annotations

from contextvars import ContextVar

from agent._models import Step, Thread

__all__ = [
    "EMPTY",
    "State",
    "experiment_run_var",
    "get_current_experiment_run_id",
    "get_current_root_run",
    "get_current_step",
    "get_current_thread",
    "pop_step",
    "push_step",
    "reset_context",
    "set_root_run",
    "set_thread",
    "state_var",
]

State = tuple[tuple[Step, ...], Thread | None, Step | None]
EMPTY: State = ((), None, None)

state_var: ContextVar[State] = ContextVar("literal_hook_state", default=EMPTY)

experiment_run_var: ContextVar[str | None] = ContextVar(
    "literal_experiment_item_run", default=None
)


def get_current_step() -> Step | None:
    """The innermost open step of this context, or ``None``."""
    steps = state_var.get()[0]
    return steps[-1] if steps else None


def get_current_thread() -> Thread | None:
    """The thread opened by the innermost ``client.thread(...)`` of this context, or ``None``."""
    return state_var.get()[1]


def get_current_experiment_run_id() -> str | None:
    """The id of the innermost ``client.experiment_item_run()`` of this context, or ``None``."""
    return experiment_run_var.get()


def get_current_root_run() -> Step | None:
    """The outermost open ``run`` step of this context, or ``None``."""
    return state_var.get()[2]


def reset_context() -> None:
    """Forget the open steps, the active thread, the root run and the experiment-item run of
    this context."""
    state_var.set(EMPTY)
    if experiment_run_var.get() is not None:
        experiment_run_var.set(None)


def set_thread(thread: Thread | None) -> Thread | None:
    """Make ``thread`` the active thread; returns the previous one."""
    steps, previous, root = state_var.get()
    state_var.set((steps, thread, root))
    return previous


def set_root_run(step: Step | None) -> Step | None:
    """Make ``step`` the root run; returns the previous one."""
    steps, thread, previous = state_var.get()
    state_var.set((steps, thread, step))
    return previous


def push_step(step: Step, *, root: bool = False) -> Step | None:
    """Make ``step`` the innermost open step (and the root run if ``root``).

    Returns the root run that was active before.
    """
    steps, thread, previous = state_var.get()
    state_var.set(((*steps, step), thread, step if root else previous))
    return previous


def pop_step(step: Step, *, restore_root: bool = False, root: Step | None = None) -> bool:
    """Remove ``step`` from the open steps; ``False`` if it was not open.

    With ``restore_root``, the root run becomes ``root`` again. The usual case (``step`` is
    the innermost) is one slice; a step closed out of order (``start_step``/``end_step``)
    is removed wherever it is.
    """
    steps, thread, current_root = state_var.get()
    if restore_root:
        current_root = root
    if steps and steps[-1] is step:
        state_var.set((steps[:-1], thread, current_root))
        return True
    if any(s is step for s in steps):
        state_var.set((tuple(s for s in steps if s is not step), thread, current_root))
        return True
    if restore_root:
        state_var.set((steps, thread, current_root))
    return False
