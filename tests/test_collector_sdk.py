"""The published reference SDK (sync ``LiteralAPI``) against the collector, method by method."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from literalai.api import LiteralAPI
from literalai.evaluation.dataset_experiment import DatasetExperimentItem
from literalai.observability.generation import ChatGeneration, CompletionGeneration
from literalai.observability.step import Step

from agent.testing import CollectorThread


@pytest.fixture
def api(collector: CollectorThread) -> LiteralAPI:
    """A sync SDK client bound to the session collector."""
    return LiteralAPI(api_key=collector.api_key, url=collector.url)


@pytest.fixture
def quiet_deprecations() -> Iterator[None]:
    """Silence the DeprecationWarning of SDK aliases that a test calls on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_users(api: LiteralAPI) -> None:
    """create/get/update/delete/get_or_create/get_users."""
    name = _uid("user")
    user = api.create_user(name, {"a": 1})
    assert user.identifier == name and user.metadata == {"a": 1}
    assert api.get_user(id=user.id).identifier == name  # type: ignore[union-attr]
    assert api.get_user(identifier="nobody-" + name) is None
    assert api.get_user(id="missing-id") is None
    updated = api.update_user(user.id, metadata={"a": 2})
    assert updated.identifier == name and updated.metadata == {"a": 2}
    same = api.get_or_create_user(name, {"ignored": True})
    assert same.id == user.id and same.metadata == {"a": 2}
    other = api.get_or_create_user(_uid("user"))
    assert other.metadata == {}
    page = api.get_users(first=1, filters=[{"field": "id", "operator": "eq", "value": user.id}])
    assert page.total_count == 1 and page.data[0].id == user.id
    assert api.delete_user(user.id) == user.id
    assert api.get_user(id=user.id) is None


def test_threads(api: LiteralAPI) -> None:
    """create/upsert/update/get/list/get_threads/delete, absent fields kept."""
    user = api.create_user(_uid("tu"))
    thread = api.create_thread(name="t", metadata={"k": "v"}, participant_id=user.id, tags=["x"])
    assert thread.name == "t" and thread.participant_id == user.id and thread.tags == ["x"]
    upserted = api.upsert_thread(thread.id, tags=["y"])
    assert upserted.name == "t" and upserted.tags == ["y"] and upserted.metadata == {"k": "v"}
    new_id = str(uuid.uuid4())
    created = api.upsert_thread(new_id, name="by-upsert")
    assert created.id == new_id and created.name == "by-upsert"
    updated = api.update_thread(thread.id, name="renamed")
    assert updated.name == "renamed" and updated.participant_identifier == user.identifier
    api.create_step(thread_id=thread.id, type="run", name="s1")
    api.create_step(thread_id=thread.id, type="tool", name="s2")
    full = api.get_thread(thread.id)
    assert full is not None and sorted(s.name for s in full.steps) == ["s1", "s2"]
    flt = [{"field": "id", "operator": "in", "value": [thread.id, new_id]}]
    listed = api.list_threads(first=10, filters=flt)
    assert listed.total_count == 2 and [t.id for t in listed.data] == [new_id, thread.id]
    kept = api.get_threads(
        filters=[{"field": "id", "operator": "eq", "value": thread.id}], step_types_to_keep=["tool"]
    )
    assert [s.name for s in kept.data[0].steps] == ["s2"]
    assert api.delete_thread(thread.id) is True
    assert api.get_thread(thread.id) is None


def test_steps(api: LiteralAPI) -> None:
    """create/update/get/get_steps/delete; update keeps what it does not mention."""
    thread = api.create_thread()
    step = api.create_step(
        thread_id=thread.id, type="llm", input={"q": 1}, metadata={"m": 1}, name="s", tags=["t"]
    )
    assert step.id and step.start_time and step.type == "llm"
    updated = api.update_step(step.id, output={"a": 2}, end_time="2030-01-01T00:00:00Z")
    assert updated.input == {"q": 1} and updated.output == {"a": 2} and updated.name == "s"
    assert updated.end_time == "2030-01-01T00:00:00.000000Z"  # one stored form
    got = api.get_step(step.id)
    assert got is not None and got.metadata == {"m": 1} and got.tags == ["t"]
    page = api.get_steps(
        first=5, filters=[{"field": "threadId", "operator": "eq", "value": thread.id}]
    )
    assert page.total_count == 1 and page.data[0].id == step.id
    assert api.delete_step(step.id) is True
    assert api.get_step(step.id) is None
    assert api.delete_step(step.id) is False


def test_send_steps_objects_with_generation_scores_attachments(api: LiteralAPI) -> None:
    """send_steps with Step objects: generation, scores and attachments come back on the step."""
    thread_id = str(uuid.uuid4())
    step = Step(name="llm", type="llm", thread_id=thread_id)
    step.input = {"content": "hi"}
    step.output = {"content": "hello"}
    step.generation = ChatGeneration(
        provider="openai",
        model="gpt-x",
        messages=[{"role": "user", "content": "hi"}],
        message_completion={"role": "assistant", "content": "hello"},
        token_count=12,
    )
    step.end_time = "2030-01-01T00:00:01Z"
    step.scores = []
    response = api.send_steps([step])
    assert response == {"data": {"step0": {"ok": True, "message": None}}}
    got = api.get_step(step.id)
    assert got is not None and got.thread_id == thread_id
    assert got.generation is not None and got.generation.model == "gpt-x"
    assert got.generation.token_count == 12
    assert api.get_thread(thread_id) is not None  # created implicitly
    score_id = str(uuid.uuid4())
    api.send_steps(
        [
            {
                "id": step.id,
                "scores": [
                    {
                        "id": score_id,
                        "name": "q",
                        "type": "HUMAN",
                        "value": 1.0,
                        "stepId": step.id,
                        "datasetExperimentItemId": None,
                        "comment": "good",
                        "tags": None,
                    }
                ],
                "attachments": [
                    {
                        "id": "att-" + step.id,
                        "name": "f.txt",
                        "mime": "text/plain",
                        "url": "https://example.invalid/f.txt",
                        "metadata": {},
                        "objectKey": None,
                    }
                ],
            }
        ]
    )
    again = api.get_step(step.id)
    assert again is not None
    assert [s.id for s in again.scores] == [score_id]
    assert again.attachments[0].thread_id == thread_id
    assert again.output == {"content": "hello"}  # upsert kept the fields not re-sent


def test_scores(api: LiteralAPI) -> None:
    """create_score/create_scores/update/delete/get_scores."""
    step = api.create_step(type="run", name="scored")
    score = api.create_score(
        name="acc", value=0.5, type="AI", step_id=step.id, comment="c", tags=["x"]
    )
    assert score.value == 0.5 and score.step_id == step.id and score.tags == ["x"]
    updated = api.update_score(score.id, {"value": 0.9})
    assert updated.value == 0.9 and updated.comment == "c"
    created = api.create_scores(
        [
            {
                "name": "s1",
                "type": "HUMAN",
                "value": 1,
                "stepId": step.id,
                "comment": None,
                "tags": None,
            },
            {"name": "s2", "type": "CODE", "value": 0, "stepId": step.id, "label": "L"},
        ]
    )
    assert [c["name"] for c in created] == ["s1", "s2"] and created[1]["label"] == "L"
    page = api.get_scores(
        filters=[{"field": "stepId", "operator": "eq", "value": step.id}],
        order_by={"column": "createdAt", "direction": "ASC"},
    )
    assert [s.name for s in page.data] == ["acc", "s1", "s2"]
    assert api.delete_score(score.id) == {"id": score.id}
    assert (
        api.get_scores(filters=[{"field": "id", "operator": "eq", "value": score.id}]).total_count
        == 0
    )


def test_attachments_upload_and_read_back(api: LiteralAPI, collector: CollectorThread) -> None:
    """create_attachment(content=...) uploads, the url serves the bytes; update/get/delete."""
    thread = api.create_thread()
    step = api.create_step(thread_id=thread.id, type="tool")
    att = api.create_attachment(
        step_id=step.id,
        thread_id=thread.id,
        content=b"hello bytes",
        name="hello.txt",
        mime="text/plain",
        metadata={"k": 1},
    )
    assert att.object_key and att.thread_id == thread.id and att.step_id == step.id
    fetched = api.get_attachment(att.id)
    assert fetched is not None and fetched.url
    body = httpx.get(fetched.url)
    assert body.status_code == 200 and body.content == b"hello bytes"
    assert body.headers["content-type"].startswith("text/plain")
    on_disk = [f for f in (collector.data_dir / "uploads").rglob("*") if f.is_file()]
    if collector.database_url:  # PostgreSQL: the bytes are in the database, for every replica
        assert on_disk == []
    else:  # SQLite: under the data directory's upload folder
        assert b"hello bytes" in [f.read_bytes() for f in on_disk]
    renamed = api.update_attachment(att.id, {"name": "renamed.txt"})
    assert renamed.name == "renamed.txt" and renamed.metadata == {"k": 1}
    assert api.delete_attachment(att.id) == {"id": att.id}
    assert api.get_attachment(att.id) is None
    by_url = api.create_attachment(
        step_id=step.id, url="https://example.invalid/x.png", name="x.png"
    )
    assert by_url.url == "https://example.invalid/x.png"


def test_upload_file_and_signed_url(api: LiteralAPI) -> None:
    """upload_file returns an object key and a URL that needs no API key (but its token)."""
    result = api.upload_file(b"\x00\x01raw", thread_id=None, mime="application/octet-stream")
    assert result["object_key"] and result["url"]
    assert httpx.get(result["url"]).content == b"\x00\x01raw"
    tampered = result["url"].split("?")[0] + "?token=bad"
    assert httpx.get(tampered).status_code == 401


def test_attachment_from_path(api: LiteralAPI, tmp_path: Path) -> None:
    """create_attachment(path=...) guesses name and mime."""
    file = tmp_path / "doc.json"
    file.write_text('{"a": 1}')
    step = api.create_step(type="run")
    att = api.create_attachment(step_id=step.id, path=str(file))
    assert att.name == "doc.json" and att.mime == "application/json"
    assert httpx.get(api.get_attachment(att.id).url).json() == {"a": 1}  # type: ignore[union-attr]


def test_generations(api: LiteralAPI) -> None:
    """create_generation (chat and completion) and get_generations newest first."""
    chat = api.create_generation(
        ChatGeneration(
            model="m-chat",
            messages=[{"role": "user", "content": "q"}],
            message_completion={"role": "assistant", "content": "a"},
        )
    )
    completion = api.create_generation(
        CompletionGeneration(model="m-comp", prompt="p", completion="c")
    )
    assert isinstance(chat, ChatGeneration) and isinstance(completion, CompletionGeneration)
    flt = [{"field": "id", "operator": "in", "value": [chat.id, completion.id]}]
    page = api.get_generations(filters=flt)
    assert [g.id for g in page.data] == [completion.id, chat.id]
    assert (
        isinstance(page.data[1], ChatGeneration)
        and page.data[1].message_completion["content"] == "a"
    )
    ordered = api.get_generations(filters=flt, order_by={"column": "model", "direction": "ASC"})
    assert [g.model for g in ordered.data] == ["m-chat", "m-comp"]


def test_datasets_items_experiments(api: LiteralAPI) -> None:
    """Datasets, items, add step/generation, experiments and experiment items with scores."""
    name = _uid("ds")
    dataset = api.create_dataset(name, description="d", metadata={"m": 1})
    assert dataset.type == "key_value" and dataset.items == []
    dataset.update(description="d2")
    assert api.update_dataset(dataset.id, name=name).description == "d2"
    item = dataset.create_item({"q": 1}, {"a": 2}, {"meta": True})
    assert api.get_dataset_item(item.id).input == {"q": 1}
    parent = api.create_step(type="run", input={"in": 1})
    api.send_steps(
        [{"id": "child-" + parent.id, "parentId": parent.id, "type": "tool", "name": "c"}]
    )
    api.update_step(parent.id, output={"out": 2})
    step_item = dataset.add_step(parent.id)
    assert step_item.input == {"in": 1} and step_item.expected_output == {"out": 2}
    assert [s["id"] for s in step_item.intermediary_steps] == ["child-" + parent.id]
    gen = api.create_generation(
        ChatGeneration(
            messages=[{"role": "user", "content": "q"}],
            message_completion={"role": "assistant", "content": "a"},
        )
    )
    gen_item = api.add_generation_to_dataset(dataset.id, gen.id, {"x": 1})
    assert gen_item.input == {"messages": [{"role": "user", "content": "q"}]}
    assert gen_item.expected_output == {"role": "assistant", "content": "a"}
    direct = api.create_dataset_item(dataset.id, {"direct": True})
    assert direct.dataset_id == dataset.id and direct.expected_output is None
    assert api.add_step_to_dataset(dataset.id, parent.id, {"again": 1}).metadata == {"again": 1}
    exported = api.get_dataset(id=dataset.id)
    assert exported is not None and len(exported.items) == 5
    assert api.get_dataset(name=name).id == dataset.id  # type: ignore[union-attr]
    experiment = dataset.create_experiment("exp", params={"temp": 0})
    assert experiment.dataset_id == dataset.id and experiment.params == {"temp": 0}
    bare = api.create_experiment("bare")
    assert bare.params is None and bare.prompt_variant_id is None
    with_scores = api.create_experiment_item(
        DatasetExperimentItem(
            id="",
            dataset_experiment_id=experiment.id,
            dataset_item_id=item.id,
            scores=[{"name": "acc", "type": "CODE", "value": 1.0}],
            input={"i": 1},
            output={"o": 1},
            experiment_run_id=str(uuid.uuid4()),
        )
    )
    assert with_scores.id and with_scores.scores[0]["name"] == "acc"
    scores = api.get_scores(
        filters=[{"field": "datasetExperimentItemId", "operator": "eq", "value": with_scores.id}]
    )
    assert scores.total_count == 1
    no_scores = experiment.log({"datasetItemId": item.id, "input": {}, "output": {}})
    assert no_scores.scores == []
    assert api.delete_dataset_item(item.id).id == item.id
    assert api.delete_dataset(dataset.id).id == dataset.id
    assert api.get_dataset(id=dataset.id) is None
    assert api.get_dataset(name="missing-" + name) is None


def test_prompts(quiet_deprecations: None, api: LiteralAPI, collector: CollectorThread) -> None:
    """Lineages, versions (de-dup), get_prompt by id/name/version, variants, A/B rollouts."""
    name = _uid("prompt")
    lineage = api.get_or_create_prompt_lineage(name, "desc")
    assert api.create_prompt_lineage(name)["id"] == lineage["id"]
    messages = [{"role": "system", "content": "Hello {{name}}"}]
    settings = {"provider": "openai", "model": "gpt-4o", "temperature": 0}
    v0 = api.get_or_create_prompt(name, messages, settings)
    assert v0.version == 0 and v0.name == name
    fetched = api.get_prompt(name=name)
    assert fetched.provider == "openai" and fetched.settings == {
        "model": "gpt-4o",
        "temperature": 0,
    }
    # re-sending what a fetched prompt holds (provider popped) is the same version
    assert (
        api.get_or_create_prompt(name, fetched.template_messages, fetched.settings, []).id == v0.id
    )
    v1 = api.create_prompt(name, [{"role": "system", "content": "Bye"}], settings)
    assert v1.version == 1
    assert api.get_prompt(id=v0.id).version == 0
    assert api.get_prompt(name=name, version=0).id == v0.id
    latest = api.get_prompt(name=name)
    assert latest.id == v1.id
    project = api.get_my_project_id()
    assert latest.url == f"{collector.url}/projects/{project}/playground?name={name}&version=1"
    assert latest.format_messages(name="x")[0]["content"] == "Bye"
    variant = api.create_prompt_variant(name, messages, settings)
    assert variant
    assert (
        api.create_experiment("with-variant", prompt_variant_id=variant).prompt_variant_id
        == variant
    )
    assert api.get_prompt_ab_testing(name) == []
    api.update_prompt_ab_testing(
        name, [{"version": 0, "rollout": 100}, {"version": 1, "rollout": 0}]
    )
    assert api.get_prompt_ab_testing(name) == [
        {"version": 0, "rollout": 100},
        {"version": 1, "rollout": 0},
    ]
    assert {api.get_prompt(name=name).version for _ in range(5)} == {0}
    with pytest.raises(Exception, match="sum to 100"):
        api.update_prompt_ab_testing(name, [{"version": 0, "rollout": 50}])
    with pytest.raises(Exception, match="Unknown prompt versions"):
        api.update_prompt_ab_testing(name, [{"version": 7, "rollout": 100}])
    with pytest.raises(AttributeError):  # the SDK cannot handle a null promptVersion
        api.get_prompt(name="missing-" + name)


def test_my_project_and_raw_calls(api: LiteralAPI) -> None:
    """get_my_project_id is stable; make_gql_call/gql_helper/make_rest_call work directly."""
    project = api.get_my_project_id()
    assert project == api.get_my_project_id()
    assert api.make_rest_call("/my-project", {}) == {"projectId": project}
    raw = api.make_gql_call(
        "get step", "query Q($id: String!) { step(id: $id) { id } }", {"id": "nope"}
    )
    assert raw == {"data": {"step": None}}
    result = api.gql_helper(
        'query Q { step(id: "nope") { id } }', "get step", {}, lambda r: r["data"]
    )
    assert result == {"step": None}
