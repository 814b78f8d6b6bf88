"""Interchangeability with the reference SDK (literalai 0.1.300) through the real collector.

What our client writes, the reference reads back identically, and the other way round:
users, threads, steps with generations, scores and attachments, datasets with items, and
prompts. Objects are compared through the attribute names both SDKs share.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from literalai.api import LiteralAPI as RefAPI
from literalai.observability.generation import ChatGeneration as RefChatGeneration
from literalai.observability.generation import CompletionGeneration as RefCompletionGeneration
from literalai.observability.step import Attachment as RefAttachment
from literalai.observability.step import Score as RefScore
from literalai.observability.step import Step as RefStep

from agent._api import LiteralAPI
from agent._models import (
    Attachment,
    ChatGeneration,
    CompletionGeneration,
    Score,
    Step,
    StepType,
)
from agent.testing import CollectorThread

STEP_FIELDS = (
    "id",
    "name",
    "type",
    "thread_id",
    "parent_id",
    "start_time",
    "end_time",
    "created_at",
    "error",
    "input",
    "output",
    "metadata",
    "tags",
    "environment",
)
GENERATION_FIELDS = (
    "type",
    "prompt_id",
    "provider",
    "model",
    "error",
    "settings",
    "variables",
    "tags",
    "tools",
    "token_count",
    "input_token_count",
    "output_token_count",
    "tt_first_token",
    "token_throughput_in_s",
    "duration",
)
CHAT_FIELDS = ("messages", "message_completion")
COMPLETION_FIELDS = ("prompt", "completion")
SCORE_FIELDS = ("id", "name", "type", "value", "comment")
ATTACHMENT_FIELDS = ("id", "thread_id", "step_id", "metadata", "mime", "name", "object_key", "url")
THREAD_FIELDS = (
    "id",
    "name",
    "metadata",
    "tags",
    "created_at",
    "participant_id",
    "participant_identifier",
)
ITEM_FIELDS = (
    "id",
    "created_at",
    "dataset_id",
    "metadata",
    "input",
    "expected_output",
    "intermediary_steps",
)
PROMPT_FIELDS = (
    "id",
    "name",
    "version",
    "url",
    "created_at",
    "updated_at",
    "type",
    "template_messages",
    "tools",
    "provider",
    "settings",
    "variables",
    "variables_default_values",
)


def plain(value: Any) -> Any:
    """Enums to their values, containers recursively, so both SDKs' objects compare."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def view(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: plain(getattr(obj, name)) for name in fields}


def step_view(step: Any) -> dict[str, Any]:
    out = view(step, STEP_FIELDS)
    generation = step.generation
    if generation is not None:
        extra = CHAT_FIELDS if plain(generation.type) == "CHAT" else COMPLETION_FIELDS
        out["generation"] = view(generation, GENERATION_FIELDS + extra)
    out["scores"] = sorted(
        (view(s, SCORE_FIELDS) for s in step.scores or []), key=lambda s: s["id"]
    )
    out["attachments"] = sorted(
        (view(a, ATTACHMENT_FIELDS) for a in step.attachments or []), key=lambda a: a["id"]
    )
    return out


def thread_view(thread: Any) -> dict[str, Any]:
    out = view(thread, THREAD_FIELDS)
    out["steps"] = sorted((step_view(s) for s in thread.steps), key=lambda s: s["id"])
    return out


def dataset_view(dataset: Any) -> dict[str, Any]:
    out = view(dataset, ("id", "created_at", "name", "description", "metadata", "type"))
    out["items"] = sorted((view(i, ITEM_FIELDS) for i in dataset.items), key=lambda i: i["id"])
    return out


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ours(collector: CollectorThread) -> Iterator[LiteralAPI]:
    """Our sync client on the session collector."""
    with LiteralAPI(collector.api_key, collector.url) as api:
        yield api


@pytest.fixture
def ref(collector: CollectorThread) -> RefAPI:
    """The reference SDK's sync client on the same collector."""
    return RefAPI(api_key=collector.api_key, url=collector.url)


def test_users_both_ways(ours: LiteralAPI, ref: RefAPI) -> None:
    """A user written by one SDK reads the same in the other."""
    fields = ("id", "identifier", "metadata", "created_at")
    mine = ours.create_user(uid("ours"), {"plan": "pro", "n": [1, 2]})
    read_by_ref = ref.get_user(identifier=mine.identifier)
    assert view(read_by_ref, fields) == view(ours.get_user(id=mine.id), fields)
    theirs = ref.create_user(uid("ref"), {"plan": "free"})
    assert view(ours.get_user(identifier=theirs.identifier), fields) == view(
        ref.get_user(id=theirs.id), fields
    )
    assert ours.get_or_create_user(theirs.identifier).id == theirs.id
    assert ref.get_or_create_user(mine.identifier).id == mine.id


def test_threads_and_steps_written_by_us(ours: LiteralAPI, ref: RefAPI) -> None:
    """Thread + run/llm/tool steps (generation, scores, attachments) sent by us."""
    user = ours.create_user(uid("participant"))
    thread_id = str(uuid.uuid4())
    run = Step(
        thread_id=thread_id,
        type=StepType.RUN,
        name="agent",
        input={"content": "q"},
        start_time="2024-05-01T10:00:00Z",
        end_time="2024-05-01T10:00:02.5Z",
    )
    llm = Step(
        thread_id=thread_id,
        parent_id=run.id,
        type=StepType.LLM,
        name="gpt",
        input={"messages": [{"role": "user", "content": "q"}]},
        output={"content": "a"},
        tags=["t1"],
        metadata={"k": {"nested": True}},
        generation=ChatGeneration(
            provider="openai",
            model="gpt-4o",
            settings={"temperature": 0.1},
            messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            message_completion={"role": "assistant", "content": "a"},
            token_count=12,
            input_token_count=10,
            output_token_count=2,
            duration=0.8,
            tt_first_token=120.5,
            tools=[{"type": "function", "function": {"name": "f"}}],
            variables={"v": 1},
        ),
        scores=[Score(name="helpful", type="HUMAN", value=1.0, comment="great")],
        attachments=[Attachment(name="a.txt", mime="text/plain", url="https://x/a.txt")],
    )
    tool = Step(
        thread_id=thread_id,
        parent_id=run.id,
        type=StepType.LLM,
        name="legacy",
        generation=CompletionGeneration(prompt="p", completion="c", model="davinci"),
        error="boom",
    )
    ours.send_steps([tool, llm, run])
    ours.upsert_thread(
        thread_id, name="chat", metadata={"a": 1}, participant_id=user.id, tags=["x", "y"]
    )
    ours.create_score("accuracy", 0.25, "AI", step_id=run.id, comment="meh", tags=["s"])

    assert thread_view(ref.get_thread(thread_id)) == thread_view(ours.get_thread(thread_id))
    for step in (run, llm, tool):
        assert step_view(ref.get_step(step.id)) == step_view(ours.get_step(step.id))
    ref_page = ref.get_threads(filters=[{"field": "id", "operator": "eq", "value": thread_id}])
    our_page = ours.get_threads(filters=[{"field": "id", "operator": "eq", "value": thread_id}])
    assert [thread_view(t) for t in ref_page.data] == [thread_view(t) for t in our_page.data]
    assert ref_page.total_count == our_page.total_count == 1
    got = ours.get_thread(thread_id)
    assert got is not None and got.participant_identifier == user.identifier
    ref_scores = ref.get_scores(filters=[{"field": "stepId", "operator": "eq", "value": run.id}])
    our_scores = ours.get_scores(filters=[{"field": "stepId", "operator": "eq", "value": run.id}])
    assert [view(s, (*SCORE_FIELDS, "step_id", "tags")) for s in ref_scores.data] == [
        view(s, (*SCORE_FIELDS, "step_id", "tags")) for s in our_scores.data
    ]


def test_threads_and_steps_written_by_the_reference(ours: LiteralAPI, ref: RefAPI) -> None:
    """The same shapes sent by the reference SDK read identically through ours."""
    thread_id = str(uuid.uuid4())
    run = RefStep(name="agent", type="run", thread_id=thread_id)
    run.input = {"content": "q"}
    run.end_time = "2024-05-01T10:00:01Z"
    llm = RefStep(name="gpt", type="llm", thread_id=thread_id, parent_id=run.id, tags=["t"])
    llm.generation = RefChatGeneration(
        provider="anthropic",
        model="claude",
        messages=[{"role": "user", "content": "q"}],
        message_completion={"role": "assistant", "content": "a"},
        token_count=5,
    )
    llm.scores = [
        RefScore(
            name="ok",
            type="CODE",
            value=0.0,
            step_id=None,
            dataset_experiment_item_id=None,
            comment=None,
            tags=None,
        )
    ]
    llm.attachments = [RefAttachment(name="b.png", mime="image/png", url="https://x/b.png")]
    completion = RefStep(name="old", type="llm", thread_id=thread_id, parent_id=run.id)
    completion.generation = RefCompletionGeneration(prompt="p", completion="c")
    ref.send_steps([run, llm, completion])
    ref.upsert_thread(thread_id, name="from ref", tags=["r"], metadata={"m": [1]})
    assert thread_view(ours.get_thread(thread_id)) == thread_view(ref.get_thread(thread_id))
    for step_id in (run.id, llm.id, completion.id):
        assert step_view(ours.get_step(step_id)) == step_view(ref.get_step(step_id))
    listed_ref = ref.list_threads(filters=[{"field": "id", "operator": "eq", "value": thread_id}])
    listed = ours.list_threads(filters=[{"field": "id", "operator": "eq", "value": thread_id}])
    assert [view(t, THREAD_FIELDS) for t in listed.data] == [
        view(t, THREAD_FIELDS) for t in listed_ref.data
    ]


def test_generations_both_ways(ours: LiteralAPI, ref: RefAPI) -> None:
    """Stand-alone generations from either SDK list the same in both."""
    ours.create_generation(
        ChatGeneration(model="m-ours", messages=[{"role": "user", "content": "1"}])
    )
    ref.create_generation(
        RefChatGeneration(model="m-ref", messages=[{"role": "user", "content": "2"}])
    )
    fields = GENERATION_FIELDS + CHAT_FIELDS + ("id",)
    assert [view(g, fields) for g in ours.get_generations(first=2).data] == [
        view(g, fields) for g in ref.get_generations(first=2).data
    ]


def test_datasets_both_ways(ours: LiteralAPI, ref: RefAPI) -> None:
    """Datasets with items (plain, from a step, from a generation) read the same."""
    mine = ours.create_dataset(uid("ours"), "by us", {"m": 1})
    mine.create_item({"q": 1}, {"a": 2}, {"i": 1})
    step = Step(type=StepType.RUN, input={"x": 1}, output={"y": 2})
    ours.send_steps([step])
    mine.add_step(step.id)
    generation = ours.create_generation(
        ChatGeneration(
            messages=[{"role": "user", "content": "u"}],
            message_completion={"role": "assistant", "content": "a"},
        )
    )
    mine.add_generation(generation.id)
    assert dataset_view(ref.get_dataset(id=mine.id)) == dataset_view(ours.get_dataset(id=mine.id))
    assert dataset_view(ref.get_dataset(name=mine.name)) == dataset_view(mine)

    theirs = ref.create_dataset(uid("ref"), "by ref", {"m": 2}, "generation")
    theirs.create_item({"q": "r"}, None, {"meta": True})
    assert dataset_view(ours.get_dataset(id=theirs.id)) == dataset_view(
        ref.get_dataset(id=theirs.id)
    )
    item_id = theirs.items[0].id
    assert view(ours.get_dataset_item(item_id), ITEM_FIELDS) == view(
        ref.get_dataset_item(item_id), ITEM_FIELDS
    )


def test_prompts_both_ways(ours: LiteralAPI, ref: RefAPI) -> None:
    """Prompt versions from either SDK read (and format) the same; get-or-create agrees."""
    messages = [{"role": "system", "content": "Be {{tone}}."}, {"role": "user", "content": "{{q}}"}]
    settings = {"provider": "openai", "model": "gpt-4o", "max_tokens": 10}
    mine = ours.get_or_create_prompt(uid("ours"), messages, dict(settings))
    from_ref = ref.get_prompt(id=mine.id)
    assert view(from_ref, PROMPT_FIELDS) == view(ours.get_prompt(id=mine.id), PROMPT_FIELDS)
    assert from_ref.format_messages(tone="calm", q="hi") == ours.get_prompt(
        name=mine.name
    ).format_messages(tone="calm", q="hi")
    assert ref.get_or_create_prompt(mine.name, messages, dict(settings)).id == mine.id

    name = uid("ref")
    theirs = ref.get_or_create_prompt(name, messages, dict(settings), tools=[{"type": "function"}])
    assert view(ours.get_prompt(name=name, version=0), PROMPT_FIELDS) == view(
        ref.get_prompt(name=name, version=0), PROMPT_FIELDS
    )
    again = ours.get_or_create_prompt(name, messages, dict(settings), tools=[{"type": "function"}])
    assert again.id == theirs.id
    ours.update_prompt_ab_testing(name, [{"version": 0, "rollout": 100}])
    assert ref.get_prompt_ab_testing(name) == ours.get_prompt_ab_testing(name)
