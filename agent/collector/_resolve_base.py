"""Shared pieces of the resolvers: request context, storage helpers, generic list/get/delete.

Resolvers are synchronous (they run in a worker thread, never on the event loop) and see the
request through :class:`RequestContext`. Objects are wire-shaped dicts, so most fields use the
default resolver.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from graphql import GraphQLError, GraphQLResolveInfo

from agent.collector._ingest import InvalidValueError
from agent.collector._storage import (
    MAX_PAGE_SIZE,
    Filter,
    Kind,
    ListQuery,
    Record,
    Storage,
    StorageError,
    Write,
)

Resolver = Callable[..., Any]
Info: TypeAlias = "GraphQLResolveInfo[Any]"

#: Most steps returned inside one thread, and most descendants copied by addStepToDataset.
MAX_NESTED = 1000
MAX_FILTERS = 50

# Serialises read-then-write sequences (get-or-create, version numbering) within a process.
GET_OR_CREATE = threading.Lock()


@dataclass(slots=True)
class RequestContext:
    """What a resolver knows about the request."""

    storage: Storage
    environment: str
    base_url: str
    file_url: Callable[[str], str]


def request_context(info: Info) -> RequestContext:
    ctx = info.context
    assert isinstance(ctx, RequestContext)
    return ctx


def new_id() -> str:
    return str(uuid.uuid4())


def one(storage: Storage, kind: Kind, id_: str | None) -> Record | None:
    if not id_:
        return None
    return storage.get(kind, [id_]).get(id_)


def require(storage: Storage, kind: Kind, id_: str, label: str) -> Record:
    record = one(storage, kind, id_)
    if record is None:
        raise GraphQLError(f"{label} {id_!r} not found")
    return record


def save(storage: Storage, kind: Kind, record: Record) -> Record:
    storage.write([Write(kind, [record])])
    saved = one(storage, kind, record["id"])
    assert saved is not None
    return saved


def checked(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (InvalidValueError, StorageError) as exc:
        raise GraphQLError(str(exc)) from exc


# -- lists -----------------------------------------------------------------------------


def list_query(kwargs: dict[str, Any]) -> ListQuery:
    raw_filters = kwargs.get("filters") or []
    if len(raw_filters) > MAX_FILTERS:
        raise GraphQLError(f"Too many filters (max {MAX_FILTERS})")
    filters = tuple(
        Filter(f["field"], f["operator"], f.get("value"), f.get("path")) for f in raw_filters
    )
    order = kwargs.get("orderBy") or {}
    first = kwargs.get("first")
    if first is not None and (first < 0 or first > MAX_PAGE_SIZE):
        raise GraphQLError(f"first must be between 0 and {MAX_PAGE_SIZE}")
    return ListQuery(
        filters=filters,
        order_column=order.get("column", "createdAt"),
        descending=order.get("direction", "DESC") != "ASC",
        first=first,
        after=kwargs.get("after"),
        before=kwargs.get("before"),
    )


def connection(info: Info, kind: Kind, kwargs: dict[str, Any]) -> Record:
    storage = request_context(info).storage
    page = checked(lambda: storage.list(kind, list_query(kwargs)))
    return {
        "pageInfo": {
            "startCursor": page.cursors[0] if page.cursors else None,
            "endCursor": page.cursors[-1] if page.cursors else None,
            "hasNextPage": page.has_next,
            "hasPreviousPage": page.has_previous,
        },
        "totalCount": page.total,
        "edges": [{"cursor": c, "node": n} for c, n in zip(page.cursors, page.items, strict=True)],
    }


def lister(kind: Kind) -> Resolver:
    def resolve(_: Any, info: Info, **kwargs: Any) -> Record:
        return connection(info, kind, kwargs)

    return resolve


def getter(kind: Kind, arg: str = "id") -> Resolver:
    def resolve(_: Any, info: Info, **kwargs: Any) -> Record | None:
        return one(request_context(info).storage, kind, kwargs.get(arg))

    return resolve


def deleter(
    kind: Kind, cascade: Callable[[Storage, Record], list[Write]] | None = None
) -> Resolver:
    def resolve(_: Any, info: Info, id: str) -> Record | None:
        storage = request_context(info).storage
        record = one(storage, kind, id)
        if record is None:
            return None
        extra = cascade(storage, record) if cascade else []
        storage.write([*extra, Write(kind, [record], "delete")])
        return record

    return resolve


def step_children(storage: Storage, step_ids: list[str]) -> list[Write]:
    return [
        Write("score", storage.find("score", "stepId", step_ids), "delete"),
        Write("attachment", storage.find("attachment", "stepId", step_ids), "delete"),
        Write("generation", storage.find("generation", "stepId", step_ids), "delete"),
    ]


def cascade_thread(storage: Storage, thread: Record) -> list[Write]:
    steps = storage.find("step", "threadId", [thread["id"]])
    return [*step_children(storage, [s["id"] for s in steps]), Write("step", steps, "delete")]


def cascade_step(storage: Storage, step: Record) -> list[Write]:
    return step_children(storage, [step["id"]])


def creator(kind: Kind) -> Resolver:
    def resolve(_: Any, info: Info, **kwargs: Any) -> Record:
        return save(request_context(info).storage, kind, {**kwargs, "id": new_id()})

    return resolve


def related(kind: Kind, key: str) -> Resolver:
    def resolve(obj: Record, info: Info) -> Record | None:
        return one(request_context(info).storage, kind, obj.get(key))

    return resolve
