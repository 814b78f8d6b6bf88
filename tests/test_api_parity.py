"""Parity: the twins against each other, and both against the reference SDK (literalai 0.1.300).

* ``LiteralAPI`` and ``AsyncLiteralAPI`` expose the same public methods with the same
  ``inspect.signature`` (async ones are coroutine functions).
* They have every method of the reference's ``LiteralAPI``, with the same parameter names,
  kinds and defaults.
* Each operation sends the same GraphQL document (compared as parsed ASTs), the same
  variables and uses the same description as the reference's helper for the same call.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import graphql
import pytest
from literalai.api import AsyncLiteralAPI as RefAsyncAPI
from literalai.api import LiteralAPI as RefAPI
from literalai.api.helpers import attachment_helpers as ref_att
from literalai.api.helpers import dataset_helpers as ref_ds
from literalai.api.helpers import generation_helpers as ref_gen
from literalai.api.helpers import gql as ref_gql
from literalai.api.helpers import prompt_helpers as ref_prompt
from literalai.api.helpers import score_helpers as ref_score
from literalai.api.helpers import step_helpers as ref_step
from literalai.api.helpers import thread_helpers as ref_thread
from literalai.api.helpers import user_helpers as ref_user
from literalai.observability.generation import ChatGeneration as RefChatGeneration
from literalai.observability.step import Step as RefStep

from agent import _operations as ops
from agent._api import AsyncLiteralAPI, LiteralAPI
from agent._models import ChatGeneration, DatasetExperimentItem, Step

LIFECYCLE = {"close", "aclose"}
# Plumbing whose `timeout` default differs between the reference's twins (None vs 10);
# ours use None = "the client's configured timeout" in both.
TIMEOUT_DEFAULTS = {"make_gql_call", "gql_helper"}


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_twins_have_the_same_methods_and_signatures() -> None:
    """Sync and async expose the same methods, same signatures; only the I/O style differs."""
    sync = {n: m for n, m in public_methods(LiteralAPI).items() if n not in LIFECYCLE}
    asynchronous = {n: m for n, m in public_methods(AsyncLiteralAPI).items() if n not in LIFECYCLE}
    assert sorted(sync) == sorted(asynchronous)
    assert len(sync) == 54
    for name, method in sync.items():
        assert inspect.signature(method) == inspect.signature(asynchronous[name]), name
        assert inspect.iscoroutinefunction(asynchronous[name]), name
        assert not inspect.iscoroutinefunction(method), name
    assert inspect.signature(LiteralAPI.__init__) == inspect.signature(AsyncLiteralAPI.__init__)


@pytest.mark.parametrize("reference", [RefAPI, RefAsyncAPI])
def test_same_methods_and_parameters_as_the_reference(reference: type) -> None:
    """Every reference method exists with the same parameter names, kinds and defaults."""
    ours = public_methods(LiteralAPI)
    theirs = public_methods(reference)
    assert sorted(theirs) == sorted(set(ours) - LIFECYCLE)
    for name, method in theirs.items():
        expected = inspect.signature(method).parameters
        actual = inspect.signature(ours[name]).parameters
        assert list(actual) == list(expected), name
        for param in expected:
            assert actual[param].kind == expected[param].kind, (name, param)
            if name in TIMEOUT_DEFAULTS and param == "timeout":
                continue
            assert actual[param].default == expected[param].default, (name, param)


def test_constructor_is_compatible() -> None:
    """The reference's positional (api_key, url, environment) come first."""
    params = list(inspect.signature(LiteralAPI.__init__).parameters)
    assert params[:4] == ["self", "api_key", "url", "environment"]


# --------------------------------------------------------------------------- documents


def normalize(document: str) -> str:
    return graphql.print_ast(graphql.parse(document))


def first(flow: Any, *results: Any) -> ops.Operation[Any]:
    """The operation a flow yields after being fed ``results``."""
    request = next(flow)
    for result in results:
        request = flow.send(result)
    assert isinstance(request, ops.Operation)
    return request


FILTERS = [{"field": "name", "operator": "eq", "value": "x"}]
ORDER = {"column": "createdAt", "direction": "ASC"}
MESSAGES = [{"role": "user", "content": "{{a}}"}]


def cases() -> list[tuple[str, ops.Operation[Any], tuple[Any, ...]]]:
    """(name, our operation, the reference helper's (query, description, variables, ...))."""
    ref_chat = RefChatGeneration(model="m", messages=[{"role": "user", "content": "x"}])
    our_chat = ChatGeneration(model="m", messages=[{"role": "user", "content": "x"}])
    item = DatasetExperimentItem(
        dataset_experiment_id="e", dataset_item_id="i", experiment_run_id="r", input={"a": 1}
    )
    rollouts = [{"version": 0, "rollout": 100}]
    return [
        (
            "get_users",
            ops.get_users(5, "a", "b", FILTERS),
            ref_user.get_users_helper(5, "a", "b", FILTERS),
        ),
        ("get_users-empty", ops.get_users(0), ref_user.get_users_helper(0)),
        ("get_user", ops.get_user(identifier="i"), ref_user.get_user_helper(identifier="i")),
        ("create_user", ops.create_user("i"), ref_user.create_user_helper("i")),
        (
            "update_user",
            ops.update_user("u", None, {"m": 1}),
            ref_user.update_user_helper("u", None, {"m": 1}),
        ),
        ("delete_user", ops.delete_user("u"), ref_user.delete_user_helper("u")),
        (
            "get_threads",
            ops.get_threads(2, None, "b", FILTERS, ORDER, ["llm"]),
            ref_thread.get_threads_helper(2, None, "b", FILTERS, ORDER, ["llm"]),
        ),
        (
            "list_threads",
            ops.list_threads(2, "a", None, FILTERS, ORDER),
            ref_thread.list_threads_helper(2, "a", None, FILTERS, ORDER),
        ),
        ("get_thread", ops.get_thread("t"), ref_thread.get_thread_helper("t")),
        (
            "create_thread",
            ops.create_thread("n", None, "p"),
            ref_thread.create_thread_helper("n", None, "p"),
        ),
        (
            "upsert_thread",
            ops.upsert_thread("t", None, {"m": 1}, None, ["x"]),
            ref_thread.upsert_thread_helper("t", None, {"m": 1}, None, ["x"]),
        ),
        ("update_thread", ops.update_thread("t", "n"), ref_thread.update_thread_helper("t", "n")),
        ("delete_thread", ops.delete_thread("t"), ref_thread.delete_thread_helper("t")),
        (
            "get_scores",
            ops.get_scores(1, None, None, FILTERS, ORDER),
            ref_score.get_scores_helper(1, None, None, FILTERS, ORDER),
        ),
        (
            "create_score",
            ops.create_score("n", 0.5, "AI", "s", None, "c", ["t"]),
            ref_score.create_score_helper("n", 0.5, "AI", "s", None, "c", ["t"]),
        ),
        (
            "update_score",
            ops.update_score("s", {"value": 1.0}),
            ref_score.update_score_helper("s", {"value": 1.0}),
        ),
        ("delete_score", ops.delete_score("s"), ref_score.delete_score_helper("s")),
        (
            "create_attachment",
            first(
                ops.create_attachment(
                    "t", "s", "a", {"m": 1}, "image/png", "x.png", None, "https://u"
                )
            ),
            ref_att.create_attachment_helper(
                "s", "t", "a", {"m": 1}, "image/png", "x.png", None, "https://u"
            ),
        ),
        (
            "update_attachment",
            ops.update_attachment("a", {"name": "n"}),
            ref_att.update_attachment_helper("a", {"name": "n"}),
        ),
        ("get_attachment", ops.get_attachment("a"), ref_att.get_attachment_helper("a")),
        ("delete_attachment", ops.delete_attachment("a"), ref_att.delete_attachment_helper("a")),
        (
            "create_step",
            ops.create_step("t", "llm", "s", None, {"i": 1}, None, None, "p", "n", None, "r"),
            ref_step.create_step_helper(
                "t", "llm", "s", None, {"i": 1}, None, None, "p", "n", None, "r"
            ),
        ),
        (
            "update_step",
            ops.update_step("s", "tool", None, {"o": 1}),
            ref_step.update_step_helper("s", "tool", None, {"o": 1}),
        ),
        (
            "get_steps",
            ops.get_steps(3, None, None, FILTERS, ORDER),
            ref_step.get_steps_helper(3, None, None, FILTERS, ORDER),
        ),
        ("get_step", ops.get_step("s"), ref_step.get_step_helper("s")),
        ("delete_step", ops.delete_step("s"), ref_step.delete_step_helper("s")),
        (
            "get_generations",
            ops.get_generations(2, "a", None, FILTERS, ORDER),
            ref_gen.get_generations_helper(2, "a", None, FILTERS, ORDER),
        ),
        (
            "create_generation",
            ops.create_generation(our_chat),
            ref_gen.create_generation_helper(ref_chat),
        ),
        (
            "create_dataset",
            ops.create_dataset("d", "x", {"m": 1}, "generation"),
            ref_ds.create_dataset_helper(None, "d", "x", {"m": 1}, "generation"),
        ),  # type: ignore[arg-type]
        (
            "update_dataset",
            ops.update_dataset("d", None, "x"),
            ref_ds.update_dataset_helper(None, "d", None, "x"),
        ),  # type: ignore[arg-type]
        ("delete_dataset", ops.delete_dataset("d"), ref_ds.delete_dataset_helper(None, "d")),  # type: ignore[arg-type]
        (
            "create_experiment",
            ops.create_experiment("e", "d", "v", {"p": 1}),
            ref_ds.create_experiment_helper(None, "e", "d", "v", {"p": 1}),
        ),  # type: ignore[arg-type]
        (
            "create_experiment_item",
            first(ops.create_experiment_item(item)),
            ref_ds.create_experiment_item_helper("e", "r", "i", {"a": 1}, None),
        ),
        (
            "create_dataset_item",
            ops.create_dataset_item("d", {"i": 1}, None, {"m": 1}),
            ref_ds.create_dataset_item_helper("d", {"i": 1}, None, {"m": 1}),
        ),
        ("get_dataset_item", ops.get_dataset_item("i"), ref_ds.get_dataset_item_helper("i")),
        (
            "delete_dataset_item",
            ops.delete_dataset_item("i"),
            ref_ds.delete_dataset_item_helper("i"),
        ),
        (
            "add_step_to_dataset",
            ops.add_step_to_dataset("d", "s"),
            ref_ds.add_step_to_dataset_helper("d", "s"),
        ),
        (
            "add_generation_to_dataset",
            ops.add_generation_to_dataset("d", "g", {"m": 1}),
            ref_ds.add_generation_to_dataset_helper("d", "g", {"m": 1}),
        ),
        (
            "create_prompt_lineage",
            ops.get_or_create_prompt_lineage("p", "d"),
            ref_prompt.create_prompt_lineage_helper("p", "d"),
        ),
        (
            "create_prompt_version",
            first(ops.get_or_create_prompt("p", MESSAGES, {"model": "m"}), {"id": "L"}),
            ref_prompt.create_prompt_helper(None, "L", MESSAGES, {"model": "m"}, None),
        ),  # type: ignore[arg-type]
        (
            "get_prompt",
            first(ops.get_prompt(None, "p", 0)),
            ref_prompt.get_prompt_helper(None, None, "p", 0),
        ),  # type: ignore[arg-type]
        (
            "get_prompt_lineage",
            first(ops.create_prompt_variant("p", MESSAGES)),
            ref_prompt.get_prompt_lineage_helper("p"),
        ),
        (
            "create_prompt_variant",
            first(ops.create_prompt_variant("p", MESSAGES), {"id": "L"}),
            ref_prompt.create_prompt_variant_helper("L", MESSAGES),
        ),
        (
            "get_prompt_ab_testing",
            ops.get_prompt_ab_testing("p"),
            ref_prompt.get_prompt_ab_testing_helper("p"),
        ),
        (
            "update_prompt_ab_testing",
            ops.update_prompt_ab_testing("p", rollouts),
            ref_prompt.update_prompt_ab_testing_helper("p", rollouts),
        ),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize(("name", "ours", "reference"), cases(), ids=[c[0] for c in cases()])
def test_operation_matches_the_reference(
    name: str, ours: ops.Operation[Any], reference: tuple[Any, ...]
) -> None:
    """Same document (as an AST), same variables, same description."""
    query, description, variables = reference[0], reference[1], reference[2]
    assert ours.query is not None
    assert normalize(ours.query) == normalize(query)
    assert json.loads(json.dumps(dict(ours.variables))) == json.loads(json.dumps(variables))
    assert ours.description == description


def test_get_dataset_matches_the_reference() -> None:
    """REST export: same path and body."""
    path, description, body, _ = ref_ds.get_dataset_helper(None, id="d", name="n")  # type: ignore[arg-type]
    ours = ops.get_dataset("d", "n")
    assert ours.path == path and dict(ours.body or {}) == body and ours.description == description


@pytest.mark.parametrize("n", [1, 2, 7])
def test_batched_documents_match_the_reference(n: int) -> None:
    """AddStep and CreateScores for n items: same documents; built once per size."""
    assert normalize(ops.gql.add_steps_document(n)) == normalize(
        ref_gql.steps_query_builder([{}] * n)
    )
    assert normalize(ops.gql.create_scores_document(n)) == normalize(
        ref_score.create_scores_query_builder([{}] * n)  # type: ignore[list-item]
    )
    assert ops.gql.add_steps_document(n) is ops.gql.add_steps_document(n)


def test_send_steps_variables_match_the_reference() -> None:
    """Dict steps and Step objects produce the reference's variables."""
    dict_steps = [
        {"id": "a", "type": "run", "name": "r", "input": {"x": (1, 2)}, "metadata": {"s": {3}}},
        {"id": "b", "parentId": "a", "type": "llm", "output": None, "environment_0": "extra"},
    ]
    ours = ops.send_steps([dict(s) for s in dict_steps])
    _, description, variables, _ = ref_step.send_steps_helper([dict(s) for s in dict_steps])  # type: ignore[list-item]
    assert description == ours.description
    assert json.loads(json.dumps(dict(ours.variables))) == json.loads(json.dumps(variables))

    ref = RefStep(name="n", type="tool", id="s1", thread_id="t", tags=["x"], metadata={"m": 1})
    ref.input = {"content": "hi"}
    ref.end_time = "2024-01-01T00:00:00Z"
    our = Step(
        id="s1",
        name="n",
        type="tool",
        thread_id="t",
        tags=["x"],
        metadata={"m": 1},
        input={"content": "hi"},
        start_time=ref.start_time,
        end_time=ref.end_time,
    )
    _, _, ref_variables, _ = ref_step.send_steps_helper([ref])
    assert dict(ops.send_steps([our]).variables) == ref_variables
