"""Shared fixtures: a real collector on loopback (session and per test), the anyio backend.

``collector`` (one per session) and ``fresh_collector`` (one per test) run on every storage
engine in the collector's API suites (:data:`EVERY_ENGINE_MODULES`): there they are
parametrised over ``sqlite`` and ``postgres`` through ``collector_engine``; the PostgreSQL
case needs ``LITERAL_TEST_POSTGRES_URL`` (``.ci/run`` sets it) and gets a fresh schema per
fixture instance. Everywhere else (pipeline, daemon, hook suites: they test the agent, not
the storage) they are SQLite. ``sqlite_collector`` / ``fresh_sqlite_collector`` are SQLite
everywhere, for tests that read ``collector.db`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.testing import ENV_TEST_POSTGRES_URL, CollectorThread, pg_database

PG_URL = os.environ.get(ENV_TEST_POSTGRES_URL)
PG_SKIP = "LITERAL_TEST_POSTGRES_URL not set: run via .ci/run"
#: Test modules (name prefixes) whose ``collector``/``fresh_collector`` run on every engine.
EVERY_ENGINE_MODULES = ("test_collector_", "test_api_", "test_interop")
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(not PG_URL, reason=PG_SKIP))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``collector_engine`` over every engine in the collector's API suites."""
    if "collector_engine" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    if module.startswith(EVERY_ENGINE_MODULES):
        metafunc.parametrize("collector_engine", ENGINES, indirect=True, scope="session")


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (anyio pytest plugin)."""
    return "asyncio"


@pytest.fixture(scope="session")
def collector_engine(request: pytest.FixtureRequest) -> str:
    """Storage engine of ``collector``/``fresh_collector``: the parameter, else ``sqlite``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def sqlite_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorThread]:
    """One collector (thread, SQLite in a temp dir) shared by the whole session."""
    with CollectorThread(tmp_path_factory.mktemp("collector")) as running:
        yield running


@pytest.fixture(scope="session")
def collector(
    collector_engine: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CollectorThread]:
    """One collector per engine shared by the session (SQLite: ``sqlite_collector``)."""
    if collector_engine == "sqlite":
        yield request.getfixturevalue("sqlite_collector")
        return
    with (
        pg_database() as url,
        CollectorThread(tmp_path_factory.mktemp("pg-collector"), database_url=url) as running,
    ):
        yield running


@pytest.fixture
def fresh_sqlite_collector(tmp_path: Path) -> Iterator[CollectorThread]:
    """A collector of its own for one test (empty SQLite database in ``tmp_path``)."""
    with CollectorThread(tmp_path / "collector") as running:
        yield running


@pytest.fixture
def fresh_collector(collector_engine: str, tmp_path: Path) -> Iterator[CollectorThread]:
    """A collector of its own for one test (empty database on ``collector_engine``)."""
    if collector_engine == "sqlite":
        with CollectorThread(tmp_path / "collector") as running:
            yield running
        return
    with (
        pg_database() as url,
        CollectorThread(tmp_path / "collector", database_url=url) as running,
    ):
        yield running


@pytest.fixture
def literal_env(collector: CollectorThread, monkeypatch: pytest.MonkeyPatch) -> CollectorThread:
    """Point ``LITERAL_API_KEY`` / ``LITERAL_API_URL`` at the session collector for one test."""
    monkeypatch.setenv("LITERAL_API_KEY", collector.api_key)
    monkeypatch.setenv("LITERAL_API_URL", collector.url)
    monkeypatch.delenv("LITERAL_ENV", raising=False)
    return collector
