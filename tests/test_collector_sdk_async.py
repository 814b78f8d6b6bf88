"""The reference SDK's ``AsyncLiteralAPI`` against the collector: every public method."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import httpx
import pytest
from literalai.api import AsyncLiteralAPI
from literalai.evaluation.dataset_experiment import DatasetExperimentItem
from literalai.observability.generation import ChatGeneration
from literalai.observability.step import Score

from agent.testing import CollectorThread

pytestmark = pytest.mark.anyio


@pytest.fixture
def quiet_deprecations() -> Iterator[None]:
    """Silence the DeprecationWarning of SDK aliases that a test calls on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@pytest.fixture
def aapi(collector: CollectorThread) -> AsyncLiteralAPI:
    """An async SDK client bound to the session collector."""
    return AsyncLiteralAPI(api_key=collector.api_key, url=collector.url)


async def test_async_users_threads_steps(aapi: AsyncLiteralAPI) -> None:
    """Users, threads and steps through the async client."""
    ident = f"async-{uuid.uuid4().hex[:8]}"
    user = await aapi.create_user(ident)
    assert (await aapi.get_or_create_user(ident)).id == user.id
    assert (await aapi.get_user(identifier=ident)).id == user.id  # type: ignore[union-attr]
    assert (await aapi.update_user(user.id, metadata={"x": 1})).metadata == {"x": 1}
    users = await aapi.get_users(
        filters=[{"field": "identifier", "operator": "eq", "value": ident}]
    )
    assert users.total_count == 1
    thread = await aapi.create_thread(name="a", participant_id=user.id)
    assert (await aapi.upsert_thread(thread.id, tags=["t"])).tags == ["t"]
    assert (await aapi.update_thread(thread.id, name="b")).name == "b"
    step = await aapi.create_step(thread_id=thread.id, type="run", input={"i": 1})
    assert (await aapi.update_step(step.id, output={"o": 1})).input == {"i": 1}
    assert (await aapi.get_step(step.id)).output == {"o": 1}  # type: ignore[union-attr]
    flt = [{"field": "threadId", "operator": "eq", "value": thread.id}]
    assert (await aapi.get_steps(filters=flt)).total_count == 1
    sent = await aapi.send_steps([{"id": str(uuid.uuid4()), "threadId": thread.id, "type": "tool"}])
    assert sent["data"]["step0"]["ok"] is True
    full = await aapi.get_thread(thread.id)
    assert full is not None and len(full.steps) == 2
    flt = [{"field": "id", "operator": "eq", "value": thread.id}]
    assert (await aapi.get_threads(filters=flt)).data[0].name == "b"
    assert (await aapi.list_threads(filters=flt)).total_count == 1
    assert await aapi.delete_step(step.id) is True
    assert await aapi.delete_thread(thread.id) is True
    assert await aapi.delete_user(user.id) == user.id


async def test_async_scores_attachments_generations(aapi: AsyncLiteralAPI) -> None:
    """Scores (create_scores returns Score objects), attachments, uploads, generations."""
    step = await aapi.create_step(type="run")
    score = await aapi.create_score(name="s", value=1, type="HUMAN", step_id=step.id)
    assert (await aapi.update_score(score.id, {"value": 2})).value == 2
    many = await aapi.create_scores([{"name": "m", "type": "AI", "value": 0.1, "stepId": step.id}])
    assert isinstance(many[0], Score) and many[0].name == "m"
    scores = await aapi.get_scores(
        filters=[{"field": "stepId", "operator": "eq", "value": step.id}]
    )
    assert scores.total_count == 2
    assert await aapi.delete_score(score.id) == {"id": score.id}
    uploaded = await aapi.upload_file(b"async bytes", thread_id=None)
    assert uploaded["object_key"]
    att = await aapi.create_attachment(step_id=step.id, content=b"abc", name="a.bin")
    fetched = await aapi.get_attachment(att.id)
    assert fetched is not None
    async with httpx.AsyncClient() as client:
        assert (await client.get(fetched.url)).content == b"abc"  # type: ignore[arg-type]
    assert (await aapi.update_attachment(att.id, {"mime": "x/y"})).mime == "x/y"
    assert await aapi.delete_attachment(att.id) == {"id": att.id}
    gen = await aapi.create_generation(ChatGeneration(messages=[{"role": "user", "content": "q"}]))
    page = await aapi.get_generations(filters=[{"field": "id", "operator": "eq", "value": gen.id}])
    assert page.data[0].id == gen.id


async def test_async_datasets_prompts(quiet_deprecations: None, aapi: AsyncLiteralAPI) -> None:
    """Datasets, items, experiments (and items), prompts, variants, rollouts, project id."""
    name = f"ads-{uuid.uuid4().hex[:8]}"
    dataset = await aapi.create_dataset(name)
    assert (await aapi.update_dataset(dataset.id, description="x")).description == "x"
    item = await aapi.create_dataset_item(dataset.id, {"q": 1}, {"a": 1})
    assert (await aapi.get_dataset_item(item.id)).id == item.id
    step = await aapi.create_step(type="run", input={"i": 1})
    assert (await aapi.add_step_to_dataset(dataset.id, step.id)).input == {"i": 1}
    gen = await aapi.create_generation(ChatGeneration(messages=[{"role": "user", "content": "q"}]))
    assert (await aapi.add_generation_to_dataset(dataset.id, gen.id)).dataset_id == dataset.id
    assert len((await aapi.get_dataset(name=name)).items) == 3  # type: ignore[union-attr]
    experiment = await aapi.create_experiment("e", dataset_id=dataset.id)
    exp_item = await aapi.create_experiment_item(
        DatasetExperimentItem(
            id="",
            dataset_experiment_id=experiment.id,
            dataset_item_id=item.id,
            scores=[],
            input={},
            output={},
            experiment_run_id=None,
        )
    )
    assert exp_item.id and exp_item.scores == []
    assert (await aapi.delete_dataset_item(item.id)).id == item.id
    assert (await aapi.delete_dataset(dataset.id)).id == dataset.id
    pname = f"aprompt-{uuid.uuid4().hex[:8]}"
    lineage = await aapi.get_or_create_prompt_lineage(pname)
    assert (await aapi.create_prompt_lineage(pname))["id"] == lineage["id"]
    v0 = await aapi.get_or_create_prompt(pname, [{"role": "user", "content": "x"}])
    v1 = await aapi.create_prompt(pname, [{"role": "user", "content": "y"}])
    assert (v0.version, v1.version) == (0, 1)
    assert (await aapi.get_prompt(name=pname, version=0)).id == v0.id
    assert (await aapi.get_prompt(id=v1.id)).version == 1
    assert await aapi.create_prompt_variant(pname, [{"role": "user", "content": "z"}])
    await aapi.update_prompt_ab_testing(pname, [{"version": 1, "rollout": 100}])
    assert await aapi.get_prompt_ab_testing(pname) == [{"version": 1, "rollout": 100}]
    assert await aapi.get_my_project_id()
    raw = await aapi.make_gql_call("get step", 'query { step(id: "x") { id } }', {})
    assert raw == {"data": {"step": None}}
    helped = await aapi.gql_helper('query { step(id: "x") { id } }', "d", {}, lambda r: r["data"])
    assert helped == {"step": None}
    assert "projectId" in await aapi.make_rest_call("/my-project", {})
