"""The README's Python examples run as written, in a fresh interpreter, against a real
collector (so the documentation cannot drift from the code)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent import LiteralAPI
from agent.testing import CollectorThread

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(after_heading: str) -> str:
    """The first ```python block following the heading that starts with ``after_heading``."""
    text = README.read_text()
    start = text.index(after_heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {after_heading!r}"
    return match.group(1)


def _run(code: str, collector: CollectorThread, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LITERAL_API_KEY": collector.api_key,
        "LITERAL_API_URL": collector.url,
        "LITERAL_AGENT_SPOOL_DIRECTORY": str(tmp_path / "spool"),
    }
    env.pop("LITERAL_ENV", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def api(fresh_sqlite_collector: CollectorThread) -> LiteralAPI:
    return LiteralAPI(api_key=fresh_sqlite_collector.api_key, url=fresh_sqlite_collector.url)


def test_api_example(
    api: LiteralAPI, fresh_sqlite_collector: CollectorThread, tmp_path: Path
) -> None:
    """The API example creates the thread, the step and the prompt it names."""
    _run(_python_block("### The API"), fresh_sqlite_collector, tmp_path)
    step = api.get_step("s-1")
    assert step is not None and step.thread_id == "t-1" and step.name == "answer"
    thread = api.get_thread("t-1")
    assert thread is not None and thread.name == "support chat"
    prompt = api.get_prompt(name="greeting")
    assert prompt is not None and prompt.version == 0


def test_hook_example(
    api: LiteralAPI, fresh_sqlite_collector: CollectorThread, tmp_path: Path
) -> None:
    """The hook example, called once, stores a thread with a run, its llm step and a score."""
    code = _python_block("### The library hook") + '\nchat("what is 2 + 2?")\nclient.flush()\n'
    _run(code, fresh_sqlite_collector, tmp_path)
    steps = {s.name: s for s in api.get_steps().data}
    assert set(steps) == {"answer", "gpt"}
    run, llm = steps["answer"], steps["gpt"]
    assert llm.parent_id == run.id and llm.thread_id == run.thread_id is not None
    thread = api.get_thread(run.thread_id)
    assert thread is not None and thread.name == "chat"
    assert llm.generation is not None and llm.generation.model == "gpt-4o-mini"
    scores = api.get_scores().data
    assert [(s.name, s.value, s.step_id) for s in scores] == [("helpful", 1.0, run.id)]
