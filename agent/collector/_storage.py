"""The collector's storage interface: the only thing the GraphQL layer and the REST routes call.

Records are plain dicts shaped like the wire objects (camelCase keys, JSON values decoded).
Every record belongs to one *kind* (a table). A backend maps wire keys to its own columns,
stores JSON values as text, and implements filtering, ordering and cursor pagination.

Semantics every backend must keep:

* ``write`` applies all its :class:`Write` groups in **one transaction**, in order.
* ``merge`` upserts by ``id``: a new id inserts the record; an existing id updates only the
  keys whose value is not ``None`` (absent or ``None`` = keep). ``createdAt`` is set by the
  backend on insert when the record has none, and never changes afterwards.
* ``insert_missing`` inserts records whose id is unknown and leaves existing ones untouched.
* ``delete`` removes the records with the given ids (other keys are ignored).
* A JSON-typed value may be given as :class:`JsonText` (stored as is) or as a decoded value.
* Lists are newest first (``createdAt`` descending) unless an order is given; ties are broken
  by insertion order. Cursors are opaque strings produced by the backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Record = dict[str, Any]

Kind = Literal[
    "participant",
    "thread",
    "step",
    "generation",
    "score",
    "attachment",
    "dataset",
    "dataset_item",
    "experiment",
    "experiment_item",
    "prompt_lineage",
    "prompt_version",
    "prompt_experiment",
    "prompt_rollout",
    "file",
]

WriteMode = Literal["merge", "insert_missing", "delete"]

#: Page size used when a list query gives no ``first``.
DEFAULT_PAGE_SIZE = 100
#: Largest page a list query may ask for.
MAX_PAGE_SIZE = 1000
#: Largest number of records :meth:`Storage.find` returns.
MAX_FIND = 10_000


class JsonText(str):
    """A JSON value already encoded as text; a write stores it verbatim (it must be valid JSON).

    Lets the ingest fast path keep the client's JSON for ``input``/``output``/``metadata``
    instead of decoding and re-encoding it. Reads always return decoded values.
    """

    __slots__ = ()


class StorageError(Exception):
    """A query the backend cannot answer (unknown filter field, bad operator, bad cursor)."""


@dataclass(frozen=True, slots=True)
class Filter:
    """One filter of a list query (``{"field", "operator", "value", "path"?}`` on the wire)."""

    field: str
    operator: str
    value: Any = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Filters (AND-combined), order and cursor window of a list query."""

    filters: tuple[Filter, ...] = ()
    order_column: str = "createdAt"
    descending: bool = True
    first: int | None = None
    after: str | None = None
    before: str | None = None


@dataclass(slots=True)
class Page:
    """One page of a list: records with their cursors, and the total matching the filters."""

    items: list[Record]
    cursors: list[str]
    total: int
    has_next: bool
    has_previous: bool


@dataclass(slots=True)
class Write:
    """A group of records of one kind written with one mode (see the module docstring)."""

    kind: Kind
    records: list[Record] = field(default_factory=list)
    mode: WriteMode = "merge"


class Storage(Protocol):
    """Persistence of the collector (one project per store). Methods are blocking."""

    @property
    def project_id(self) -> str:
        """The id of the store's project (stable across restarts)."""
        ...

    #: Whether collectors on other machines may serve the same store (a database server):
    #: then nothing a request needs may live on one replica's disk (uploaded bytes included).
    shared: bool

    def setting(self, key: str, default: str) -> str:
        """Return the stored setting ``key``; store and return ``default`` when absent."""
        ...

    def delete_settings(self, low: str, high: str) -> int:
        """Delete the settings whose key ``k`` has ``low <= k < high``; return how many."""
        ...

    def get(self, kind: Kind, ids: Sequence[str]) -> dict[str, Record]:
        """Return the records with these ids (missing ids are simply absent)."""
        ...

    def find(
        self,
        kind: Kind,
        key: str,
        values: Sequence[Any],
        *,
        oldest_first: bool = False,
        limit: int = MAX_FIND,
    ) -> list[Record]:
        """Return records whose wire key ``key`` equals one of ``values`` (newest first)."""
        ...

    def list(self, kind: Kind, query: ListQuery) -> Page:
        """Filter, order and paginate; raises :class:`StorageError` on an invalid query."""
        ...

    def write(self, writes: Sequence[Write]) -> None:
        """Apply every group in one transaction."""
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...
