"""SQLite implementation of the collector storage (one file, WAL, versioned migrations).

All SQL of the collector lives here. Tables are generated from :data:`KINDS` (wire key ->
column type); JSON values are stored as text. One connection is shared by every thread and
guarded by a lock: SQLite has a single writer anyway, and ingestion writes whole batches in one
transaction with ``executemany``.
"""

from __future__ import annotations

import base64
import builtins
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import msgspec

from agent.collector._storage import (
    DEFAULT_PAGE_SIZE,
    MAX_FIND,
    MAX_PAGE_SIZE,
    Filter,
    Kind,
    ListQuery,
    Page,
    Record,
    StorageError,
    Write,
)
from agent.collector._timefmt import normalize_time, now_iso

ColumnType = Literal["text", "json", "int", "real"]

_COMMON: dict[str, ColumnType] = {"id": "text", "createdAt": "text"}

#: Wire keys of each kind and the type of their column (column name = snake_case key).
KINDS: dict[str, dict[str, ColumnType]] = {
    "participant": {"identifier": "text", "metadata": "json"},
    "thread": {
        "name": "text",
        "metadata": "json",
        "tags": "json",
        "participantId": "text",
        "environment": "text",
    },
    "step": {
        "threadId": "text",
        "parentId": "text",
        "rootRunId": "text",
        "type": "text",
        "name": "text",
        "startTime": "text",
        "endTime": "text",
        "error": "text",
        "input": "json",
        "output": "json",
        "metadata": "json",
        "tags": "json",
        "environment": "text",
    },
    "generation": {
        "stepId": "text",
        "type": "text",
        "promptId": "text",
        "provider": "text",
        "model": "text",
        "error": "text",
        "settings": "json",
        "variables": "json",
        "tags": "json",
        "metadata": "json",
        "tools": "json",
        "tokenCount": "int",
        "inputTokenCount": "int",
        "outputTokenCount": "int",
        "ttFirstToken": "real",
        "tokenThroughputInSeconds": "real",
        "duration": "real",
        "messages": "json",
        "messageCompletion": "json",
        "prompt": "text",
        "completion": "text",
        "environment": "text",
    },
    "score": {
        "name": "text",
        "type": "text",
        "value": "real",
        "label": "text",
        "comment": "text",
        "scorer": "text",
        "tags": "json",
        "stepId": "text",
        "generationId": "text",
        "datasetExperimentItemId": "text",
        "updatedAt": "text",
    },
    "attachment": {
        "threadId": "text",
        "stepId": "text",
        "metadata": "json",
        "mime": "text",
        "name": "text",
        "objectKey": "text",
        "url": "text",
    },
    "dataset": {"name": "text", "description": "text", "metadata": "json", "type": "text"},
    "dataset_item": {
        "datasetId": "text",
        "metadata": "json",
        "input": "json",
        "expectedOutput": "json",
        "intermediarySteps": "json",
        "stepId": "text",
        "generationId": "text",
    },
    "experiment": {
        "name": "text",
        "datasetId": "text",
        "promptExperimentId": "text",
        "params": "json",
    },
    "experiment_item": {
        "datasetExperimentId": "text",
        "experimentRunId": "text",
        "datasetItemId": "text",
        "input": "json",
        "output": "json",
    },
    "prompt_lineage": {"name": "text", "description": "text", "deletedAt": "text"},
    "prompt_version": {
        "lineageId": "text",
        "version": "int",
        "versionDesc": "text",
        "templateMessages": "json",
        "tools": "json",
        "settings": "json",
        "variables": "json",
        "variablesDefaultValues": "json",
        "label": "text",
        "status": "text",
        "tags": "json",
        "type": "text",
        "updatedAt": "text",
    },
    "prompt_experiment": {
        "fromLineageId": "text",
        "fromVersion": "int",
        "scoreTemplateId": "text",
        "templateMessages": "json",
        "settings": "json",
        "tools": "json",
        "variables": "json",
    },
    "prompt_rollout": {"lineageId": "text", "version": "int", "rollout": "int"},
    "file": {"mime": "text", "size": "int"},
}


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", key).lower()


def _sql_type(kind: ColumnType) -> str:
    return {"text": "TEXT", "json": "TEXT", "int": "INTEGER", "real": "REAL"}[kind]


def _create_tables() -> str:
    parts = []
    for table, cols in KINDS.items():
        defs = ["id TEXT PRIMARY KEY NOT NULL", "created_at TEXT NOT NULL"]
        defs += [f"{_snake(k)} {_sql_type(t)}" for k, t in cols.items()]
        parts.append(f"CREATE TABLE {table} ({', '.join(defs)});")
    parts.append("CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);")
    return "\n".join(parts)


#: Schema migrations, applied in order; ``schema_version`` holds how many were applied.
MIGRATIONS: list[str] = [
    _create_tables(),
    """
    CREATE INDEX step_thread ON step (thread_id);
    CREATE INDEX step_parent ON step (parent_id);
    CREATE INDEX step_created ON step (created_at);
    CREATE INDEX thread_created ON thread (created_at);
    CREATE INDEX thread_participant ON thread (participant_id);
    CREATE INDEX participant_identifier ON participant (identifier);
    CREATE INDEX generation_step ON generation (step_id);
    CREATE INDEX generation_created ON generation (created_at);
    CREATE INDEX score_step ON score (step_id);
    CREATE INDEX score_item ON score (dataset_experiment_item_id);
    CREATE INDEX attachment_step ON attachment (step_id);
    CREATE INDEX dataset_item_dataset ON dataset_item (dataset_id);
    CREATE INDEX prompt_lineage_name ON prompt_lineage (name);
    CREATE INDEX prompt_version_lineage ON prompt_version (lineage_id, version);
    CREATE INDEX prompt_rollout_lineage ON prompt_rollout (lineage_id);
    CREATE INDEX dataset_name ON dataset (name);
    """,
]

FieldKind = Literal["text", "num", "time", "json", "list", "bool"]

# Filterable fields: wire filter name -> (SQL expression over alias ``t``, value kind).
# A ``rel:`` prefix marks a to-many relation: the expression is an ``EXISTS`` template whose
# ``{cond}`` receives the condition on the related column ``x``.
_THREAD_STEPS = "EXISTS (SELECT 1 FROM step s WHERE s.thread_id = t.id AND {cond})"
_FILTERS: dict[str, dict[str, tuple[str, FieldKind]]] = {
    "participant": {
        "id": ("t.id", "text"),
        "createdAt": ("t.created_at", "time"),
        "identifier": ("t.identifier", "text"),
        "metadata": ("t.metadata", "json"),
        "threadCount": ("(SELECT COUNT(*) FROM thread th WHERE th.participant_id = t.id)", "num"),
        "lastEngaged": (
            "(SELECT MAX(th.created_at) FROM thread th WHERE th.participant_id = t.id)",
            "time",
        ),
    },
    "thread": {
        "id": ("t.id", "text"),
        "createdAt": ("t.created_at", "time"),
        "name": ("t.name", "text"),
        "metadata": ("t.metadata", "json"),
        "tags": ("t.tags", "list"),
        "environment": ("t.environment", "text"),
        "participantId": ("t.participant_id", "text"),
        "participantIdentifiers": (
            "(SELECT p.identifier FROM participant p WHERE p.id = t.participant_id)",
            "text",
        ),
        "stepType": ("rel:" + _THREAD_STEPS.replace("{cond}", "{cond:s.type}"), "text"),
        "stepName": ("rel:" + _THREAD_STEPS.replace("{cond}", "{cond:s.name}"), "text"),
        "stepOutput": ("rel:" + _THREAD_STEPS.replace("{cond}", "{cond:s.output}"), "json"),
        "scoreValue": (
            "rel:EXISTS (SELECT 1 FROM score sc JOIN step s ON sc.step_id = s.id"
            " WHERE s.thread_id = t.id AND {cond:sc.value})",
            "num",
        ),
    },
    "step": {
        "id": ("t.id", "text"),
        "createdAt": ("t.created_at", "time"),
        "name": ("t.name", "text"),
        "type": ("t.type", "text"),
        "input": ("t.input", "json"),
        "output": ("t.output", "json"),
        "metadata": ("t.metadata", "json"),
        "startTime": ("t.start_time", "time"),
        "endTime": ("t.end_time", "time"),
        "parentId": ("t.parent_id", "text"),
        "threadId": ("t.thread_id", "text"),
        "rootRunId": ("t.root_run_id", "text"),
        "error": ("t.error", "text"),
        "tags": ("t.tags", "list"),
        "environment": ("t.environment", "text"),
        "participantIdentifier": (
            "(SELECT p.identifier FROM thread th JOIN participant p ON p.id = th.participant_id"
            " WHERE th.id = t.thread_id)",
            "text",
        ),
    },
    "score": {
        "id": ("t.id", "text"),
        "createdAt": ("t.created_at", "time"),
        "name": ("t.name", "text"),
        "tags": ("t.tags", "list"),
        "value": ("t.value", "num"),
        "type": ("t.type", "text"),
        "comment": ("t.comment", "text"),
        "stepId": ("t.step_id", "text"),
        "datasetExperimentItemId": ("t.dataset_experiment_item_id", "text"),
        "participant": (
            "(SELECT p.identifier FROM step s JOIN thread th ON th.id = s.thread_id"
            " JOIN participant p ON p.id = th.participant_id WHERE s.id = t.step_id)",
            "text",
        ),
    },
    "generation": {
        "id": ("t.id", "text"),
        "createdAt": ("t.created_at", "time"),
        "model": ("t.model", "text"),
        "provider": ("t.provider", "text"),
        "duration": ("t.duration", "num"),
        "tokenCount": ("t.token_count", "num"),
        "error": ("t.error", "text"),
        "tags": ("t.tags", "list"),
        "type": ("t.type", "text"),
        "stepId": ("t.step_id", "text"),
        "promptLineage": (
            "(SELECT l.name FROM prompt_version v JOIN prompt_lineage l ON l.id = v.lineage_id"
            " WHERE v.id = t.prompt_id)",
            "text",
        ),
        "promptVersion": (
            "(SELECT v.version FROM prompt_version v WHERE v.id = t.prompt_id)",
            "num",
        ),
        "score": (
            "rel:EXISTS (SELECT 1 FROM score sc WHERE sc.step_id = t.step_id AND {cond:sc.value})",
            "num",
        ),
        "participant": (
            "(SELECT p.identifier FROM step s JOIN thread th ON th.id = s.thread_id"
            " JOIN participant p ON p.id = th.participant_id WHERE s.id = t.step_id)",
            "text",
        ),
    },
}

# Orderable columns: wire column -> (SQL expression, is numeric).
_ORDERS: dict[str, dict[str, tuple[str, bool]]] = {
    "thread": {
        "createdAt": ("t.created_at", False),
        "tokenCount": (
            "(SELECT COALESCE(SUM(g.token_count), 0) FROM generation g JOIN step s"
            " ON s.id = g.step_id WHERE s.thread_id = t.id)",
            True,
        ),
        "participant": (
            "(SELECT p.identifier FROM participant p WHERE p.id = t.participant_id)",
            False,
        ),
    },
    "step": {
        "createdAt": ("t.created_at", False),
        "startTime": ("t.start_time", False),
        "endTime": ("t.end_time", False),
    },
    "score": {"createdAt": ("t.created_at", False), "value": ("t.value", True)},
    "generation": {
        "createdAt": ("t.created_at", False),
        "tokenCount": ("t.token_count", True),
        "model": ("t.model", False),
        "provider": ("t.provider", False),
        "duration": ("t.duration", True),
        "participant": (_FILTERS["generation"]["participant"][0], False),
    },
}

_NEGATIVE = {"neq": "eq", "nin": "in", "nilike": "ilike", "nis": "is"}
_COMPARE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_PATH_RE = re.compile(r"^[A-Za-z0-9_\-. \[\]]{1,200}$")


class _Table:
    """Pre-built SQL and codecs of one kind."""

    def __init__(self, name: str, columns: dict[str, ColumnType]) -> None:
        self.name = name
        self.keys = ["id", "createdAt", *columns]
        self.types: dict[str, ColumnType] = {**_COMMON, **columns}
        self.columns = [_snake(k) for k in self.keys]
        self.json_keys = frozenset(k for k, t in self.types.items() if t == "json")
        cols = ", ".join(self.columns)
        marks = ", ".join("?" * len(self.columns))
        updates = ", ".join(
            f"{c} = COALESCE(excluded.{c}, {name}.{c})"
            for c in self.columns
            if c not in ("id", "created_at")
        )
        self.select = f"SELECT t.rowid, {', '.join('t.' + c for c in self.columns)} FROM {name} t"
        self.merge = (
            f"INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}"
        )
        self.insert_missing = (
            f"INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT(id) DO NOTHING"
        )
        self.delete = f"DELETE FROM {name} WHERE id = ?"

    def row_params(self, record: Record, now: str) -> tuple[Any, ...]:
        out: list[Any] = []
        json_keys = self.json_keys
        get = record.get
        for key in self.keys:
            value = get(key)
            if value is None:
                if key == "createdAt":
                    value = now
            elif key in json_keys:
                value = _encode_json(value)
            out.append(value)
        return tuple(out)

    def decode(self, row: Sequence[Any]) -> Record:
        record: Record = {}
        json_keys = self.json_keys
        for key, value in zip(self.keys, row[1:], strict=True):
            record[key] = _decode_json(value) if value is not None and key in json_keys else value
        return record


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def _encode_json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


def _decode_json(text: str) -> Any:
    return _json_decoder.decode(text)


def _encode_cursor(value: Any, rowid: int) -> str:
    return base64.urlsafe_b64encode(_json_encoder.encode([value, rowid])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, rowid = _json_decoder.decode(raw)
        if not isinstance(rowid, int):
            raise TypeError
    except Exception as exc:
        raise StorageError(f"Invalid cursor {cursor[:64]!r}") from exc
    return value, rowid


class SQLiteStorage:
    """Storage in one SQLite file (``collector.db``) with WAL and ``synchronous=NORMAL``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._tables = {name: _Table(name, cols) for name, cols in KINDS.items()}
        migrate(self._conn)
        self._project_id = self.setting("project_id", f"project-{uuid.uuid4()}")

    # -- Storage protocol ---------------------------------------------------------------

    @property
    def project_id(self) -> str:
        return self._project_id

    def setting(self, key: str, default: str) -> str:
        with self._lock, self._transaction():
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row[0])
            self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, default))
            return default

    def get(self, kind: Kind, ids: Sequence[str]) -> dict[str, Record]:
        table = self._tables[kind]
        out: dict[str, Record] = {}
        unique = list(dict.fromkeys(ids))
        with self._lock:
            for chunk in _chunks(unique, 500):
                marks = ", ".join("?" * len(chunk))
                rows = self._conn.execute(f"{table.select} WHERE t.id IN ({marks})", chunk)
                for row in rows:
                    record = table.decode(row)
                    out[record["id"]] = record
        return out

    def find(
        self,
        kind: Kind,
        key: str,
        values: Sequence[Any],
        *,
        oldest_first: bool = False,
        limit: int = MAX_FIND,
    ) -> list[Record]:
        table = self._tables[kind]
        if key not in table.types:
            raise StorageError(f"Unknown key {key!r} for {kind}")
        column = _snake(key)
        direction = "ASC" if oldest_first else "DESC"
        limit = max(0, min(limit, MAX_FIND))
        out: list[Record] = []
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(values)), 500):
                marks = ", ".join("?" * len(chunk))
                sql = (
                    f"{table.select} WHERE t.{column} IN ({marks})"
                    f" ORDER BY t.created_at {direction}, t.rowid {direction} LIMIT ?"
                )
                out.extend(table.decode(r) for r in self._conn.execute(sql, [*chunk, limit]))
        if len(out) > limit or len(values) > 500:
            out.sort(key=lambda r: r["createdAt"], reverse=not oldest_first)
            del out[limit:]
        return out

    def list(self, kind: Kind, query: ListQuery) -> Page:
        table = self._tables[kind]
        where, params = self._where(kind, query.filters)
        order_expr, numeric = self._order(kind, query.order_column)
        sentinel = "-1e308" if numeric else "''"
        key_expr = f"COALESCE({order_expr}, {sentinel})"
        first = DEFAULT_PAGE_SIZE if query.first is None else query.first
        first = max(0, min(first, MAX_PAGE_SIZE))
        descending = query.descending
        backwards = query.before is not None and query.after is None
        cursor = query.before if backwards else query.after
        clauses = list(where)
        page_params = list(params)
        if cursor is not None:
            value, rowid = _decode_cursor(cursor)
            forward_desc = descending != backwards
            op = "<" if forward_desc else ">"
            clauses.append(f"({key_expr}, t.rowid) {op} (?, ?)")
            page_params += [value, rowid]
        scan_desc = descending != backwards
        direction = "DESC" if scan_desc else "ASC"
        where_sql = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT t.rowid, {', '.join('t.' + c for c in table.columns)}, {key_expr}"
            f" FROM {kind} t{where_sql} ORDER BY {key_expr} {direction}, t.rowid {direction}"
            " LIMIT ?"
        )
        count_where = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            try:
                rows = self._conn.execute(sql, [*page_params, first + 1]).fetchall()
                total = self._conn.execute(
                    f"SELECT COUNT(*) FROM {kind} t{count_where}", params
                ).fetchone()[0]
            except sqlite3.Error as exc:
                raise StorageError(f"Invalid query: {exc}") from exc
        more = len(rows) > first
        rows = rows[:first]
        if backwards:
            rows.reverse()
        items = [table.decode(r[:-1]) for r in rows]
        cursors = [_encode_cursor(r[-1], r[0]) for r in rows]
        if backwards:
            return Page(items, cursors, int(total), has_next=True, has_previous=more)
        return Page(items, cursors, int(total), has_next=more, has_previous=cursor is not None)

    def write(self, writes: Sequence[Write]) -> None:
        now = now_iso()
        with self._lock, self._transaction():
            for group in writes:
                if not group.records:
                    continue
                table = self._tables[group.kind]
                if group.mode == "delete":
                    self._conn.executemany(table.delete, [(r["id"],) for r in group.records])
                    continue
                sql = table.merge if group.mode == "merge" else table.insert_missing
                self._conn.executemany(sql, [table.row_params(r, now) for r in group.records])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- helpers -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _order(self, kind: str, column: str) -> tuple[str, bool]:
        orders = _ORDERS.get(kind, {"createdAt": ("t.created_at", False)})
        if column not in orders:
            allowed = ", ".join(sorted(orders))
            raise StorageError(f"Cannot order {kind} by {column!r} (allowed: {allowed})")
        return orders[column]

    def _where(
        self, kind: str, filters: Sequence[Filter]
    ) -> tuple[builtins.list[str], builtins.list[Any]]:
        fields = _FILTERS.get(kind, {"id": ("t.id", "text"), "createdAt": ("t.created_at", "time")})
        clauses: list[str] = []
        params: list[Any] = []
        for flt in filters:
            if flt.field not in fields:
                allowed = ", ".join(sorted(fields))
                raise StorageError(
                    f"Unknown filter field {flt.field!r} for {kind} (allowed: {allowed})"
                )
            expr, field_kind = fields[flt.field]
            sql, values = _condition(expr, field_kind, flt)
            clauses.append(sql)
            params += values
        return clauses, params


def _condition(expr: str, kind: FieldKind, flt: Filter) -> tuple[str, list[Any]]:
    """SQL for one filter; ``rel:`` expressions become (NOT) EXISTS over the relation."""
    if expr.startswith("rel:"):
        template = expr[4:]
        match = re.search(r"\{cond:([^}]+)\}", template)
        assert match is not None
        inner_expr = match.group(1)
        op = flt.operator
        negative = op in _NEGATIVE
        positive = Filter(flt.field, _NEGATIVE.get(op, op), flt.value, flt.path)
        inner, params = _simple_condition(inner_expr, kind, positive)
        sql = template.replace(match.group(0), inner)
        return (f"NOT {sql}" if negative else sql), params
    return _simple_condition(expr, kind, flt)


def _simple_condition(expr: str, kind: FieldKind, flt: Filter) -> tuple[str, list[Any]]:
    op, value = flt.operator, flt.value
    params: list[Any] = []
    if flt.path is not None:
        if kind != "json" or not _PATH_RE.match(flt.path):
            raise StorageError(f"Invalid path {flt.path!r} for field {flt.field!r}")
        expr = f"json_extract({expr}, ?)"
        path = flt.path if flt.path.startswith("$") else "$." + flt.path
        params.append(path)
    elif kind == "json" and op in ("eq", "neq", "ilike", "nilike"):
        expr = f"CAST({expr} AS TEXT)"

    def bad(expected: str) -> StorageError:
        return StorageError(
            f"Operator {op!r} on field {flt.field!r} needs {expected}, got {type(value).__name__}"
        )

    if kind == "time" and isinstance(value, str) and op in _COMPARE | {"eq": "", "neq": ""}:
        normalized = normalize_time(value)
        if normalized is None:
            raise StorageError(f"Invalid date {value!r} for field {flt.field!r}")
        value = normalized
    if op in ("eq", "neq"):
        if isinstance(value, list | dict) or value is None:
            raise bad("a scalar value")
        if op == "eq":
            return f"{expr} = ?", [*params, value]
        return f"({expr} IS NULL OR {expr} <> ?)", [*params, *params, value]
    if op in _COMPARE:
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            raise bad("a number or a date")
        return f"{expr} {_COMPARE[op]} ?", [*params, value]
    if op in ("ilike", "nilike"):
        if not isinstance(value, str):
            raise bad("a string")
        pattern = value if ("%" in value or "_" in value) else f"%{value}%"
        if op == "ilike":
            return f"{expr} LIKE ?", [*params, pattern]
        return f"({expr} IS NULL OR {expr} NOT LIKE ?)", [*params, *params, pattern]
    if op in ("in", "nin"):
        if not isinstance(value, list) or not value:
            raise bad("a non-empty list")
        if len(value) > 1000:
            raise StorageError(f"Too many values for {op!r} (max 1000)")
        marks = ", ".join("?" * len(value))
        if kind == "list":
            sql = f"EXISTS (SELECT 1 FROM json_each({expr}) j WHERE j.value IN ({marks}))"
        else:
            sql = f"{expr} IN ({marks})"
        if op == "nin":
            return f"NOT {sql}" if kind == "list" else f"({expr} IS NULL OR NOT {sql})", (
                [*params, *value] if kind == "list" else [*params, *params, *value]
            )
        return sql, [*params, *value]
    if op in ("is", "nis"):
        if value is None:
            return f"{expr} IS {'NOT ' if op == 'nis' else ''}NULL", params
        if isinstance(value, bool):
            test = "=" if op == "is" else "<>"
            return f"{expr} {test} ?", [*params, int(value)]
        raise bad("null or a boolean")
    raise StorageError(f"Unsupported operator {op!r} for field {flt.field!r}")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Apply the pending :data:`MIGRATIONS` (up to ``target``); return the schema version."""
    target = len(MIGRATIONS) if target is None else target
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    version = 0 if row is None else int(row[0])
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    while version < target:
        script = MIGRATIONS[version]
        statements = [s for s in script.split(";") if s.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            version += 1
            conn.execute("UPDATE schema_version SET version = ?", (version,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return version


def open_sqlite(data_dir: str | Path) -> SQLiteStorage:
    """Open (creating and migrating as needed) ``<data_dir>/collector.db``."""
    return SQLiteStorage(Path(data_dir) / "collector.db")
