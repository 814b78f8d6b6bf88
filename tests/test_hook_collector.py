"""The library hook end to end: real pipeline, real collector, read back by the reference SDK.

Nested threads / runs / steps opened from sync code, async code, an OS thread and concurrent
asyncio tasks must arrive with the right parent, thread and root-run ids; the reference
``literalai`` API client must read them back as it expects (``get_thread``, ``get_steps``,
``get_step``), including generations, scores and messages.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import httpx
import pytest
from literalai.api import LiteralAPI as ReferenceAPI

from agent._client import AsyncLiteralClient, LiteralClient
from agent._models import Attachment, ChatGeneration
from agent.testing import CollectorThread


def root_run_ids(collector: CollectorThread, ids: list[str]) -> dict[str, str | None]:
    """``rootRunId`` of steps (the reference SDK does not read it back), via GraphQL."""
    fields = " ".join(f's{i}: step(id: "{sid}") {{ id rootRunId }}' for i, sid in enumerate(ids))
    response = httpx.post(
        f"{collector.url}/api/graphql",
        json={"query": f"query {{ {fields} }}", "variables": {}},
        headers={"x-api-key": collector.api_key},
        timeout=10,
    )
    data: dict[str, Any] = response.json()["data"]
    return {v["id"]: v["rootRunId"] for v in data.values() if v}


def test_sync_async_threads_and_tasks_round_trip(collector: CollectorThread) -> None:
    """One conversation built four ways arrives whole and reads back with the reference SDK."""
    client = LiteralClient(api_key=collector.api_key, url=collector.url, release="1.0")

    @client.step(type="tool")
    def search(query: str) -> list[str]:
        return [query, query + "!"]

    @client.step(type="llm")
    def answer(question: str) -> str:
        step = client.get_current_step()
        assert step is not None
        step.generation = ChatGeneration(
            provider="openai",
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": question}],
            message_completion={"role": "assistant", "content": "42"},
            input_token_count=5,
            output_token_count=1,
        )
        client.score("relevance", 0.9, type="AI", comment="auto")
        return "42"

    @client.run
    def agent(question: str) -> str:
        search(question)
        return answer(question)

    @client.step
    async def async_child(i: int) -> int:
        await asyncio.sleep(0.001)
        return i

    async def fan_out() -> str:
        async with client.run(name="fan-out") as run:
            await asyncio.gather(*(asyncio.create_task(async_child(i)) for i in range(5)))
            return run.id

    with client.thread(name="e2e conversation", tags=["e2e"]) as thread:
        client.message("what is the answer?", type="user_message")
        assert agent("what is the answer?") == "42"
        fan_out_run = asyncio.run(fan_out())
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(agent, "from a thread"))
        worker.start()
        worker.join()
        client.message("42", type="assistant_message")

    result = client.flush(timeout=20)
    assert result is not None and not result.timed_out and result.pending == 0
    client.flush_and_stop(timeout=5)
    assert client.hook_stats() == {}

    reference = ReferenceAPI(api_key=collector.api_key, url=collector.url)
    fetched = reference.get_thread(id=thread.id)
    assert fetched is not None and fetched.name == "e2e conversation"
    assert fetched.tags == ["e2e"] and (fetched.metadata or {}).get("release") == "1.0"
    steps = fetched.steps or []
    # 2 messages + 2 x (agent, search, answer) + fan-out run + 5 children
    assert len(steps) == 2 + 6 + 6
    by_id = {s.id: s for s in steps}
    assert all(s.thread_id == thread.id for s in steps)
    runs = [s for s in steps if s.name == "agent"]
    assert len(runs) == 2 and all(r.type == "run" and r.parent_id is None for r in runs)
    for name in ("search", "answer"):
        children = [s for s in steps if s.name == name]
        assert sorted(c.parent_id or "" for c in children) == sorted(r.id for r in runs)
    llm = next(s for s in steps if s.name == "answer")
    assert llm.type == "llm" and llm.generation is not None
    assert llm.generation.model == "gpt-4o-mini" and llm.generation.input_token_count == 5
    assert llm.output == {"content": "42"} and llm.input == {"question": "what is the answer?"}
    scores = llm.scores or []
    assert [sc.name for sc in scores] == ["relevance"]
    assert scores[0].value == 0.9 and scores[0].type == "AI"
    messages = [s for s in steps if s.type in ("user_message", "assistant_message")]
    assert {m.output["content"] for m in messages if m.output} == {"what is the answer?", "42"}
    assert all(m.parent_id is None for m in messages)
    kids = [s for s in steps if s.name == "async_child"]
    assert len(kids) == 5 and all(k.parent_id == fan_out_run for k in kids)
    assert by_id[fan_out_run].type == "run"

    roots = root_run_ids(collector, [s.id for s in steps])
    for s in steps:
        if s.name in ("search", "answer"):
            assert roots[s.id] == s.parent_id
        elif s.name == "async_child":
            assert roots[s.id] == fan_out_run
        else:
            assert roots[s.id] is None

    by_parent = [{"field": "parentId", "operator": "eq", "value": fan_out_run}]
    page = reference.get_steps(filters=by_parent)  # type: ignore[arg-type]
    assert page.total_count == 5
    single = reference.get_step(id=llm.id)
    assert single is not None and single.parent_id == llm.parent_id


@pytest.mark.anyio
async def test_async_client_end_to_end(collector: CollectorThread) -> None:
    """AsyncLiteralClient: ``async with`` thread/run, awaited flush; read back async-free."""
    client = AsyncLiteralClient(api_key=collector.api_key, url=collector.url)

    @client.step(type="retrieval")
    async def retrieve(k: int) -> list[int]:
        return list(range(k))

    @client.thread(name="async conversation")
    async def conversation() -> tuple[str, str]:
        thread = client.get_current_thread()
        assert thread is not None
        async with client.run(name="async run") as run:
            await retrieve(2)
        return thread.id, run.id

    thread_id, run_id = await conversation()
    result = await client.flush(timeout=20)
    assert result is not None and not result.timed_out
    client.flush_and_stop(timeout=5)

    reference = ReferenceAPI(api_key=collector.api_key, url=collector.url)
    fetched = await asyncio.to_thread(reference.get_thread, id=thread_id)
    assert fetched is not None and fetched.name == "async conversation"
    steps = {s.name: s for s in fetched.steps or []}
    assert steps["retrieve"].parent_id == run_id and steps["retrieve"].type == "retrieval"
    assert steps["retrieve"].output == {"content": [0, 1]}
    assert root_run_ids(collector, [steps["retrieve"].id]) == {steps["retrieve"].id: run_id}


def test_preprocess_and_attachments_reach_the_collector(collector: CollectorThread) -> None:
    """The preprocessing hook runs before sending; attachments travel with their step."""

    def redact(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for step in steps:
            if step.get("input"):
                step["input"] = {"redacted": True}
        return steps

    client = LiteralClient(api_key=collector.api_key, url=collector.url, preprocess=redact)
    with client.thread(name="files") as thread:
        with client.step(name="with file", type="tool") as step:
            step.input = {"password": "hunter2"}
            step.attachments.append(
                Attachment(name="report.pdf", mime="application/pdf",
                           url="https://example.com/report.pdf")
            )
    result = client.flush(timeout=20)
    assert result is not None and not result.timed_out
    client.flush_and_stop(timeout=5)

    reference = ReferenceAPI(api_key=collector.api_key, url=collector.url)
    fetched = reference.get_step(id=step.id)
    assert fetched is not None and fetched.thread_id == thread.id
    assert fetched.input == {"redacted": True}
    assert [(a.name, a.mime, a.url) for a in fetched.attachments] == [
        ("report.pdf", "application/pdf", "https://example.com/report.pdf")
    ]


def test_attach_uploads_in_the_background(collector: CollectorThread, tmp_path: Any) -> None:
    """``client.attach``: a URL rides with the open step, content and a path are uploaded off
    the caller's thread and sent as step updates; a late URL updates an ended step."""
    client = LiteralClient(api_key=collector.api_key, url=collector.url)
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly numbers")
    with client.thread(name="attachments"):
        with client.step(name="files", type="tool") as step:
            by_url = client.attach(name="link", url="https://example.com/a.png", mime="image/png")
            by_content = client.attach(name="notes.txt", content=b"hello", mime="text/plain")
            by_path = client.attach(name="report.txt", path=str(report), mime="text/plain")
        late = client.attach(name="late", url="https://example.com/late.pdf", step=step)
    assert client.attach(name="orphan", url="https://example.com/x") is None
    assert by_url is not None and by_content is not None and by_path is not None and late
    result = client.flush(timeout=20)
    assert result is not None and not result.timed_out
    client.flush_and_stop(timeout=5)
    assert client.hook_stats() == {"attachment_without_step": 1}
    assert by_content.object_key and by_path.object_key

    fetched = ReferenceAPI(api_key=collector.api_key, url=collector.url).get_step(id=step.id)
    assert fetched is not None
    got = {a.name: a for a in fetched.attachments}
    assert set(got) == {"link", "notes.txt", "report.txt", "late"}
    assert got["link"].url == "https://example.com/a.png" and got["link"].mime == "image/png"
    assert got["notes.txt"].object_key == by_content.object_key
    assert got["report.txt"].id == by_path.id and (got["late"].url or "").endswith("late.pdf")
