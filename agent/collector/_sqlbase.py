"""Dialect-neutral pieces of the SQL storages: row codec, cursors, filter validation.

The SQLite and PostgreSQL storages map the same records to the same columns and accept the
same filters; what differs is only how a condition is spelled. This module holds what does
not depend on the engine (the schema description itself, ``KINDS``/``COMMON``/``snake``,
and the filter field table still live in ``_sqlite_schema``/``_sqlite_query``):

* :class:`RowCodec`: record <-> row parameters (JSON values as compact text, ``createdAt``
  defaulted on insert) and row -> record;
* :func:`encode_cursor` / :func:`decode_cursor`: opaque ``[order key, sequence]`` cursors;
* :func:`checked_value`, :func:`like_pattern`, :func:`split_relation`, :func:`parse_path`:
  validation of one filter, identical error messages on every engine.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from agent.collector._sqlite_query import FieldKind
from agent.collector._sqlite_schema import COMMON, ColumnType, snake
from agent.collector._storage import Filter, JsonText, Record, StorageError
from agent.collector._timefmt import normalize_time

#: Negative operators and their positive twin.
NEGATIVE = {"neq": "eq", "nin": "in", "nilike": "ilike", "nis": "is"}
#: Comparison operators and their SQL spelling.
COMPARE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
#: Every operator a filter may use.
OPERATORS = frozenset({"eq", "neq", "in", "nin", "ilike", "nilike", "is", "nis", *COMPARE})
#: Largest list accepted by ``in`` / ``nin``.
MAX_IN_VALUES = 1000
_PATH_RE = re.compile(r"^[A-Za-z0-9_\-. \[\]]{1,200}$")
_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_RELATION = re.compile(r"\{cond:([^}]+)\}")

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def encode_json(value: Any) -> str:
    """Compact JSON text, as stored in JSON columns."""
    return _json_encoder.encode(value).decode()


def decode_json(text: str | bytes) -> Any:
    """Decode a stored JSON value."""
    return _json_decoder.decode(text)


def encode_cursor(value: Any, seq: int) -> str:
    """An opaque cursor: the row's order key and its insertion sequence."""
    return base64.urlsafe_b64encode(_json_encoder.encode([value, seq])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    """Inverse of :func:`encode_cursor`; raises :class:`StorageError` on a malformed cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, seq = _json_decoder.decode(raw)
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise TypeError
    except Exception as exc:
        raise StorageError(f"Invalid cursor {cursor[:64]!r}") from exc
    return value, seq


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RowCodec:
    """Column order, row parameters and decoding of one kind (``id``, ``createdAt`` first)."""

    def __init__(self, name: str, columns: dict[str, ColumnType]) -> None:
        self.name = name
        self.keys = ["id", "createdAt", *columns]
        self.types: dict[str, ColumnType] = {**COMMON, **columns}
        self.columns = [snake(k) for k in self.keys]
        self.json_keys = frozenset(k for k, t in self.types.items() if t == "json")
        self._json_positions = [i for i, k in enumerate(self.keys) if k in self.json_keys]

    def row_params(self, record: Record, now: str) -> list[Any]:
        """Parameters in column order: JSON encoded (:class:`JsonText` kept verbatim),
        ``createdAt`` defaulted to ``now``."""
        get = record.get
        row = [get(key) for key in self.keys]
        if row[1] is None:
            row[1] = now
        for i in self._json_positions:
            value = row[i]
            if value is not None and type(value) is not JsonText:
                row[i] = _json_encoder.encode(value).decode()
        return row

    def decode(self, row: Sequence[Any]) -> Record:
        """A record from values in column order (JSON columns as text)."""
        json_keys = self.json_keys
        return {
            key: _json_decoder.decode(value) if value is not None and key in json_keys else value
            for key, value in zip(self.keys, row, strict=True)
        }


def split_relation(expr: str) -> tuple[str, str, str] | None:
    """For a ``rel:`` filter expression: (template, placeholder, related column), else None."""
    if not expr.startswith("rel:"):
        return None
    template = expr[4:]
    match = _RELATION.search(template)
    if match is None:
        raise ValueError(f"relation template without {{cond:...}}: {template!r}")
    return template, match.group(0), match.group(1)


def parse_path(flt: Filter, kind: FieldKind) -> list[str]:
    """The keys/indexes of a JSON ``path`` (``a.b[0]`` -> ``["a", "b", "0"]``)."""
    path = flt.path or ""
    if kind != "json" or not _PATH_RE.match(path):
        raise StorageError(f"Invalid path {flt.path!r} for field {flt.field!r}")
    dotted = "." + path  # as SQLite reads it: "$." + path
    tokens = [m for m in _PATH_TOKEN.finditer(dotted)]
    if "".join(m.group(0) for m in tokens) != dotted:
        raise StorageError(f"Invalid path {flt.path!r} for field {flt.field!r}")
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in tokens]


def like_pattern(value: str) -> str:
    """``ilike`` value -> pattern: used as is when it has a wildcard, else ``%value%``."""
    return value if ("%" in value or "_" in value) else f"%{value}%"


def checked_value(kind: FieldKind, flt: Filter) -> Any:
    """Validate the operator and value of one filter; return the value to compare with.

    Dates compared with a ``time`` field are normalised to UTC ``...Z`` text. Raises
    :class:`StorageError` with the message every engine uses.
    """
    op, value = flt.operator, flt.value

    def bad(expected: str) -> StorageError:
        return StorageError(
            f"Operator {op!r} on field {flt.field!r} needs {expected}, got {type(value).__name__}"
        )

    if op not in OPERATORS:
        raise StorageError(f"Unsupported operator {op!r} for field {flt.field!r}")
    if kind == "time" and isinstance(value, str) and (op in COMPARE or op in ("eq", "neq")):
        normalized = normalize_time(value)
        if normalized is None:
            raise StorageError(f"Invalid date {value!r} for field {flt.field!r}")
        value = normalized
    if op in ("eq", "neq"):
        if isinstance(value, list | dict) or value is None:
            raise bad("a scalar value")
    elif op in COMPARE:
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            raise bad("a number or a date")
    elif op in ("ilike", "nilike"):
        if not isinstance(value, str):
            raise bad("a string")
    elif op in ("in", "nin"):
        if not isinstance(value, list) or not value:
            raise bad("a non-empty list")
        if len(value) > MAX_IN_VALUES:
            raise StorageError(f"Too many values for {op!r} (max {MAX_IN_VALUES})")
    elif value is not None and not isinstance(value, bool):  # is / nis
        raise bad("null or a boolean")
    return value
