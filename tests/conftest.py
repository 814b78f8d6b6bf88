"""Shared fixtures: a real collector on loopback (session and per test), the anyio backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.testing import CollectorThread


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (anyio pytest plugin)."""
    return "asyncio"


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorThread]:
    """One collector (thread, SQLite in a temp dir) shared by the whole session."""
    with CollectorThread(tmp_path_factory.mktemp("collector")) as running:
        yield running


@pytest.fixture
def fresh_collector(tmp_path: Path) -> Iterator[CollectorThread]:
    """A collector of its own for one test (empty database)."""
    with CollectorThread(tmp_path / "collector") as running:
        yield running


@pytest.fixture
def literal_env(collector: CollectorThread, monkeypatch: pytest.MonkeyPatch) -> CollectorThread:
    """Point ``LITERAL_API_KEY`` / ``LITERAL_API_URL`` at the session collector for one test."""
    monkeypatch.setenv("LITERAL_API_KEY", collector.api_key)
    monkeypatch.setenv("LITERAL_API_URL", collector.url)
    monkeypatch.delenv("LITERAL_ENV", raising=False)
    return collector
