"""Every public method of LiteralAPI and AsyncLiteralAPI against the real collector on loopback.

Each test body runs twice, once per twin: ``Twin`` awaits what the async client returns and
passes the sync client's results through, so both share one scenario.
"""

from __future__ import annotations

import inspect
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent._api import AsyncLiteralAPI, LiteralAPI
from agent._models import (
    ChatGeneration,
    CompletionGeneration,
    Dataset,
    DatasetExperimentItem,
    Prompt,
    Score,
    Step,
    StepType,
)
from agent._operations import PROMPT_CACHE
from agent.testing import CollectorThread

pytestmark = pytest.mark.anyio


async def resolve(value: Any) -> Any:
    """Await ``value`` if the async twin produced it."""
    return await value if inspect.isawaitable(value) else value


class Twin:
    """Call either client the same way: ``await twin.get_user(...)``."""

    def __init__(self, api: LiteralAPI | AsyncLiteralAPI) -> None:
        self.api = api

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.api, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await resolve(method(*args, **kwargs))

        return call


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, collector: CollectorThread) -> AsyncIterator[Twin]:
    """Both twins, bound to the session collector."""
    if request.param == "sync":
        with LiteralAPI(collector.api_key, collector.url) as sync_api:
            yield Twin(sync_api)
    else:
        async with AsyncLiteralAPI(collector.api_key, collector.url) as async_api:
            yield Twin(async_api)


@pytest.fixture
def unused_url() -> str:
    """The URL of a loopback port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_users(api: Twin) -> None:
    """create/get/update/get_or_create/get_users/delete."""
    name = uid("user")
    user = await api.create_user(name, {"plan": "free"})
    assert user.identifier == name and user.metadata == {"plan": "free"} and user.id
    assert (await api.get_user(id=user.id)).identifier == name
    assert (await api.get_user(identifier=name)).id == user.id
    assert await api.get_user(identifier=uid("nobody")) is None
    updated = await api.update_user(user.id, metadata={"plan": "pro"})
    assert updated.identifier == name and updated.metadata == {"plan": "pro"}
    same = await api.get_or_create_user(name, {"ignored": True})
    assert same.id == user.id and same.metadata == {"plan": "pro"}
    fresh = await api.get_or_create_user(uid("user"), {"new": 1})
    assert fresh.id != user.id and fresh.metadata == {"new": 1}
    page = await api.get_users(first=1)
    assert len(page.data) == 1 and page.total_count >= 2 and page.page_info.has_next_page
    page2 = await api.get_users(first=1, after=page.page_info.end_cursor)
    assert page2.data[0].id != page.data[0].id
    filtered = await api.get_users(
        filters=[{"field": "identifier", "operator": "eq", "value": name}]
    )
    assert [u.id for u in filtered.data] == [user.id]
    assert await api.delete_user(user.id) == user.id
    assert await api.get_user(id=user.id) is None


async def test_threads(api: Twin) -> None:
    """create/upsert/update/get/get_threads/list_threads/delete."""
    user = await api.create_user(uid("owner"))
    thread = await api.create_thread(
        name="first", metadata={"k": 1}, participant_id=user.id, tags=["a"]
    )
    assert thread.id and thread.name == "first" and thread.metadata == {"k": 1}
    assert thread.participant_id == user.id and thread.participant_identifier == user.identifier
    assert thread.tags == ["a"]
    tid = uid("thread")
    created = await api.upsert_thread(tid, name="upserted", tags=["x"])
    assert created.id == tid and created.name == "upserted"
    kept = await api.upsert_thread(tid, metadata={"m": 2})
    assert kept.name == "upserted" and kept.metadata == {"m": 2} and kept.tags == ["x"]
    renamed = await api.update_thread(tid, name="renamed", tags=["y", "z"])
    assert renamed.name == "renamed" and renamed.tags == ["y", "z"]
    await api.send_steps([Step(thread_id=tid, type=StepType.RUN, name="root", input={"q": 1})])
    full = await api.get_thread(tid)
    assert full is not None and [s.name for s in full.steps] == ["root"]
    assert full.steps[0].thread_id == tid and full.steps[0].input == {"q": 1}
    page = await api.get_threads(
        first=5,
        filters=[{"field": "id", "operator": "eq", "value": tid}],
        step_types_to_keep=[StepType.LLM],
    )
    assert [t.id for t in page.data] == [tid] and page.data[0].steps == []
    listed = await api.list_threads(first=2, order_by={"column": "createdAt", "direction": "DESC"})
    assert len(listed.data) == 2 and listed.total_count >= 2
    assert await api.delete_thread(tid) is True
    assert await api.get_thread(tid) is None


async def test_steps(api: Twin) -> None:
    """create_step/update_step/get_step/get_steps/delete_step/send_steps."""
    thread = await api.create_thread(name="steps")
    step = await api.create_step(
        thread_id=thread.id,
        type="tool",
        input={"in": 1},
        metadata={"m": 1},
        name="tool-a",
        tags=["t"],
        root_run_id="ignored-by-design",
    )
    assert step.id and step.type == StepType.TOOL and step.thread_id == thread.id
    assert step.input == {"in": 1} and step.name == "tool-a"
    updated = await api.update_step(step.id, output={"out": 2}, end_time="2024-05-01T12:00:00Z")
    assert updated.output == {"out": 2} and updated.input == {"in": 1}
    fetched = await api.get_step(step.id)
    assert fetched is not None and fetched.output == {"out": 2} and fetched.end_time

    run = Step(thread_id=thread.id, type=StepType.RUN, name="run", input={"content": "hi"})
    llm = Step(
        thread_id=thread.id,
        parent_id=run.id,
        type=StepType.LLM,
        name="llm",
        generation=ChatGeneration(
            provider="openai",
            model="gpt-x",
            messages=[{"role": "user", "content": "hi"}],
            message_completion={"role": "assistant", "content": "hello"},
            token_count=3,
        ),
        scores=[Score(name="quality", type="HUMAN", value=0.5, comment="ok")],
    )
    as_dict = {"id": str(uuid.uuid4()), "threadId": thread.id, "type": "retrieval", "name": "d"}
    answer = await api.send_steps([run, llm, as_dict])
    assert answer == {
        "data": {
            f"step{i}": {"ok": True, "message": answer["data"][f"step{i}"]["message"]}
            for i in range(3)
        }
    }
    got = await api.get_step(llm.id)
    assert got is not None and got.parent_id == run.id
    assert isinstance(got.generation, ChatGeneration) and got.generation.model == "gpt-x"
    assert got.generation.message_completion == {"role": "assistant", "content": "hello"}
    assert [(s.name, s.value, s.comment) for s in got.scores] == [("quality", 0.5, "ok")]
    page = await api.get_steps(
        first=10, filters=[{"field": "threadId", "operator": "eq", "value": thread.id}]
    )
    assert {s.id for s in page.data} == {step.id, run.id, llm.id, as_dict["id"]}
    assert await api.delete_step(step.id) is True
    assert await api.get_step(step.id) is None


async def test_scores(api: Twin) -> None:
    """create_score/create_scores/update_score/get_scores/delete_score."""
    step = Step(type=StepType.LLM, name="scored")
    await api.send_steps([step])
    score = await api.create_score("accuracy", 0.9, "AI", step_id=step.id, comment="c", tags=["x"])
    assert isinstance(score, Score) and score.id and score.value == 0.9 and score.step_id == step.id
    many = await api.create_scores(
        [
            {"name": "a", "type": "CODE", "value": 1, "stepId": step.id, "label": "one"},
            {"name": "b", "type": "HUMAN", "value": 0, "stepId": step.id, "comment": None},
        ]
    )
    assert [(s.name, s.value, s.label) for s in many] == [("a", 1.0, "one"), ("b", 0.0, None)]
    assert many[0]["name"] == "a"  # dict-style access, as with the sync reference
    updated = await api.update_score(score.id, {"value": 0.1})
    assert updated.value == 0.1 and updated.comment == "c"
    page = await api.get_scores(
        first=10, filters=[{"field": "stepId", "operator": "eq", "value": step.id}]
    )
    assert {s.id for s in page.data} == {score.id, many[0].id, many[1].id}
    assert await api.delete_score(score.id) == {"id": score.id}


async def test_attachments(api: Twin, tmp_path: Path) -> None:
    """upload_file/create_attachment (content, path, url)/update/get/delete."""
    thread = await api.create_thread(name="files")
    step = Step(thread_id=thread.id, type=StepType.TOOL, name="with files")
    await api.send_steps([step])
    uploaded = await api.upload_file(b"raw bytes", thread_id=thread.id, mime="text/plain")
    assert uploaded["object_key"] and uploaded["url"]
    from_content = await api.create_attachment(
        thread_id=thread.id,
        step_id=step.id,
        content=b"hello",
        name="hello.txt",
        mime="text/plain",
        metadata={"m": 1},
    )
    assert from_content.id and from_content.step_id == step.id and from_content.object_key
    assert from_content.thread_id == thread.id and from_content.metadata == {"m": 1}
    path = tmp_path / "notes.json"
    path.write_text('{"a": 1}')
    from_path = await api.create_attachment(step_id=step.id, path=str(path))
    assert from_path.name == "notes.json" and from_path.mime == "application/json"
    from_url = await api.create_attachment(
        step_id=step.id, url="https://example.invalid/x.png", name="x.png"
    )
    assert from_url.url == "https://example.invalid/x.png"
    renamed = await api.update_attachment(from_url.id, {"name": "y.png"})
    assert renamed.name == "y.png" and renamed.url == "https://example.invalid/x.png"
    assert (await api.get_attachment(from_path.id)).name == "notes.json"
    assert await api.delete_attachment(from_path.id) == {"id": from_path.id}
    assert await api.get_attachment(from_path.id) is None
    with pytest.raises(ValueError, match="name"):
        await api.create_attachment(step_id=step.id, content=b"x")


async def test_generations(api: Twin) -> None:
    """create_generation (chat and completion) and get_generations."""
    chat = await api.create_generation(
        ChatGeneration(model="m1", messages=[{"role": "user", "content": "q"}], tags=["g"])
    )
    completion = await api.create_generation(CompletionGeneration(prompt="p", completion="c"))
    assert isinstance(chat, ChatGeneration) and chat.id
    assert isinstance(completion, CompletionGeneration) and completion.id
    page = await api.get_generations(first=2)
    assert [g.id for g in page.data] == [completion.id, chat.id]
    assert page.data[0].completion == "c" and page.data[1].messages == [
        {"role": "user", "content": "q"}
    ]


async def test_datasets_and_items(api: Twin) -> None:
    """create/get/update/delete dataset; create/get/delete/add_step/add_generation items."""
    name = uid("dataset")
    dataset = await api.create_dataset(name, "desc", {"m": 1})
    assert isinstance(dataset, Dataset) and dataset.name == name and dataset.type == "key_value"
    item = await api.create_dataset_item(dataset.id, {"q": "?"}, {"a": "!"}, {"i": 1})
    assert item.dataset_id == dataset.id and item.expected_output == {"a": "!"}
    assert (await api.get_dataset_item(item.id)).input == {"q": "?"}
    step = Step(type=StepType.RUN, name="src", input={"x": 1}, output={"y": 2})
    await api.send_steps([step])
    from_step = await api.add_step_to_dataset(dataset.id, step.id, {"from": "step"})
    assert from_step.input == {"x": 1} and from_step.expected_output == {"y": 2}
    generation = await api.create_generation(
        ChatGeneration(
            messages=[{"role": "user", "content": "u"}],
            message_completion={"role": "assistant", "content": "a"},
        )
    )
    from_gen = await api.add_generation_to_dataset(dataset.id, generation.id)
    assert from_gen.input == {"messages": [{"role": "user", "content": "u"}]}
    fetched = await api.get_dataset(id=dataset.id)
    assert {i.id for i in fetched.items} == {item.id, from_step.id, from_gen.id}
    assert (await api.get_dataset(name=name)).id == dataset.id
    assert await api.get_dataset(name=uid("missing")) is None
    renamed = await api.update_dataset(dataset.id, name=name + "-2")
    assert renamed.name == name + "-2" and renamed.description == "desc"
    deleted_item = await api.delete_dataset_item(item.id)
    assert deleted_item.id == item.id
    deleted = await api.delete_dataset(dataset.id)
    assert deleted.id == dataset.id
    assert await api.get_dataset(id=dataset.id) is None


async def test_dataset_helpers(api: Twin) -> None:
    """Dataset/DatasetExperiment helpers go through the API that returned them."""
    dataset = await api.create_dataset(uid("helpers"))
    assert dataset.api is api.api
    item = await resolve(dataset.create_item({"q": 1}, {"a": 2}))
    assert dataset.items == [item]
    await resolve(dataset.update(description="new"))
    assert dataset.description == "new"
    step = Step(type=StepType.RUN, input={"s": 1})
    await api.send_steps([step])
    added = await resolve(dataset.add_step(step.id))
    experiment = await resolve(dataset.create_experiment("exp", params={"p": 1}))
    assert experiment.dataset_id == dataset.id and experiment.api is api.api
    logged = await resolve(
        experiment.log(
            {
                "datasetItemId": item.id,
                "output": {"o": 1},
                "scores": [{"name": "s", "type": "CODE", "value": 1.0}],
            }
        )
    )
    assert experiment.items == [logged] and logged.scores[0]["datasetExperimentItemId"] == logged.id
    await resolve(dataset.delete_item(added.id))
    assert [i.id for i in dataset.items] == [item.id]
    await resolve(dataset.delete())
    assert await api.get_dataset(id=dataset.id) is None


async def test_experiments(api: Twin) -> None:
    """create_experiment and create_experiment_item (with and without scores)."""
    dataset = await api.create_dataset(uid("exp"))
    item = await api.create_dataset_item(dataset.id, {"q": 1})
    variant = await api.create_prompt_variant(uid("lineage"), [{"role": "user", "content": "x"}])
    experiment = await api.create_experiment("run", dataset.id, variant, {"temperature": 0})
    assert experiment.id and experiment.prompt_variant_id == variant
    assert experiment.params == {"temperature": 0} and experiment.dataset_id == dataset.id
    bare = await api.create_experiment("bare")
    assert bare.params is None and bare.dataset_id is None
    run_id = str(uuid.uuid4())
    created = await api.create_experiment_item(
        DatasetExperimentItem(
            dataset_experiment_id=experiment.id,
            dataset_item_id=item.id,
            experiment_run_id=run_id,
            input={"q": 1},
            output={"a": 2},
            scores=[{"name": "exact", "type": "CODE", "value": 1}],
        )
    )
    assert created.id and created.experiment_run_id == run_id and created.output == {"a": 2}
    assert [(s["name"], s["value"]) for s in created.scores] == [("exact", 1.0)]
    scores = await api.get_scores(
        filters=[{"field": "datasetExperimentItemId", "operator": "eq", "value": created.id}]
    )
    assert [s.name for s in scores.data] == ["exact"]
    empty = await api.create_experiment_item(
        DatasetExperimentItem(dataset_experiment_id=experiment.id, input={}, output={})
    )
    assert empty.id and empty.scores == []


async def test_prompts(api: Twin) -> None:
    """Lineages, get_or_create_prompt/create_prompt, get_prompt (+ cache), A/B testing."""
    name = uid("prompt")
    lineage = await api.get_or_create_prompt_lineage(name, "d")
    assert lineage["name"] == name and lineage["id"]
    with pytest.warns(DeprecationWarning, match="get_or_create_prompt_lineage"):
        assert (await api.create_prompt_lineage(name))["id"] == lineage["id"]
    messages = [
        {"role": "system", "content": "You are {{persona}}.", "uuid": "m1"},
        {"role": "user", "content": [{"type": "text", "text": "Say {{word}} & go"}]},
    ]
    settings = {"provider": "openai", "model": "gpt-4o", "temperature": 0}
    v0 = await api.get_or_create_prompt(name, messages, settings)
    assert isinstance(v0, Prompt) and v0.version == 0 and v0.name == name
    assert v0.provider == "openai" and v0.settings == {"model": "gpt-4o", "temperature": 0}
    again = await api.get_or_create_prompt(name, messages, v0.settings)
    assert again.id == v0.id
    with pytest.warns(DeprecationWarning, match="get_or_create_prompt"):
        v1 = await api.create_prompt(name, [{"role": "user", "content": "other"}], settings)
    assert v1.version == 1
    by_id = await api.get_prompt(id=v0.id)
    assert by_id.id == v0.id and by_id.url.endswith(f"name={name}&version=0")
    assert (await api.get_prompt(name=name, version=0)).id == v0.id
    assert (await api.get_prompt(name=name)).id == v1.id
    formatted = by_id.format_messages(persona="a <pirate>", word="ahoy")
    assert formatted[0] == {"role": "system", "content": "You are a <pirate>."}
    assert formatted[0].__literal_prompt__["uuid"] == "m1"
    assert formatted[1]["content"] == [{"type": "text", "text": "Say ahoy & go"}]
    rollout = [{"version": 0, "rollout": 30}, {"version": 1, "rollout": 70}]
    assert (await api.update_prompt_ab_testing(name, rollout))["ok"] is True
    assert sorted(await api.get_prompt_ab_testing(name), key=lambda r: r["version"]) == rollout
    variant = await api.create_prompt_variant(name, messages, settings)
    assert isinstance(variant, str) and variant


async def test_prompt_cache_fallback(api: Twin, unused_url: str) -> None:
    """get_prompt returns the cached version when the server cannot be reached."""
    name = uid("cached")
    prompt = await api.get_or_create_prompt(name, [{"role": "user", "content": "hi"}])
    await api.get_prompt(name=name)  # fills the process-wide cache
    offline_cls = type(api.api)
    offline = Twin(offline_cls(api_key="k", url=unused_url, timeout=0.5))
    cached = await offline.get_prompt(name=name)
    assert cached.id == prompt.id
    PROMPT_CACHE.clear()
    with pytest.raises(Exception, match="Failed to get prompt"):
        await offline.get_prompt(name=name)


async def test_misc_and_plumbing(api: Twin, collector: CollectorThread) -> None:
    """get_my_project_id, make_gql_call, make_rest_call, gql_helper."""
    project = await api.get_my_project_id()
    assert isinstance(project, str) and project
    assert (await api.make_rest_call("/my-project", {}))["projectId"] == project
    user = await api.create_user(uid("plumbing"))
    query = "query GetUser($id: String) { participant(id: $id) { identifier } }"
    raw = await api.make_gql_call("get user", query, {"id": user.id})
    assert raw == {"data": {"participant": {"identifier": user.identifier}}}
    identifier = await api.gql_helper(
        query, "get user", {"id": user.id}, lambda r: r["data"]["participant"]["identifier"]
    )
    assert identifier == user.identifier


async def test_attachment_ids_from_the_active_context(api: Twin) -> None:
    """Without step_id/thread_id, create_attachment uses the open step and active thread."""
    from agent._context import pop_step, push_step, set_thread
    from agent._models import Thread

    thread = await api.create_thread(name="ctx")
    step = Step(thread_id=thread.id, type=StepType.TOOL, name="open")
    await api.send_steps([step])
    previous = set_thread(Thread(id=thread.id))
    push_step(step)
    try:
        attachment = await api.create_attachment(content=b"ctx", name="ctx.bin")
    finally:
        pop_step(step)
        set_thread(previous)
    assert attachment.step_id == step.id and attachment.thread_id == thread.id
