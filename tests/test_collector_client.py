"""The reference SDK's ``LiteralClient`` (decorators, context managers, event processor)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from literalai import LiteralClient

from agent.testing import CollectorThread


@pytest.fixture
def client(literal_env: CollectorThread) -> Iterator[LiteralClient]:
    """A LiteralClient reading LITERAL_API_KEY/URL from the environment (set by literal_env)."""
    made = LiteralClient(batch_size=5)
    yield made
    made.flush_and_stop()


def test_thread_run_step_decorators(client: LiteralClient) -> None:
    """thread/run/step decorators and message(): the whole tree arrives and links up."""

    @client.step(type="tool")
    def double(x: int) -> int:
        return x * 2

    @client.run
    def agent(q: int) -> dict[str, int]:
        return {"answer": double(q)}

    with client.thread(name="conversation", tags=["demo"]) as thread:
        client.message("hi", type="user_message")
        agent(21)
    client.flush()
    fetched = client.api.get_thread(thread.id)
    assert fetched is not None and fetched.name == "conversation" and fetched.tags == ["demo"]
    by_name = {s.name: s for s in fetched.steps}
    assert set(by_name) == {"agent", "double", "user"} or set(by_name) >= {"agent", "double"}
    run, tool = by_name["agent"], by_name["double"]
    assert run.type == "run" and run.output == {"answer": 42} and run.input == {"q": 21}
    assert tool.parent_id == run.id and tool.output == {"content": 42}
    messages = [s for s in fetched.steps if s.type == "user_message"]
    assert messages and messages[0].output == {"content": "hi"}


def test_event_processor_batches_all_arrive(client: LiteralClient) -> None:
    """Twelve steps go out in batches of five; flush() returns after all are stored."""
    thread_id = str(uuid.uuid4())
    for i in range(12):
        with client.step(name=f"s{i}", type="tool", thread_id=thread_id):
            pass
    client.flush()
    steps = client.api.get_steps(
        first=50, filters=[{"field": "threadId", "operator": "eq", "value": thread_id}]
    )
    assert steps.total_count == 12


def test_environment_and_experiment_run(client: LiteralClient) -> None:
    """x-env stamps environment: client.environment() and experiment_item_run()."""
    with client.environment(env="staging"):
        with client.step(name="in-staging", type="tool") as staged:
            pass
        client.flush()
    with client.experiment_item_run() as run:
        pass
    client.flush()
    got = client.api.get_step(staged.id)
    assert got is not None and got.environment == "staging"
    exp = client.api.get_step(run.id)
    assert exp is not None and exp.environment == "experiment" and exp.name == "Experiment Run"
    with client.step(name="default-env", type="tool") as plain:
        pass
    client.flush()
    assert client.api.get_step(plain.id).environment == "prod"  # type: ignore[union-attr]


def test_step_error_is_recorded(client: LiteralClient) -> None:
    """An exception inside a step is stored as the step's error."""
    step_id = str(uuid.uuid4())
    with pytest.raises(ValueError):
        with client.step(name="failing", type="tool", id=step_id):
            raise ValueError("boom")
    client.flush()
    assert client.api.get_step(step_id).error == "boom"  # type: ignore[union-attr]
