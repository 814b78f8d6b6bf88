"""The collector on PostgreSQL: SDK calls, schema and migrations, replicas, password hygiene.

Needs ``LITERAL_TEST_POSTGRES_URL`` (set by ``.ci/run``); every test works in a fresh schema
of that server. ``PgCollector`` serves the real app on a PostgreSQL storage in a thread;
the replica test runs two real ``python -m agent collector`` processes on one database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
from literalai.api import LiteralAPI
from literalai.observability.generation import ChatGeneration
from test_storage_backends import PG_SKIP, PG_URL

from agent.collector._backends import open_storage
from agent.collector._storage import Filter, ListQuery, Storage, Write
from agent.testing import CollectorProcess, CollectorThread, pg_database

pytestmark = pytest.mark.skipif(not PG_URL, reason=PG_SKIP)

API_KEY = "pg-test-key"
READY_PREFIX = "literal-agent collector listening on "


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty schema on the test server."""
    with pg_database() as url:
        yield url


def _wait_healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"collector at {url} not ready in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class PgCollector:
    """The collector app on a PostgreSQL storage (its own pool), uvicorn in a thread."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.api_key = API_KEY
        self.port = 0
        self.storage: Storage | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        from agent.collector._app import create_app
        from agent.collector._command import UPLOAD_DIR, bind_socket, make_server

        self.storage = open_storage(self.database_url, self.data_dir)
        app = create_app(
            self.storage, api_keys=[self.api_key], upload_dir=self.data_dir / UPLOAD_DIR
        )
        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self._server = make_server(app)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="pg-collector", daemon=True
        )
        self._thread.start()
        _wait_healthy(self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.storage is not None:
            self.storage.close()
        self._server = self._thread = self.storage = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture
def pg_collector(pg_url: str, tmp_path: Path) -> Iterator[PgCollector]:
    """A collector on a fresh PostgreSQL schema."""
    with PgCollector(pg_url, tmp_path / "collector") as running:
        yield running


@pytest.fixture
def api(pg_collector: PgCollector) -> LiteralAPI:
    """The reference SDK pointed at the PostgreSQL collector."""
    return LiteralAPI(api_key=pg_collector.api_key, url=pg_collector.url)


# -- the reference SDK against the PostgreSQL collector ---------------------------------------


def test_users_threads_and_steps(api: LiteralAPI) -> None:
    """Users, threads (upsert keeps absent fields), steps via send_steps, pagination."""
    user = api.create_user("pg-user", {"tier": "gold"})
    assert api.get_user(identifier="pg-user").id == user.id  # type: ignore[union-attr]
    assert api.get_or_create_user("pg-user").id == user.id
    thread = api.create_thread(name="t", metadata={"k": "v"}, participant_id=user.id, tags=["x"])
    upserted = api.upsert_thread(thread.id, tags=["y"])
    assert upserted.name == "t" and upserted.metadata == {"k": "v"} and upserted.tags == ["y"]
    steps = [
        {"id": f"pg-step-{i:02d}", "threadId": thread.id, "type": "tool", "name": f"n{i}"}
        for i in range(25)
    ]
    response = api.send_steps(steps)
    assert all(v["ok"] for v in response["data"].values())
    assert api.send_steps(steps[:5])["data"]["step0"]["ok"]  # idempotent re-ingest
    seen: list[str] = []
    after = None
    while True:
        page = api.get_steps(first=10, after=after)
        assert page.total_count == 25
        seen += [s.id for s in page.data]
        if not page.page_info.has_next_page:
            break
        after = page.page_info.end_cursor
    assert seen == [s["id"] for s in reversed(steps)]
    second = api.get_steps(first=10, after=api.get_steps(first=10).page_info.end_cursor)
    back = api.get_steps(first=10, before=second.page_info.start_cursor)
    assert [s.id for s in back.data] == seen[:10]
    listed = api.list_threads(
        filters=[{"field": "participantIdentifiers", "operator": "in", "value": ["pg-user"]}]
    )
    assert [t.id for t in listed.data] == [thread.id]
    gold = api.get_users(
        filters=[{"field": "metadata", "operator": "eq", "value": "gold", "path": "tier"}]
    )
    assert [u.id for u in gold.data] == [user.id]
    full = api.get_thread(thread.id)
    assert full is not None and len(full.steps or []) == 25
    assert api.delete_thread(thread.id)
    assert api.get_step("pg-step-03") is None


def test_generations_scores_and_attachments(api: LiteralAPI) -> None:
    """send_steps with a generation, scores and attachments; generations and score filters."""
    step_id = str(uuid.uuid4())
    api.send_steps(
        [
            {
                "id": step_id,
                "type": "llm",
                "threadId": str(uuid.uuid4()),
                "generation": {
                    "type": "CHAT",
                    "provider": "openai",
                    "model": "gpt-x",
                    "messages": [{"role": "user", "content": "hi"}],
                    "messageCompletion": {"role": "assistant", "content": "hello"},
                    "tokenCount": 12,
                },
                "scores": [{"name": "q", "type": "HUMAN", "value": 0.75}],
                "attachments": [{"name": "a.txt", "url": "https://example.invalid/a.txt"}],
            }
        ]
    )
    got = api.get_step(step_id)
    assert got is not None and got.generation is not None and got.generation.token_count == 12
    assert [s.value for s in got.scores] == [0.75] and len(got.attachments) == 1
    chat = api.create_generation(
        ChatGeneration(
            model="m-chat",
            messages=[{"role": "user", "content": "q"}],
            message_completion={"role": "assistant", "content": "a"},
        )
    )
    models = api.get_generations(order_by={"column": "model", "direction": "ASC"})
    assert [g.model for g in models.data] == ["gpt-x", "m-chat"]
    assert chat.id in {g.id for g in models.data}
    score = api.create_score(name="v", value=0.2, type="AI", step_id=step_id)
    high = api.get_scores(filters=[{"field": "value", "operator": "gte", "value": 0.5}])
    assert [s.value for s in high.data] == [0.75]
    api.update_score(score.id, {"comment": "low", "value": 0.2})
    assert (
        api.get_scores(filters=[{"field": "comment", "operator": "eq", "value": "low"}]).total_count
        == 1
    )


def test_datasets_and_prompts(api: LiteralAPI, pg_collector: PgCollector) -> None:
    """Datasets with items and experiments; prompt lineages, versions and A/B rollouts."""
    dataset = api.create_dataset("pg-ds", description="d", metadata={"m": 1})
    item = dataset.create_item({"q": 1}, {"a": 2})
    assert api.get_dataset_item(item.id).input == {"q": 1}
    assert api.get_dataset(name="pg-ds").id == dataset.id  # type: ignore[union-attr]
    experiment = dataset.create_experiment("exp", params={"temp": 0})
    logged = experiment.log(
        {
            "datasetItemId": item.id,
            "input": {},
            "output": {},
            "scores": [{"name": "acc", "type": "CODE", "value": 1.0}],
        }
    )
    assert logged.scores[0]["name"] == "acc"
    export = httpx.post(
        f"{pg_collector.url}/api/export/dataset",
        json={"id": dataset.id},
        headers={"x-api-key": pg_collector.api_key},
    )
    assert export.status_code == 200
    assert [i["id"] for i in export.json()["data"]["items"]] == [item.id]
    settings = {"provider": "openai", "model": "gpt-4o", "temperature": 0}
    v0 = api.get_or_create_prompt(
        "pg-prompt", [{"role": "system", "content": "Hi {{n}}"}], settings
    )
    v1 = api.create_prompt("pg-prompt", [{"role": "system", "content": "Bye"}], settings)
    assert (v0.version, v1.version) == (0, 1)
    assert api.get_prompt(name="pg-prompt").id == v1.id
    api.update_prompt_ab_testing(
        "pg-prompt", [{"version": 0, "rollout": 100}, {"version": 1, "rollout": 0}]
    )
    assert {api.get_prompt(name="pg-prompt").version for _ in range(3)} == {0}
    project = api.get_my_project_id()
    assert project == pg_collector.storage.project_id  # type: ignore[union-attr]


def test_upload_signing_secret_is_shared_by_replicas(pg_url: str, tmp_path: Path) -> None:
    """Two replicas on one database sign upload URLs with one secret (stored as a setting)."""
    with (
        PgCollector(pg_url, tmp_path / "a") as a,
        PgCollector(pg_url, tmp_path / "b") as b,
    ):
        assert a.storage is not None and b.storage is not None
        assert a.storage.project_id == b.storage.project_id
        assert a.storage.setting("file_signing_secret", "x") == b.storage.setting(
            "file_signing_secret", "y"
        )


def test_upload_signed_by_one_replica_goes_through_another(pg_url: str, tmp_path: Path) -> None:
    """Two apps on one database, each with its own data dir: an upload URL signed by A is
    accepted by B (once: a replay on A is 404), and the file reads back through A and B."""
    with (
        CollectorThread(tmp_path / "a", api_key=API_KEY, database_url=pg_url) as a,
        CollectorThread(tmp_path / "b", api_key=API_KEY, database_url=pg_url) as b,
    ):
        signed = httpx.post(
            f"{a.url}/api/upload/file",
            json={"fileName": "shared.txt", "contentType": "text/plain"},
            headers={"x-api-key": API_KEY},
        ).json()
        upload_url = signed["post"]["url"]
        assert upload_url.startswith(a.url)
        files = {"file": ("shared.txt", b"from b", "text/plain")}
        via_b = httpx.post(upload_url.replace(a.url, b.url), files=files)
        assert via_b.status_code == 204, via_b.text
        assert httpx.post(upload_url, files=files).status_code == 404  # used, on any replica
        read = httpx.get(signed["signedUrl"])  # A's URL
        assert read.status_code == 200 and read.content == b"from b"
        assert read.headers["content-type"].startswith("text/plain")
        assert httpx.get(signed["signedUrl"].replace(a.url, b.url)).content == b"from b"
        assert not (tmp_path / "a" / "uploads").exists()
        assert not (tmp_path / "b" / "uploads").exists()


def test_collector_process_with_database_url(pg_url: str, tmp_path: Path) -> None:
    """CollectorProcess(database_url=...) runs the command on PostgreSQL (no SQLite file)."""
    data_dir = tmp_path / "proc"
    with CollectorProcess(data_dir, api_key=API_KEY, database_url=pg_url) as proc:
        LiteralAPI(api_key=API_KEY, url=proc.url).upsert_thread(id="proc-pg", name="in pg")
    assert not (data_dir / "collector.db").exists()
    storage = open_storage(pg_url, tmp_path)
    try:
        assert storage.get("thread", ["proc-pg"])["proc-pg"]["name"] == "in pg"
    finally:
        storage.close()


def test_pool_size_bounds_the_connections_of_one_process(pg_url: str, tmp_path: Path) -> None:
    """[collector] database_pool_size reaches the pool: concurrent requests of one collector
    process never hold more PostgreSQL connections than configured."""
    import psycopg

    storage = open_storage(pg_url, tmp_path, pool_size=3)
    try:
        assert storage._pool.max_size == 3  # type: ignore[attr-defined]
    finally:
        storage.close()
    env = {"LITERAL_AGENT_COLLECTOR_DATABASE_POOL_SIZE": "2"}
    name = f"pool-test-{uuid.uuid4().hex[:8]}"  # this collector's connections, and no other
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}application_name={name}"
    with CollectorProcess(tmp_path / "p", api_key=API_KEY, database_url=url, env=env) as proc:
        assert proc.pid is not None

        def count() -> int:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
                ).fetchone()
            return int(row[0]) if row else -1

        api = LiteralAPI(api_key=API_KEY, url=proc.url)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: api.get_threads(first=5), range(64)))
        assert 1 <= count() <= 2  # the pool keeps what it opened: at most its size


# -- schema and migrations ----------------------------------------------------------------------


def test_schema_matches_kinds_and_sqlite_versions(pg_url: str, tmp_path: Path) -> None:
    """Same number of migrations as SQLite; the tables hold exactly the KINDS columns."""
    import psycopg

    from agent.collector._pg_schema import MIGRATIONS, schema_version
    from agent.collector._sqlbase import snake
    from agent.collector._sqlite_schema import KINDS
    from agent.collector._sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS

    assert len(MIGRATIONS) == len(SQLITE_MIGRATIONS)
    open_storage(pg_url, tmp_path).close()
    expected_types = {
        "text": "text",
        "json": "json",
        "int": "bigint",
        "real": "double precision",
        "blob": "bytea",
    }
    with psycopg.connect(pg_url) as conn:
        assert schema_version(conn) == len(MIGRATIONS)
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        tables.setdefault(table, {})[column] = data_type
    for kind, columns in KINDS.items():
        want = {"seq": "bigint", "id": "text", "created_at": "text"}
        want |= {snake(k): expected_types[t] for k, t in columns.items()}
        assert tables[kind] == want, kind
    assert set(tables) == {*KINDS, "meta", "schema_version"}


def test_migrates_an_existing_older_database(pg_url: str, tmp_path: Path) -> None:
    """A database at schema version 1 with data is brought to the latest version, data kept."""
    import psycopg

    from agent.collector._pg_schema import MIGRATIONS, migrate, schema_version

    with psycopg.connect(pg_url) as conn:
        project = migrate(conn, target=1)
        conn.execute(
            "INSERT INTO step (id, created_at, name, input) VALUES (%s, %s, %s, %s)",
            ("old", "2024-01-01T00:00:00Z", "n", '{"a": 1}'),
        )
        conn.commit()
        assert schema_version(conn) == 1
    storage = open_storage(pg_url, tmp_path)
    try:
        assert storage.project_id == project
        assert storage.get("step", ["old"])["old"]["input"] == {"a": 1}
    finally:
        storage.close()
    with psycopg.connect(pg_url) as conn:
        assert schema_version(conn) == len(MIGRATIONS)
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes").fetchall()}
        assert {"step_thread", "step_created"} <= indexes


def test_concurrent_starts_migrate_once(pg_url: str, tmp_path: Path) -> None:
    """Eight storages opened at once on an empty schema: one migration, one project id."""
    import psycopg

    from agent.collector._pg_schema import MIGRATIONS, schema_version

    barrier = threading.Barrier(8)
    opened: list[Storage] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start() -> None:
        try:
            barrier.wait()
            storage = open_storage(pg_url, tmp_path)
            with lock:
                opened.append(storage)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len({s.project_id for s in opened}) == 1
        with psycopg.connect(pg_url) as conn:
            assert schema_version(conn) == len(MIGRATIONS)
            assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
            assert conn.execute(
                "SELECT COUNT(*) FROM meta WHERE key = 'project_id'"
            ).fetchone() == (1,)
    finally:
        for storage in opened:
            storage.close()


def test_writes_in_opposite_orders_survive_deadlocks(pg_url: str, tmp_path: Path) -> None:
    """Two handles upsert the same 2000 rows in opposite orders at once: PostgreSQL aborts one
    transaction for the deadlock, the storage redoes it, both writes land."""
    from agent.collector._postgres import PostgresStorage

    handles = [open_storage(pg_url, tmp_path), open_storage(pg_url, tmp_path)]
    try:
        ids = [f"d{i:04d}" for i in range(2000)]
        handles[0].write([Write("step", [{"id": i} for i in ids])])
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def upsert(storage: Storage, order: list[str], name: str) -> None:
            barrier.wait()
            try:
                storage.write([Write("step", [{"id": i, "name": name} for i in order])])
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [
            threading.Thread(target=upsert, args=(handles[0], ids, "forward")),
            threading.Thread(target=upsert, args=(handles[1], ids[::-1], "backward")),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        names = {r["name"] for r in handles[0].find("step", "id", ids)}
        assert len(names) == 1 and names <= {"forward", "backward"}  # one whole write last
        assert handles[0].list("step", ListQuery(first=0)).total == 2000
        assert all(isinstance(h, PostgresStorage) for h in handles)
    finally:
        for handle in handles:
            handle.close()


def test_nul_in_text_is_stored_as_replacement_character(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL text cannot hold NUL (SQLite can): it becomes U+FFFD on writes and lookups
    alike, instead of failing the whole batch; JSON values keep it."""
    storage = open_storage(pg_url, tmp_path)
    try:
        storage.write(
            [Write("step", [{"id": "n\x00ul", "name": "a\x00b", "metadata": {"k": "x\x00y"}}])]
        )
        got = storage.get("step", ["n\x00ul"])["n\ufffdul"]
        assert got["name"] == "a\ufffdb" and got["metadata"] == {"k": "x\x00y"}
        flt = (Filter("name", "eq", "a\x00b"),)
        assert [r["id"] for r in storage.list("step", ListQuery(filters=flt)).items] == [
            "n\ufffdul"
        ]
        storage.write([Write("step", [{"id": "n\x00ul"}], "delete")])
        assert storage.list("step", ListQuery()).total == 0
    finally:
        storage.close()


def test_dead_connections_are_replaced(pg_url: str, tmp_path: Path) -> None:
    """After the server drops every pooled connection (restart, failover), the next calls
    still succeed: the dead connection is noticed, the pool checked, the call redone."""
    import psycopg

    from agent.collector._postgres import PostgresStorage

    tag = f"literal-test-{uuid.uuid4().hex[:8]}"
    storage = open_storage(f"{pg_url}&application_name={tag}", tmp_path)
    assert isinstance(storage, PostgresStorage)
    try:
        storage.write([Write("step", [{"id": "before"}])])
        assert PG_URL is not None
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (tag,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        storage.write([Write("step", [{"id": "after"}])])
        assert set(storage.get("step", ["before", "after"])) == {"before", "after"}
        assert storage.list("step", ListQuery()).total == 2
        assert storage.retried >= 1
    finally:
        storage.close()


# -- two collector processes on one database --------------------------------------------------


class Replica:
    """One ``python -m agent collector`` process (with ``--config``) on 127.0.0.1:0."""

    def __init__(self, config: Path, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.lines: list[str] = []
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the process (ready line and log lines are collected in ``lines``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "agent", "collector", "--port", "0"]
        argv += ["--config", str(self.config), "--data-dir", str(self.data_dir)]
        env = {**os.environ, "LITERAL_AGENT_LOGGING_FORMAT": "json"}
        env.pop("LITERAL_AGENT_CONFIG", None)
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=Path(__file__).parent.parent,
        )
        self._ready.clear()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(READY_PREFIX):
                self.port = int(line[len(READY_PREFIX) :].split(" ", 1)[0].rsplit(":", 1)[1])
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once listening; False when the process exited first."""
        self._ready.wait(timeout)
        if self.port:
            _wait_healthy(self.url)
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _batches(count: int, size: int, overlap: int) -> list[list[dict[str, Any]]]:
    """``count`` batches of ``size`` steps; consecutive batches share ``overlap`` steps."""
    thread = str(uuid.uuid4())
    out = []
    for b in range(count):
        start = b * (size - overlap)
        out.append(
            [
                {
                    "id": f"rep-{i:05d}",
                    "threadId": thread,
                    "type": "tool",
                    "name": f"step {i}",
                    "input": {"content": "x" * 200, "i": i},
                    "metadata": {"batch": b},
                    "scores": [{"name": "s", "type": "AI", "value": i / 1000}],
                }
                for i in range(start, start + size)
            ]
        )
    return out


@pytest.mark.slow
def test_two_collector_processes_ingest_overlapping_batches(pg_url: str, tmp_path: Path) -> None:
    """Two collector processes start at once on one empty database (concurrent migrations),
    then ingest overlapping batches concurrently: every step and score is stored once."""
    config = tmp_path / "collector.toml"
    config.write_text(
        f"[collector]\ndatabase_url = {json.dumps(pg_url)}\napi_keys = [{json.dumps(API_KEY)}]\n"
    )
    replicas = [Replica(config, tmp_path / f"r{n}") for n in range(2)]
    try:
        for replica in replicas:
            replica.launch()
        ready = [replica.wait_ready() for replica in replicas]
        assert all(ready), "\n".join(replicas[0].lines + replicas[1].lines)[-2000:]
        batches = _batches(count=8, size=100, overlap=50)
        # every batch goes to both replicas, in opposite orders, all at once
        plan = [(replicas[0], batches), (replicas[1], list(reversed(batches)))]
        errors: list[str] = []
        barrier = threading.Barrier(len(plan) * 2)

        def ingest(replica: Replica, mine: list[list[dict[str, Any]]]) -> None:
            api = LiteralAPI(api_key=API_KEY, url=replica.url)
            barrier.wait()
            for batch in mine:
                response = api.send_steps([dict(step) for step in batch])
                if not isinstance(response, dict) or "data" not in response:
                    errors.append(f"send_steps failed: {response!r}")
                    continue
                errors.extend(str(v) for v in response["data"].values() if not v["ok"])

        workers = [
            threading.Thread(target=ingest, args=(replica, half))
            for replica, mine in plan
            for half in (mine[::2], mine[1::2])
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == [], "\n".join(replicas[0].lines[-30:] + replicas[1].lines[-30:])
        expected = {step["id"] for batch in batches for step in batch}
        storage = open_storage(pg_url, tmp_path)
        try:
            page = storage.list("step", ListQuery(first=1000))
            more = storage.list("step", ListQuery(first=1000, after=page.cursors[-1]))
            stored = [r["id"] for r in page.items + more.items]
            assert page.total == len(expected) == len(stored) == len(set(stored))
            assert set(stored) == expected
            assert storage.list("score", ListQuery(first=0)).total == len(expected)
            assert storage.list("thread", ListQuery(first=0)).total == 1
            storage.write([Write("step", [{"id": "rep-00000", "name": "after"}])])
        finally:
            storage.close()
        for replica in replicas:  # both replicas read what the other wrote
            api = LiteralAPI(api_key=API_KEY, url=replica.url)
            assert api.get_steps(first=1).total_count == len(expected)
            assert api.get_step("rep-00000").name == "after"  # type: ignore[union-attr]
    finally:
        for replica in replicas:
            replica.stop()


# -- password hygiene and errors ----------------------------------------------------------------


def test_passwords_never_appear_in_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Unreachable or malformed URLs fail with a message that names the host, not the password."""
    from agent.collector._postgres import PostgresError, redact_url

    secret = "s3cr3t-Pa55word"
    urls = [
        f"postgresql://literal:{secret}@127.0.0.1:1/collector",
        f"postgres://literal:{secret}%zz@127.0.0.1:1/collector",
        f"postgresql://literal@127.0.0.1:1/collector?password={secret}&connect_timeout=2",
    ]
    for url in urls:
        with pytest.raises(PostgresError) as info:
            open_storage(url, tmp_path)
        assert secret not in str(info.value) and "127.0.0.1" in str(info.value)
        assert secret not in redact_url(url)
    assert secret not in caplog.text
    assert redact_url("postgresql://u:p%40ss@h:5/d?sslmode=require") == (
        "postgresql://u:***@h:5/d?sslmode=require"
    )


def test_repr_hides_the_password(pg_url: str, tmp_path: Path) -> None:
    """The storage's repr shows the URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_url)
    with_password = urlunsplit(
        (parts.scheme, f"postgres:never-shown@{parts.hostname}:{parts.port}", *parts[2:])
    )
    storage = open_storage(with_password, tmp_path)  # trust auth ignores the password
    try:
        assert "never-shown" not in repr(storage) and "***" in repr(storage)
    finally:
        storage.close()
