"""The public namespace: every exported name resolves, and `__all__` matches the exports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import agent


def test_every_exported_name_resolves() -> None:
    """Each name of __all__ imports from its private module (a typo or a missing module fails)."""
    for name in agent.__all__:
        assert getattr(agent, name) is not None, name


def test_all_is_sorted_and_matches_type_checking_imports() -> None:
    """__all__ is sorted, and the TYPE_CHECKING block imports exactly the exported names."""
    assert agent.__all__ == sorted(agent.__all__)
    assert set(agent.__all__) == {*agent._EXPORTS, "__version__"}
    tree = ast.parse(Path(agent.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    imported.update(alias.name for alias in stmt.names)
    assert imported == set(agent.__all__) - {"__version__"}


def test_unknown_attribute_raises_attribute_error() -> None:
    """A name that is not exported is an AttributeError, as for any module."""
    try:
        agent.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_agent_is_cheap() -> None:
    """`import agent` does not pull in httpx, the pipeline or the collector (hot-path users)."""
    code = (
        "import sys, agent; "
        "print(sorted(m for m in ('httpx', 'agent.pipeline', 'graphql') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_help_and_python_m_agent() -> None:
    """`python -m agent --help` lists the sub-commands."""
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("collector", "run", "up", "status", "flush", "spool", "send"):
        assert command in out.stdout
