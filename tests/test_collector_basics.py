"""Collector basics: health, auth, the command and its process, users/threads/steps via the SDK."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from literalai.api import LiteralAPI

from agent.testing import CollectorProcess, CollectorThread


def test_health_needs_no_key(collector: CollectorThread) -> None:
    """GET /health answers without a key; with one, it adds the ingest journal's counts
    (SQLite only)."""
    response = httpx.get(f"{collector.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    wrong = httpx.get(f"{collector.url}/health", headers={"x-api-key": "wrong"})
    assert wrong.json() == {"status": "ok"}
    keyed = httpx.get(f"{collector.url}/health", headers={"x-api-key": collector.api_key})
    journal = keyed.json().get("ingestJournal")
    if collector.database_url and not collector.database_url.startswith("sqlite"):
        assert journal is None
    else:
        assert journal is not None
        assert set(journal) == {"acknowledged", "stored", "pendingRecords", "deadLetters", "bytes"}


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong-key-123"}])
def test_missing_or_wrong_key_is_401_without_echo(
    collector: CollectorThread, headers: dict[str, str]
) -> None:
    """Every API route answers 401 with a JSON message that does not echo the key."""
    for path in ("/api/graphql", "/api/my-project", "/api/export/dataset", "/api/upload/file"):
        response = httpx.post(f"{collector.url}{path}", json={}, headers=headers)
        assert response.status_code == 401, path
        assert "message" in response.json()
        assert "wrong-key-123" not in response.text


def test_users_threads_steps_round_trip(collector: CollectorThread) -> None:
    """The reference SDK writes a user, a thread and steps, and reads them back."""
    api = LiteralAPI(api_key=collector.api_key, url=collector.url)
    user = api.create_user("basics-alice", {"plan": "pro"})
    assert api.get_user(identifier="basics-alice").id == user.id
    thread = api.create_thread(name="basics", participant_id=user.id, tags=["a"])
    step = api.create_step(thread_id=thread.id, type="run", name="root", input={"q": 1})
    api.send_steps(
        [
            {
                "id": "basics-child",
                "threadId": thread.id,
                "parentId": step.id,
                "type": "llm",
                "name": "child",
                "startTime": "2024-05-01T12:34:56.123Z",
                "output": {"a": 2},
            }
        ]
    )
    fetched = api.get_thread(thread.id)
    assert fetched is not None
    assert fetched.participant_id == user.id
    assert {s.id for s in fetched.steps} == {step.id, "basics-child"}
    child = api.get_step("basics-child")
    assert child is not None
    assert child.parent_id == step.id and child.output == {"a": 2}
    assert child.environment == "prod"


def test_command_creates_key_file_and_stops_cleanly(tmp_path: Path) -> None:
    """Without configured keys the command writes <data>/api_key (0600); SIGTERM exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITERAL_AGENT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "collector", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        key_file = tmp_path / "api_key"
        assert line.startswith("literal-agent collector listening on http://127.0.0.1:")
        assert line.endswith(f"(api key file: {key_file})")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        api = LiteralAPI(api_key=key, url=url)
        assert api.get_my_project_id()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert key not in err


def test_process_restart_keeps_port_and_data(tmp_path: Path) -> None:
    """CollectorProcess: stop/kill and restart on the same port; data survives."""
    with CollectorProcess(tmp_path / "c", api_key="proc-key") as proc:
        port = proc.port
        api = LiteralAPI(api_key="proc-key", url=proc.url)
        thread = api.upsert_thread(id="proc-thread", name="persisted")
        assert proc.stop() == 0
        proc.restart()
        assert proc.port == port
        assert api.get_thread(thread.id) is not None
        proc.kill()
        proc.start()
        assert proc.port == port
        assert api.get_thread(thread.id).name == "persisted"  # type: ignore[union-attr]


def test_command_reads_keys_from_config_file(tmp_path: Path) -> None:
    """--config: [collector] api_keys are accepted and no key file is created."""
    config = tmp_path / "collector.toml"
    config.write_text(f'[collector]\napi_keys = ["cfg-key-1"]\ndata_dir = "{tmp_path / "data"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITERAL_AGENT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "collector", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.endswith("(api key file: -)"), line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert LiteralAPI(api_key="cfg-key-1", url=url).get_my_project_id()
        assert httpx.post(f"{url}/api/my-project", json={}).status_code == 401
        assert not (tmp_path / "data" / "api_key").exists()
        assert (tmp_path / "data" / "collector.db").exists()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "cfg-key-1" not in err


def test_unreachable_database_exits_with_one_line_without_password(tmp_path: Path) -> None:
    """A PostgreSQL URL nobody listens on: non-zero exit, one stderr line, no password."""
    pytest.importorskip("psycopg")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITERAL_AGENT_")}
    env["LITERAL_AGENT_COLLECTOR_DATABASE_URL"] = "postgresql://u:secretpw@127.0.0.1:1/x"
    env["LITERAL_AGENT_COLLECTOR_API_KEYS"] = "k"
    done = subprocess.run(
        [sys.executable, "-m", "agent", "collector", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("literal-agent collector: ")
    assert "127.0.0.1" in lines[0] and "Traceback" not in done.stderr
    assert "secretpw" not in done.stderr + done.stdout


def test_collector_config_repr_hides_the_database_password() -> None:
    """repr/str/rich repr of the collector config show the URL with ``***``; the password is
    registered as a secret, so log lines and redact() mask it too."""
    from agent._config import AgentConfig, CollectorConfig
    from agent._logging import redact

    password = "Db-Pa55word-9c1e7"
    url = f"postgresql://literal:{password}@db.example:5432/collector?sslmode=require"
    cfg = CollectorConfig(database_url=url)
    shown = [repr(cfg), str(cfg), f"{cfg}", repr(AgentConfig(collector=cfg))]
    shown.append(repr(cfg.__rich_repr__()))
    for text in shown:
        assert password not in text
    assert "database_url='postgresql://literal:***@db.example:5432/collector?sslmode=require'" in (
        repr(cfg)
    )
    assert cfg.database_url == url  # still usable
    assert password not in redact(f"connecting to {url}")
    query = CollectorConfig(database_url=f"postgresql://h/db?password={password}x")
    assert f"{password}x" not in repr(query) and "password=***" in repr(query)
    assert "database_url=None" in repr(CollectorConfig())


def test_every_sdk_method_is_exercised() -> None:
    """Each public method of LiteralAPI/AsyncLiteralAPI is called by the SDK test modules."""
    import inspect

    from literalai.api import AsyncLiteralAPI

    here = Path(__file__).parent
    sync_src = (here / "test_collector_sdk.py").read_text() + (
        here / "test_collector_queries.py"
    ).read_text()
    async_src = (here / "test_collector_sdk_async.py").read_text()
    for cls, src in ((LiteralAPI, sync_src), (AsyncLiteralAPI, async_src)):
        names = [n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")]
        missing = [n for n in names if f".{n}(" not in src]
        assert not missing, f"{cls.__name__} methods never called: {missing}"
