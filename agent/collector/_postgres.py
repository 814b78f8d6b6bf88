"""PostgreSQL implementation of the collector storage (psycopg 3, a connection pool).

Same tables, columns, migrations and semantics as :mod:`agent.collector._sqlite`, so any
number of stateless collector replicas can serve one database:

* Tables come from the same :data:`~agent.collector._sqlite.KINDS`. Text columns use the
  ``"C"`` collation (byte order and ASCII-only case folding, as SQLite); JSON columns are
  ``json`` (the text as sent, so text filters on JSON match SQLite's exactly); an identity
  column ``seq`` gives the insertion order that ties are broken by and cursors carry.
* Migrations run in one transaction holding ``pg_advisory_xact_lock``: replicas starting at
  once apply each migration exactly once, and the project id is created once under the lock.
* ``merge`` is ``INSERT ... ON CONFLICT (id) DO UPDATE SET c = COALESCE(EXCLUDED.c, t.c)``,
  ``insert_missing`` is ``ON CONFLICT DO NOTHING``: concurrent ingest of the same step from
  two replicas stores one row. A batch is sent with ``executemany`` in pipeline mode (one
  round trip per write, one transaction).
* A call is redone when PostgreSQL rolled it back for a deadlock (overlapping batches in
  opposite orders) or when its pooled connection turns out dead (server restart, failover).

The database URL may carry a password; it never appears in errors or logs (see
:func:`redact_url`).
"""

from __future__ import annotations

import builtins
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from agent._logging import register_secret
from agent.collector._backends import StorageOpenError, redact_url, url_secrets
from agent.collector._pg_query import as_text, order_key, pg_text, where_clauses
from agent.collector._pg_schema import migrate
from agent.collector._sqlbase import RowCodec, decode_cursor, encode_cursor
from agent.collector._sqlite_schema import KINDS, ColumnType, snake
from agent.collector._storage import (
    DEFAULT_PAGE_SIZE,
    MAX_FIND,
    MAX_PAGE_SIZE,
    Kind,
    ListQuery,
    Page,
    Record,
    StorageError,
    Write,
)
from agent.collector._timefmt import now_iso

#: Seconds to wait for the first connection when opening the storage (unless the URL's
#: ``connect_timeout`` says otherwise).
CONNECT_TIMEOUT = 10.0
#: Attempts of one storage call when PostgreSQL aborts it for a deadlock or serialization
#: failure, or its connection turns out dead (see :meth:`PostgresStorage._run`).
ATTEMPTS = 5
#: Errors after which PostgreSQL has rolled the whole transaction back.
_ROLLED_BACK = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_T = TypeVar("_T")

log = structlog.get_logger(__name__)


_ARRAY_TYPES: dict[ColumnType, str] = {
    "text": "text[]",
    "json": "text[]",
    "int": "bigint[]",
    "real": "float8[]",
    "blob": "bytea[]",
}


class PostgresError(StorageOpenError):
    """The database cannot be reached or prepared (message free of the URL's password)."""


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Per connection: JSON columns load as text (decoded once, with msgspec)."""
    conn.adapters.register_loader("json", TextLoader)


class _Table(RowCodec):
    """Pre-built SQL of one kind."""

    def __init__(self, name: str, columns: dict[str, ColumnType]) -> None:
        super().__init__(name, columns)
        cols = ", ".join(self.columns)
        marks = ", ".join(["%s"] * len(self.columns))
        updates = ", ".join(
            f"{c} = COALESCE(EXCLUDED.{c}, {name}.{c})"
            for c in self.columns
            if c not in ("id", "created_at")
        )
        self.select_list = ", ".join("t." + c for c in self.columns)
        self.select = f"SELECT t.seq, {self.select_list} FROM {name} t"
        self.merge = (
            f"INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        self.insert_missing = (
            f"INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"
        )
        self.delete = f"DELETE FROM {name} WHERE id = ANY(%s::text[])"
        # Numeric columns get Python numbers of one type (psycopg dumps per value type);
        # text columns get str without NUL (see pg_text).
        self.casts: list[tuple[int, Callable[[Any], Any]]] = [
            (i, int if self.types[k] == "int" else float)
            for i, k in enumerate(self.keys)
            if self.types[k] in ("int", "real")
        ]
        self.text_positions = [i for i, k in enumerate(self.keys) if self.types[k] == "text"]

    def params(self, record: Record, now: str) -> list[Any]:
        row = self.row_params(record, now)
        for index, cast in self.casts:
            value = row[index]
            if value is not None and type(value) is not cast:
                row[index] = cast(value)
        for index in self.text_positions:
            value = row[index]
            if type(value) is str:
                if "\x00" in value:
                    row[index] = pg_text(value)
            elif value is not None:
                row[index] = as_text(value)
        return row


class PostgresStorage:
    """Storage in one PostgreSQL database, shared by any number of collector replicas."""

    shared = True  # replicas on several machines: uploaded bytes live in the database

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
    ) -> None:
        self._redacted = redact_url(url)
        self._secrets = url_secrets(url)
        for secret in self._secrets:
            register_secret(secret)  # masked in every log line from now on
        self._tables = {name: _Table(name, cols) for name, cols in KINDS.items()}
        self._closed = threading.Event()
        #: Calls redone after a deadlock, serialization failure or dead connection.
        self.retried = 0
        self._stats_lock = threading.Lock()
        try:
            conninfo = url
            if "connect_timeout" not in conninfo_to_dict(url):
                conninfo = make_conninfo(url, connect_timeout=int(CONNECT_TIMEOUT))
            with psycopg.connect(conninfo) as conn:
                _configure(conn)
                self._project_id = migrate(conn)
        except psycopg.Error as exc:
            raise PostgresError(
                f"cannot open PostgreSQL storage {self._redacted}: {self._scrub(str(exc))}"
            ) from None
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True},
            configure=_configure,
            name="collector",
            open=True,
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work`` on a pooled connection; redo it when that is safe.

        Redone: a transaction PostgreSQL aborted for a deadlock or serialization failure
        (rolled back whole), and work on a connection that turned out dead (server restart,
        failover, idle timeout; the pool is then checked so the other dead connections go
        too). Every write is an idempotent upsert or delete, so redoing one whose COMMIT
        was lost leaves the same rows.
        """
        for attempt in range(1, ATTEMPTS + 1):
            if self._closed.is_set():
                raise StorageError("storage is closed")
            used: psycopg.Connection[Any] | None = None
            try:
                with self._pool.connection() as conn:
                    used = conn
                    return work(conn)
            except psycopg.OperationalError as exc:
                lost = used is not None and (used.broken or used.closed)
                if attempt == ATTEMPTS or not (lost or isinstance(exc, _ROLLED_BACK)):
                    raise
                reason = "connection lost" if lost else type(exc).__name__
                with self._stats_lock:
                    self.retried += 1
                log.info("postgres work redone", attempt=attempt, reason=reason)
                if lost:
                    self._pool.check()
                else:
                    time.sleep(random.uniform(0, 0.02 * 2**attempt))
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"PostgresStorage({self._redacted!r})"

    # -- Storage protocol ---------------------------------------------------------------

    @property
    def project_id(self) -> str:
        return self._project_id

    def setting(self, key: str, default: str) -> str:
        def work(conn: psycopg.Connection[Any]) -> Any:
            # A concurrent insert of the same key makes ours wait, then do nothing; the
            # SELECT (a new statement, a new snapshot) then sees the winner's value.
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, default),
            )
            return conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()

        row = self._run(work)
        assert row is not None
        return str(row[0])

    def delete_settings(self, low: str, high: str) -> int:
        sql = "DELETE FROM meta WHERE key >= %s AND key < %s"
        return int(self._run(lambda conn: conn.execute(sql, (low, high)).rowcount))

    def get(self, kind: Kind, ids: Sequence[str]) -> dict[str, Record]:
        table = self._tables[kind]
        unique = [as_text(i) for i in dict.fromkeys(ids)]
        if not unique:
            return {}
        sql = f"{table.select} WHERE t.id = ANY(%s::text[])"
        rows = self._run(lambda conn: conn.execute(sql, (unique,)).fetchall())
        out = {}
        for row in rows:
            record = table.decode(row[1:])
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
        column_type = table.types[key]
        column = f"t.{snake(key)}"
        unique = list(dict.fromkeys(values))
        if column_type in ("text", "json"):
            unique = [as_text(v) for v in unique]
            if column_type == "json":
                column = f"({column}::text)"
        direction = "ASC" if oldest_first else "DESC"
        limit = max(0, min(limit, MAX_FIND))
        if not unique or limit == 0:
            return []
        sql = (
            f"{table.select} WHERE {column} = ANY(%s::{_ARRAY_TYPES[column_type]})"
            f" ORDER BY t.created_at {direction}, t.seq {direction} LIMIT %s"
        )
        try:
            rows = self._run(lambda conn: conn.execute(sql, (unique, limit)).fetchall())
        except (psycopg.DataError, ValueError) as exc:
            raise StorageError(f"Invalid values for {key!r}: {exc}") from None
        return [table.decode(r[1:]) for r in rows]

    def list(self, kind: Kind, query: ListQuery) -> Page:
        table = self._tables[kind]
        where, params = where_clauses(kind, query.filters)
        key_expr, numeric = order_key(kind, query.order_column)
        first = DEFAULT_PAGE_SIZE if query.first is None else query.first
        first = max(0, min(first, MAX_PAGE_SIZE))
        descending = query.descending
        backwards = query.before is not None and query.after is None
        cursor = query.before if backwards else query.after
        clauses = list(where)
        page_params = list(params)
        if cursor is not None:
            value, seq = decode_cursor(cursor)
            if numeric != (isinstance(value, int | float) and not isinstance(value, bool)) or (
                not numeric and not isinstance(value, str)
            ):
                raise StorageError(f"Invalid cursor {cursor[:64]!r}")
            forward_desc = descending != backwards
            op = "<" if forward_desc else ">"
            cast = "DOUBLE PRECISION" if numeric else "TEXT"
            clauses.append(f"({key_expr}, t.seq) {op} (CAST(%s AS {cast}), CAST(%s AS BIGINT))")
            page_params += [value, seq]
        scan_desc = descending != backwards
        direction = "DESC" if scan_desc else "ASC"
        where_sql = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT t.seq, {table.select_list}, {key_expr} FROM {kind} t{where_sql}"
            f" ORDER BY {key_expr} {direction}, t.seq {direction} LIMIT %s"
        )
        count_where = f" WHERE {' AND '.join(where)}" if where else ""
        count_sql = f"SELECT COUNT(*) FROM {kind} t{count_where}"

        def work(conn: psycopg.Connection[Any]) -> tuple[builtins.list[Any], int]:
            with conn.transaction():
                # one snapshot for the page and the total, as on SQLite
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                rows = conn.execute(sql, [*page_params, first + 1]).fetchall()
                count_row = conn.execute(count_sql, params).fetchone()
            return rows, int(count_row[0]) if count_row else 0

        try:
            rows, total = self._run(work)
        except psycopg.DataError as exc:
            raise StorageError(f"Invalid query: {_first_line(exc)}") from None
        more = len(rows) > first
        rows = rows[:first]
        if backwards:
            rows.reverse()
        items = [table.decode(r[1:-1]) for r in rows]
        cursors = [encode_cursor(r[-1], r[0]) for r in rows]
        if backwards:
            return Page(items, cursors, total, has_next=True, has_previous=more)
        return Page(items, cursors, total, has_next=more, has_previous=cursor is not None)

    def write(self, writes: Sequence[Write]) -> None:
        now = now_iso()
        prepared: list[tuple[str, list[Any], bool]] = []
        for group in writes:
            if not group.records:
                continue
            table = self._tables[group.kind]
            if group.mode == "delete":
                ids = [as_text(i) for i in dict.fromkeys(r["id"] for r in group.records)]
                prepared.append((table.delete, [ids], False))
            else:
                sql = table.merge if group.mode == "merge" else table.insert_missing
                prepared.append((sql, [table.params(r, now) for r in group.records], True))
        if not prepared:
            return

        def work(conn: psycopg.Connection[Any]) -> None:
            # one transaction; executemany sends each group's rows in pipeline mode
            with conn.transaction(), conn.cursor() as cur:
                for sql, rows, many in prepared:
                    if many:
                        cur.executemany(sql, rows)
                    else:
                        cur.execute(sql, rows)

        self._run(work)

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]


def open_postgres(url: str, **pool: Any) -> PostgresStorage:
    """Open (migrating as needed) the PostgreSQL database at ``url``."""
    return PostgresStorage(url, **pool)
