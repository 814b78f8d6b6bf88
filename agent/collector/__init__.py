"""Self-hosted, Literal-AI-compatible collector: the ASGI app, its storage and its command.

Public names (imported lazily, so that importing a storage module does not pull in the web
stack):

* :func:`create_app` - the Starlette app over a storage (``agent.collector._app``).
* :class:`Storage` - the storage interface the GraphQL layer calls (``._storage``), with
  :class:`Write`, :class:`ListQuery`, :class:`Filter`, :class:`Page`, :class:`JsonText`.
* :class:`SQLiteStorage` / :func:`open_sqlite` - the SQLite implementation (``._sqlite``).
* :func:`open_storage` - storage from a ``database_url`` (SQLite or PostgreSQL, ``._backends``).

Run it with ``literal-agent collector``; in tests use :mod:`agent.testing`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Filter",
    "JsonText",
    "ListQuery",
    "Page",
    "SQLiteStorage",
    "Storage",
    "Write",
    "create_app",
    "open_sqlite",
    "open_storage",
]

_WHERE = {
    "Filter": "_storage",
    "JsonText": "_storage",
    "ListQuery": "_storage",
    "Page": "_storage",
    "Storage": "_storage",
    "Write": "_storage",
    "SQLiteStorage": "_sqlite",
    "open_sqlite": "_sqlite",
    "create_app": "_app",
    "open_storage": "_backends",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'agent.collector' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agent.collector.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
