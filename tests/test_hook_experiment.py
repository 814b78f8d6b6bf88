"""``client.environment(...)`` and ``client.experiment_item_run()`` against the real collector.

The experiment-item run is a ``run`` step whose id ``DatasetExperiment.log`` attaches as
``experimentRunId`` (read back from the collector's answer), per context (concurrent tasks
keep their own); its steps reach the collector in the ``experiment`` environment (read back
through GraphQL), and the process environment is put back afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import httpx
import pytest

from agent import _api
from agent._client import AsyncLiteralClient, LiteralClient
from agent.testing import CollectorThread


def read_steps(collector: CollectorThread, ids: list[str]) -> dict[str, dict[str, Any]]:
    """``environment``, ``parentId``, ``rootRunId``, ``type``, ``name`` of steps, via GraphQL."""
    fields = " ".join(
        f's{i}: step(id: "{sid}") {{ id environment parentId rootRunId type name }}'
        for i, sid in enumerate(ids)
    )
    response = httpx.post(
        f"{collector.url}/api/graphql",
        json={"query": f"query {{ {fields} }}", "variables": {}},
        headers={"x-api-key": collector.api_key},
        timeout=10,
    )
    data: dict[str, Any] = response.json()["data"]
    return {v["id"]: v for v in data.values() if v}


@pytest.fixture
def no_literal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITERAL_ENV", raising=False)


@pytest.mark.usefixtures("no_literal_env")
def test_experiment_item_run_attaches_its_id_and_sends_as_experiment(
    collector: CollectorThread,
) -> None:
    """Inside the block: the run step is current, its id is the experiment-item run, items
    logged carry it; its steps arrive with environment ``experiment``; outside: neither, and
    the environment is back to the default."""
    client = LiteralClient(api_key=collector.api_key, url=collector.url)
    api = client.api
    dataset = api.create_dataset(f"exp-{uuid.uuid4()}")
    experiment = dataset.create_experiment("hook experiment")

    tool_ids: list[str] = []

    @client.step(type="tool")
    def tool(question: str) -> str:
        step = client.get_current_step()
        assert step is not None
        tool_ids.append(step.id)
        return question.upper()

    assert client.get_current_experiment_run_id() is None
    with client.experiment_item_run() as run:
        assert client.get_current_experiment_run_id() == run.id
        assert client.get_current_step() is run and client.get_current_root_run() is run
        assert _api.active_environment == "experiment" and "LITERAL_ENV" not in os.environ
        tool("q")
        item = experiment.log({"input": {"q": 1}, "output": {"a": 2}})
    assert item.experiment_run_id == run.id and item.id
    assert client.get_current_experiment_run_id() is None and client.get_current_step() is None
    assert "LITERAL_ENV" not in os.environ and _api.active_environment is None
    outside = experiment.log({"input": {"q": 3}})
    assert outside.experiment_run_id is None

    tool("after")
    assert client.flush(timeout=20).timed_out is False
    client.flush_and_stop(timeout=5)
    steps = read_steps(collector, [run.id, *tool_ids])
    assert steps[run.id]["environment"] == "experiment"
    assert steps[run.id]["type"] == "run" and steps[run.id]["name"] == "Experiment Run"
    child = steps[tool_ids[0]]
    assert child["environment"] == "experiment" and child["rootRunId"] == run.id
    assert child["parentId"] == run.id
    after = steps[tool_ids[1]]  # sent after the block: the default environment again
    assert after["environment"] == "prod" and after["parentId"] is None
    assert client.hook_stats() == {}


@pytest.mark.usefixtures("no_literal_env")
def test_experiment_item_run_as_decorator_and_environment_block(
    collector: CollectorThread,
) -> None:
    """``@client.experiment_item_run`` opens one run per call; ``client.environment(env=...)``
    (block and decorator) sends with that environment (over LITERAL_ENV) and puts the
    previous one back."""
    client = LiteralClient(api_key=collector.api_key, url=collector.url)
    seen: list[str | None] = []

    @client.experiment_item_run
    def evaluate(i: int) -> str | None:
        run_id = client.get_current_experiment_run_id()
        seen.append(run_id)
        return run_id

    first, second = evaluate(1), evaluate(2)
    assert first and second and first != second and seen == [first, second]

    os.environ["LITERAL_ENV"] = "dev"
    try:
        with client.environment(env="staging"):
            assert _api.active_environment == "staging"
            assert os.environ["LITERAL_ENV"] == "dev"  # the process environment is left alone
            with client.step(name="staged") as staged:
                pass
            assert client.flush(timeout=20).timed_out is False

        @client.environment(env="staging-2")
        def decorated() -> str:
            with client.step(name="staged-2") as step:
                pass
            assert client.flush(timeout=20).timed_out is False
            return step.id

        second_id = decorated()
        assert os.environ["LITERAL_ENV"] == "dev" and _api.active_environment is None
    finally:
        del os.environ["LITERAL_ENV"]
    client.flush_and_stop(timeout=5)
    steps = read_steps(collector, [first, second, staged.id, second_id])
    assert steps[first]["environment"] == steps[second]["environment"] == "experiment"
    assert steps[staged.id]["environment"] == "staging"
    assert steps[second_id]["environment"] == "staging-2"


@pytest.mark.anyio
@pytest.mark.usefixtures("no_literal_env")
async def test_concurrent_async_experiment_runs_keep_their_own_id(
    collector: CollectorThread,
) -> None:
    """Tasks running experiment items at once each log their own run id (context-local);
    ``async with`` flushes without blocking the loop."""
    client = AsyncLiteralClient(api_key=collector.api_key, url=collector.url)
    dataset = await client.api.create_dataset(f"exp-async-{uuid.uuid4()}")
    experiment = await client.api.create_experiment("async hook experiment", dataset.id)

    async def one(i: int) -> tuple[str, str | None]:
        async with client.experiment_item_run() as run:
            await asyncio.sleep(0.01)
            item = await experiment.log({"input": {"i": i}})
            return run.id, item.experiment_run_id

    results = await asyncio.gather(*(one(i) for i in range(4)))
    assert len({run_id for run_id, _ in results}) == 4
    assert all(run_id == logged for run_id, logged in results)
    assert client.get_current_experiment_run_id() is None
    assert _api.active_environment is None  # overlapping blocks exited in any order
    client.flush_and_stop(timeout=5)
    steps = read_steps(collector, [run_id for run_id, _ in results])
    assert {s["environment"] for s in steps.values()} == {"experiment"} and len(steps) == 4
