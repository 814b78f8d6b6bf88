"""SQLite implementation of the collector storage (one file, WAL, group-committing writer).

Writes go through one dedicated writer thread that owns the write connection. Concurrent
``write`` calls that queue up while a transaction runs are committed together in the next
transaction (group commit); should one fail, the group runs again with each call inside its
own SAVEPOINT, so that one failing call does not affect the others. Reads use one connection
per calling thread (WAL lets them run while the writer writes) and see everything committed
before they start.

The calling thread builds the statements and their parameters; the writer only executes
them. Records go in multi-row ``INSERT ... VALUES (..), (..) ON CONFLICT`` statements (the
writer releases and re-takes the GIL around each statement it steps, so not one per row), in
chunks of 256 rows then one of the remaining multiple of 4, then 2 and 1 rows, so that the
statement texts stay few enough to stay prepared.
:meth:`SQLiteStorage.write_columns` (not part of the storage interface) takes the plain
steps of an ingest batch column-wise, without one dict per step;
:meth:`SQLiteStorage.submit_columns` queues the same write without waiting and calls back once
it is committed (for the collector's event loop, which must not block) or, with the ingest
journal (:mod:`._journal`), once it is appended there: the writer then commits many such
batches per transaction, recording the last one's sequence number in the same transaction.
Reads and synchronous writes wait for the batches journaled before them; a journaled batch
that fails for a reason that may pass is retried, one that SQLite refuses for good goes to
the journal's dead-letter folder.
"""

from __future__ import annotations

import builtins
import collections
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import msgspec
import structlog

from agent.collector._journal import APPLIED_KEY, Journal, Location
from agent.collector._sqlite_query import (
    decode_cursor,
    encode_cursor,
    order_expression,
    where_clauses,
)
from agent.collector._sqlite_schema import COMMON, KINDS, ColumnType, migrate, snake
from agent.collector._storage import (
    DEFAULT_PAGE_SIZE,
    MAX_FIND,
    MAX_PAGE_SIZE,
    JsonText,
    Kind,
    ListQuery,
    Page,
    Record,
    StorageError,
    Write,
)
from agent.collector._timefmt import now_iso

#: Records committed together at most in one group transaction.
MAX_GROUP_RECORDS = 20_000
#: Bound parameters per statement at most (SQLite's limit is 32766 since 3.32; 999 before).
MAX_STATEMENT_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_PRAGMAS = (
    # 4 KiB pages (SQLite's default; only effective when the file is created, must precede
    # WAL): every step insert dirties a random leaf of the id index, written whole to the WAL
    # at each commit. With checkpoints off the committing thread, measured ~15% less writer
    # CPU per ingested step than 8 KiB pages (and half the WAL bytes).
    "PRAGMA page_size=4096",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA cache_size=-65536",  # 64 MiB page cache per connection (upper bound)
    "PRAGMA temp_store=MEMORY",
    # Memory-mapped reads of the database file (B-tree pages without read() copies):
    # measured ~25% less server CPU per ingested step.
    "PRAGMA mmap_size=268435456",
    # No checkpoint in the committing thread: the checkpointer thread runs them (see
    # :class:`_Checkpointer`), so that no write waits for a checkpoint and its fsyncs.
    "PRAGMA wal_autocheckpoint=0",
    # The WAL file is kept at up to this size after a checkpoint instead of being truncated:
    # above the usual WAL size, so the next cycle overwrites allocated blocks rather than
    # growing the file again (measured ~10% less writer CPU per ingested step).
    "PRAGMA journal_size_limit=201326592",
)
#: Prepared statements kept per connection (the multi-row upserts of several row counts).
_CACHED_STATEMENTS = 256
#: Records committed between two checkpoints (about 1.2 WAL pages, 5 KB, per ~1 KB step
#: record: ~50-70 MiB of WAL). Pages rewritten by several commits are copied back once.
CHECKPOINT_RECORDS = 10_000
#: WAL pages beyond which the checkpointer waits for the writer (RESTART) so that the WAL
#: starts over: passive checkpoints overlapped by commits every time would let it grow.
MAX_WAL_PAGES = 65_536
#: Checkpoint passes without the write lock before a last one with it (see _Checkpointer).
CHECKPOINT_PASSES = 4
#: Seconds after which records committed since the last checkpoint are checkpointed anyway.
CHECKPOINT_IDLE_SECONDS = 1.0

#: Journaled records not yet committed beyond which a journaled batch is answered only once
#: there is room again, i.e. once the records before it are committed down to this many
#: (backpressure: the journal is not an unbounded buffer, nor the memory of its writes).
MAX_JOURNAL_PENDING = 20_000
#: Seconds a read or a synchronous write waits for the journaled batches before it (a
#: read sees every batch answered before it started) before failing.
JOURNAL_BARRIER_SECONDS = 30.0
#: Longest pause between two attempts to store journaled batches that SQLite refused for a
#: reason that may pass (full disk, I/O error, lock held by another program).
MAX_RETRY_SECONDS = 5.0
#: SQLite result codes (primary) of failures that may pass: journaled batches are kept and
#: retried. Any other failure of one batch sends it to the dead-letter folder.
_TRANSIENT_CODES = frozenset(
    ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_NOMEM",
     "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_INTERRUPT")
)  # fmt: skip

log = structlog.get_logger(__name__)
_json_encoder = msgspec.json.Encoder()
_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(
    tuple[str, str, builtins.list[tuple[str, str, builtins.list[dict[str, Any]]]],
          dict[str, builtins.list[Any]]]
)  # fmt: skip
_json_decoder = msgspec.json.Decoder()


def _encode_json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


class _Table:
    """Pre-built SQL and row codecs of one kind."""

    def __init__(self, name: str, columns: dict[str, ColumnType]) -> None:
        self.name = name
        self.keys = ["id", "createdAt", *columns]
        self.types: dict[str, ColumnType] = {**COMMON, **columns}
        self.columns = [snake(k) for k in self.keys]
        self.json_keys = frozenset(k for k, t in self.types.items() if t == "json")
        self._json_positions = [i for i, k in enumerate(self.keys) if k in self.json_keys]
        self.select = f"SELECT t.rowid, {', '.join('t.' + c for c in self.columns)} FROM {name} t"
        self.delete = f"DELETE FROM {name} WHERE id = ?"
        self._column_of = dict(zip(self.keys, self.columns, strict=True))
        self._statements: dict[tuple[str, int, tuple[str, ...] | None], str] = {}
        #: Most rows in one statement (a power of two; at most ``MAX_STATEMENT_PARAMS``).
        self.max_rows = 1 << min(8, (MAX_STATEMENT_PARAMS // len(self.columns)).bit_length() - 1)

    def statement(self, mode: str, rows: int, keys: tuple[str, ...] | None = None) -> str:
        """The ``mode`` upsert of ``rows`` rows in one multi-row ``VALUES`` statement, over
        all the columns or only those of ``keys`` (a sub-sequence of :attr:`keys` starting
        with ``id`` and ``createdAt``; the others stay NULL on insert and unchanged on merge,
        as when they are bound to NULL).

        Rows are applied in order, so a later row with the same id merges into (or, for
        ``insert_missing``, leaves alone) the one inserted before it, as one-row statements
        would.
        """
        cache_key = (mode, rows, keys)
        sql = self._statements.get(cache_key)
        if sql is None:
            columns = self.columns if keys is None else [self._column_of[k] for k in keys]
            marks = "(" + ", ".join("?" * len(columns)) + ")"
            updates = ", ".join(
                f"{c} = COALESCE(excluded.{c}, {self.name}.{c})"
                for c in columns
                if c not in ("id", "created_at")
            )
            action = f"DO UPDATE SET {updates}" if mode == "merge" and updates else "DO NOTHING"
            sql = (
                f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES "
                f"{', '.join([marks] * rows)} ON CONFLICT(id) {action}"
            )
            if len(self._statements) >= 1024:  # column subsets vary with the clients
                self._statements.clear()
            self._statements[cache_key] = sql
        return sql

    def row_params(self, record: Record, now: str) -> list[Any]:
        row = list(map(record.get, self.keys))
        if row[1] is None:
            row[1] = now
        for i in self._json_positions:
            value = row[i]
            if value is None:
                continue
            if type(value) is JsonText:
                # bound as a plain str: sqlite3 binds a str subclass through its (slow, GIL
                # held, writer thread) adapter lookup
                row[i] = str(value)
            else:
                row[i] = _json_encoder.encode(value).decode()
        return row

    def decode(self, row: Sequence[Any]) -> Record:
        json_keys = self.json_keys
        return {
            key: _json_decoder.decode(value) if value is not None and key in json_keys else value
            for key, value in zip(self.keys, row[1:], strict=True)
        }


class _Checkpointer:
    """WAL checkpoints in a thread and on a connection of their own.

    Committing threads only count the records they commit (:meth:`committed`, called with the
    write connection's lock held). Every :data:`CHECKPOINT_RECORDS` records, or
    :data:`CHECKPOINT_IDLE_SECONDS` after records were committed, this thread copies the WAL
    back into the database file with PASSIVE checkpoints, which block neither the writer
    nor readers (the SQLite calls run without the GIL). Once a checkpoint has copied the
    whole WAL, the next write transaction starts the WAL over, provided the copy ended while
    no transaction was open. Passes without the lock copy the bulk, then what was committed
    meanwhile, until one finds nothing new with no transaction running (a pass's result is
    as of its start, so only such an instant pass tells that the WAL is copied whole);
    failing that, after :data:`CHECKPOINT_PASSES` passes, a last one runs with the write
    lock held, copying the pages of the few commits made since. Should readers keep the WAL
    from being copied until it holds :data:`MAX_WAL_PAGES` pages, a RESTART checkpoint
    waits for them.
    Durability is unchanged: a commit is in the WAL (``synchronous=NORMAL``) before its call
    returns, checkpointed or not.
    """

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock  # held by whoever runs a transaction on the write connection
        self._count = 0  # records committed so far
        self._signalled = 0  # _count when the thread was last woken for it
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
        self._thread.start()

    def committed(self, records: int) -> None:
        self._count += records
        if self._count - self._signalled >= CHECKPOINT_RECORDS:
            self._signalled = self._count
            self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        done = 0  # _count when the last checkpoint started
        while True:
            self._wake.wait(CHECKPOINT_IDLE_SECONDS)
            self._wake.clear()
            if self._stop:
                return
            count = self._count
            if count == done:
                continue
            done = count
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file, the last commits with the writer held off
        unless a pass finds nothing new to copy while no transaction is open."""
        try:
            previous = -1
            for _ in range(CHECKPOINT_PASSES):  # without the lock: commits go on meanwhile
                wal_pages, copied = self._passive()
                if wal_pages == copied == previous and not self._lock.locked():
                    return  # nothing committed since the last pass, none running: restarts
                previous = copied
            with self._lock:  # the rest (few pages), with no transaction open: the next
                wal_pages, copied = self._passive()  # one finds the WAL copied, restarts it
            if copied < wal_pages and wal_pages > MAX_WAL_PAGES:  # readers kept it
                self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:  # retried at the next wake-up; commits are unaffected
            log.warning("sqlite checkpoint failed", error=str(exc))

    def _passive(self) -> tuple[int, int]:
        """One PASSIVE checkpoint: the WAL's pages and how many of them are copied."""
        _, wal_pages, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(wal_pages), int(copied)


@dataclass(slots=True)
class _Job:
    """One unit of work for the writer thread."""

    fn: Callable[[sqlite3.Connection], Any]
    weight: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    #: Called by the writer once the job's transaction ended (:meth:`submit_columns`).
    callback: Callable[[BaseException | None], None] | None = None
    #: Journaled jobs: the record's sequence number (0: not journaled) and location.
    seq: int = 0
    location: Location | None = None
    #: Set when the record was written to the dead-letter folder instead of the database.
    dead_letter: str | None = None
    error_text: str = ""

    def finish(self) -> None:
        self.done.set()
        if self.callback is not None:
            try:
                self.callback(self.error)
            except Exception as exc:  # never let a caller's callback stop the writer thread
                log.error("sqlite write callback failed", error=repr(exc))


class SQLiteStorage:
    """Storage in one SQLite file (``collector.db``): WAL, ``synchronous=NORMAL``."""

    shared = False  # one machine: uploaded bytes stay on its disk

    def __init__(self, path: str | Path, *, journal_dir: str | Path | None = None) -> None:
        """Open (creating and migrating as needed) the database file ``path``.

        ``journal_dir``: the ingest journal's directory (see :mod:`._journal`); with one,
        :meth:`submit_columns` answers once a batch is journaled, and the journaled batches
        not yet in the database are stored before this returns.
        """
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tables = {name: _Table(name, cols) for name, cols in KINDS.items()}
        self._write_conn = self._connect()
        migrate(self._write_conn)
        self._conn_lock = threading.Lock()  # whoever runs a transaction on _write_conn
        self._checkpointer = _Checkpointer(self._connect(), self._conn_lock)
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._stopping = threading.Event()  # wakes the writer from a retry pause at close
        # the ingest journal: sequence numbers appended (answered) and committed
        self._journal: Journal | None = None
        self._journal_lock = threading.Lock()  # append + queue in one order; the counts
        self._journaled_seq = 0
        self._applied_seq = 0
        self._journaled_records = 0  # records journaled (and queued) so far
        self._applied_records = 0  # of which committed (or dead letters)
        #: Callbacks of batches answered once there is room: (journaled records through the
        #: batch, callback), in journal order.
        self._waiting: collections.deque[tuple[int, Callable[[BaseException | None], None]]]
        self._waiting = collections.deque()
        self._applied = threading.Condition()
        self.dead_letters = 0
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        if journal_dir is not None:
            try:
                self._open_journal(Path(journal_dir))
            except BaseException:
                self.close()
                raise
        self._project_id = self.setting("project_id", f"project-{uuid.uuid4()}")

    # -- Storage protocol ---------------------------------------------------------------

    @property
    def project_id(self) -> str:
        return self._project_id

    def setting(self, key: str, default: str) -> str:
        def get_or_set(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row[0])
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, default))
            return default

        return str(self._submit(get_or_set, 1))

    def delete_settings(self, low: str, high: str) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM meta WHERE key >= ? AND key < ?", (low, high)).rowcount

        return int(self._submit(delete, 1))

    def get(self, kind: Kind, ids: Sequence[str]) -> dict[str, Record]:
        table = self._tables[kind]
        conn = self._reader()
        out: dict[str, Record] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), 500):
            marks = ", ".join("?" * len(chunk))
            for row in conn.execute(f"{table.select} WHERE t.id IN ({marks})", chunk):
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
    ) -> builtins.list[Record]:
        table = self._tables[kind]
        if key not in table.types:
            raise StorageError(f"Unknown key {key!r} for {kind}")
        column = snake(key)
        direction = "ASC" if oldest_first else "DESC"
        limit = max(0, min(limit, MAX_FIND))
        conn = self._reader()
        out: list[Record] = []
        unique = list(dict.fromkeys(values))
        for chunk in _chunks(unique, 500):
            marks = ", ".join("?" * len(chunk))
            sql = (
                f"{table.select} WHERE t.{column} IN ({marks})"
                f" ORDER BY t.created_at {direction}, t.rowid {direction} LIMIT ?"
            )
            out.extend(table.decode(r) for r in conn.execute(sql, [*chunk, limit]))
        if len(unique) > 500:
            out.sort(key=lambda r: r["createdAt"], reverse=not oldest_first)
            del out[limit:]
        return out

    def list(self, kind: Kind, query: ListQuery) -> Page:
        table = self._tables[kind]
        where, params = where_clauses(kind, query.filters)
        order_expr, numeric = order_expression(kind, query.order_column)
        if order_expr == "t.created_at":
            key_expr = order_expr  # NOT NULL: lets SQLite walk the created_at index
        else:
            key_expr = f"COALESCE({order_expr}, {'-1e308' if numeric else repr('')})"
        first = (
            DEFAULT_PAGE_SIZE if query.first is None else max(0, min(query.first, MAX_PAGE_SIZE))
        )
        backwards = query.before is not None and query.after is None
        cursor = query.before if backwards else query.after
        clauses = list(where)
        page_params = list(params)
        scan_desc = query.descending != backwards
        if cursor is not None:
            value, rowid = decode_cursor(cursor)
            clauses.append(f"({key_expr}, t.rowid) {'<' if scan_desc else '>'} (?, ?)")
            page_params += [value, rowid]
        direction = "DESC" if scan_desc else "ASC"
        where_sql = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = ", ".join("t." + c for c in table.columns)
        sql = (
            f"SELECT t.rowid, {columns}, {key_expr} FROM {kind} t{where_sql}"
            f" ORDER BY {key_expr} {direction}, t.rowid {direction} LIMIT ?"
        )
        count_sql = f"SELECT COUNT(*) FROM {kind} t" + (
            f" WHERE {' AND '.join(where)}" if where else ""
        )
        conn = self._reader()
        try:
            conn.execute("BEGIN")  # one snapshot for the page and the count
            try:
                rows = conn.execute(sql, [*page_params, first + 1]).fetchall()
                total = int(conn.execute(count_sql, params).fetchone()[0])
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"Invalid query: {exc}") from exc
        more = len(rows) > first
        rows = rows[:first]
        if backwards:
            rows.reverse()
        items = [table.decode(r[:-1]) for r in rows]
        cursors = [encode_cursor(r[-1], r[0]) for r in rows]
        if backwards:
            return Page(items, cursors, total, has_next=True, has_previous=more)
        return Page(items, cursors, total, has_next=more, has_previous=cursor is not None)

    def write(self, writes: Sequence[Write]) -> None:
        prepared, weight = self._prepare(writes, now_iso())
        if prepared:
            self._submit(_applier(prepared), weight)

    def write_columns(
        self, writes: Sequence[Write], kind: Kind, columns: Mapping[str, Sequence[Any]]
    ) -> None:
        """``write([*writes, Write(kind, records)])`` for records given column-wise (merge).

        Not part of the storage interface: the ingest fast path uses it when the storage has
        it, and skips building one dict per record. ``columns`` maps wire keys to one value
        per record (all the same length; a missing key is ``None`` for every record), and a
        JSON-typed column holds JSON *text* (``str``) or ``None``, never decoded values.
        """
        prepared, weight = self._column_statements(writes, kind, columns)
        if prepared:
            self._submit(_applier(prepared), weight)

    def submit_columns(
        self,
        writes: Sequence[Write],
        kind: Kind,
        columns: Mapping[str, Sequence[Any]],
        callback: Callable[[BaseException | None], None],
    ) -> None:
        """:meth:`write_columns` without waiting: the statements are built in the calling
        thread and queued for the writer, which calls ``callback(error)`` (``None`` once
        committed) from its own thread when the transaction ends.

        For a caller that must not block (the collector's event loop): writes queued by many
        such calls while a transaction runs are committed together in the next one.

        With the ingest journal, ``callback(None)`` is called before this returns, once the
        batch is appended to the journal (it is then stored even if the process dies; reads
        and synchronous writes started afterwards wait until it is committed), unless more
        than :data:`MAX_JOURNAL_PENDING` journaled records would then wait for their commit:
        it is then called, from the writer thread, once enough of those before it are
        committed. A failed append (full disk) raises ``OSError``, with nothing queued.
        """
        if self._closed:
            raise StorageError("storage is closed")
        now = now_iso()
        prepared, weight = self._column_statements(writes, kind, columns, now)
        job = _Job(_applier(prepared), weight, callback=callback)
        journal = self._journal
        if journal is None:
            self._jobs.put(job)
            return
        record = (now, kind, [(w.kind, w.mode, w.records) for w in writes], columns)
        payload = _record_encoder.encode(record)
        job.callback = None  # journaled: answered now, or once there is room (_waiting)
        with self._journal_lock:  # sequence numbers reach the writer in order
            job.seq, job.location = journal.append(payload)
            self._jobs.put(job)
            self._journaled_seq = job.seq
            self._journaled_records += weight
            room = self._journaled_records - self._applied_records <= MAX_JOURNAL_PENDING
            if not room:
                self._waiting.append((self._journaled_records, callback))
        if room:
            callback(None)

    def _column_statements(
        self,
        writes: Sequence[Write],
        kind: Kind,
        columns: Mapping[str, Sequence[Any]],
        now: str | None = None,
    ) -> tuple[builtins.list[_Statement], int]:
        table = self._tables[kind]
        now = now or now_iso()
        prepared, weight = self._prepare(writes, now)
        count = len(columns["id"])
        keys: list[str] = []
        ordered: list[Iterable[Any]] = []
        for key in table.keys:
            column = columns.get(key)
            if key == "createdAt":
                ordered.append(repeat(now, count) if column is None else [c or now for c in column])
            elif key == "id" or (column is not None and column.count(None) != count):
                ordered.append(column)  # type: ignore[arg-type]
            else:
                continue  # NULL for every record: left out of the statement (binding costs)
            keys.append(key)
        flat = list(chain.from_iterable(zip(*ordered, strict=True)))
        width, subset = len(keys), tuple(keys)
        for start, rows in _chunk_sizes(count, table.max_rows):
            params = flat[start * width : (start + rows) * width]
            prepared.append((table.statement("merge", rows, subset), params, False))
        return prepared, weight + count

    def _prepare(self, writes: Sequence[Write], now: str) -> tuple[builtins.list[_Statement], int]:
        """The statements of ``writes`` in order, and their record count."""
        prepared: builtins.list[_Statement] = []
        weight = 0
        for group in writes:
            if not group.records:
                continue
            table = self._tables[group.kind]
            weight += len(group.records)
            if group.mode == "delete":
                prepared.append((table.delete, [(r["id"],) for r in group.records], True))
                continue
            # Multi-row statements: the writer thread releases and re-takes the GIL around
            # every statement it steps, and under load each re-take waits for the running
            # thread's switch interval: one statement per chunk of rows, not one per row.
            row_params = table.row_params
            rows = [row_params(r, now) for r in group.records]
            for start, count in _chunk_sizes(len(rows), table.max_rows):
                params = list(chain.from_iterable(rows[start : start + count]))
                prepared.append((table.statement(group.mode, count), params, False))
        return prepared, weight

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._jobs.put(None)
        self._writer.join()
        with self._applied:
            self._applied.notify_all()  # readers waiting for the journal: storage is closed
        if self._journal is not None:
            self._journal.close()
        self._checkpointer.close()
        with self._conn_lock:  # after a commit running in a calling thread
            self._write_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # -- connections and the writer -----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path),
            check_same_thread=False,
            isolation_level=None,
            timeout=30.0,
            cached_statements=_CACHED_STATEMENTS,
        )
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._applied_seq < self._journaled_seq:
            self._wait_for_journal()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StorageError("storage is closed")
            conn = self._connect()
            conn.execute("PRAGMA cache_size=-2048")  # readers: 2 MiB each
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _submit(self, fn: Callable[[sqlite3.Connection], Any], weight: int) -> Any:
        if self._closed:
            raise StorageError("storage is closed")
        if self._applied_seq < self._journaled_seq:
            self._wait_for_journal()  # a journaled batch answered before must not win over it
        job = _Job(fn, weight)
        if self._jobs.empty() and self._conn_lock.acquire(blocking=False):
            # The writer is idle: commit in this thread, sparing two thread switches (to the
            # writer and back), which on a loaded machine cost more than the commit itself.
            try:
                if self._closed:
                    raise StorageError("storage is closed")
                self._run_group([job])
            finally:
                self._conn_lock.release()
        else:  # a transaction is running: the writer commits this one with the next group
            self._jobs.put(job)
            job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _wait_for_journal(self) -> None:
        """Wait until every batch journaled so far is committed (see :meth:`submit_columns`)."""
        target = self._journaled_seq
        with self._applied:
            done = self._applied.wait_for(
                lambda: self._applied_seq >= target or self._closed, JOURNAL_BARRIER_SECONDS
            )
        if self._closed:
            raise StorageError("storage is closed")
        if not done:
            raise StorageError(
                f"batches acknowledged from the ingest journal are still not stored after "
                f"{JOURNAL_BARRIER_SECONDS:g} s (the collector's log says why); retry later"
            )

    def _write_loop(self) -> None:
        stop = False
        retry: builtins.list[_Job] = []  # journaled jobs not stored yet: first, in order
        delay = 0.0
        while not stop:
            if retry:
                if self._stopping.wait(delay):
                    break  # closing: they stay in the journal, stored at the next start
                jobs, stop = self._next_group(retry)
            else:
                first = self._jobs.get()
                if first is None:
                    break
                jobs, stop = self._next_group([first])
            with self._conn_lock:
                self._run_group(jobs)
            retry = [job for job in jobs if job.seq and job.error is not None]
            if retry:
                delay = min(MAX_RETRY_SECONDS, max(0.05, delay * 2))
                log.error(
                    "ingest journal: acknowledged batches not stored yet, kept and retried",
                    batches=len(retry),
                    retry_in_s=delay,
                    error=repr(retry[0].error),
                )
                for job in retry:
                    job.error = None
            else:
                delay = 0.0
                self._journal_applied(jobs)
            for job in jobs:
                if not job.seq or not retry:
                    job.finish()
        for job in retry:  # closing with batches not stored: the next start stores them
            job.error = StorageError("storage is closed")
            job.finish()
        with self._journal_lock:  # journaled, so kept: stored at the next start if not now
            ready = [callback for _, callback in self._waiting]
            self._waiting.clear()
        _answer(ready)
        while True:  # calls that raced with close(): fail them instead of hanging
            try:
                late = self._jobs.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                late.error = StorageError("storage is closed")
                late.finish()

    def _next_group(self, jobs: builtins.list[_Job]) -> tuple[builtins.list[_Job], bool]:
        """``jobs`` and the jobs queued behind them, up to :data:`MAX_GROUP_RECORDS` records;
        whether ``close()`` was called."""
        weight = sum(job.weight for job in jobs)
        while weight < MAX_GROUP_RECORDS:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            weight += job.weight
        return jobs, False

    def _journal_applied(self, jobs: builtins.list[_Job]) -> None:
        """After the commit of ``jobs``: move the applied mark, free journal space."""
        journaled = [job for job in jobs if job.seq]
        if not journaled:
            return
        for job in journaled:
            if job.dead_letter is not None:
                self.dead_letters += 1
                log.error(
                    "ingest journal: a batch SQLite refuses was moved to the dead-letter folder"
                    " (acknowledged, not stored)",
                    path=job.dead_letter,
                    error=repr(job.error_text),
                )
        with self._journal_lock:
            self._applied_records += sum(job.weight for job in journaled)
            ready = []
            waiting = self._waiting
            while waiting and waiting[0][0] - self._applied_records <= MAX_JOURNAL_PENDING:
                ready.append(waiting.popleft()[1])
        _answer(ready)
        with self._applied:
            self._applied_seq = journaled[-1].seq
            self._applied.notify_all()
        assert self._journal is not None
        try:
            self._journal.release(self._applied_seq)
        except OSError as exc:  # pragma: no cover - a segment that cannot be deleted
            log.warning("ingest journal: cannot delete an applied segment", error=str(exc))

    def _run_group(self, jobs: builtins.list[_Job]) -> None:
        """Run ``jobs`` in one transaction (the caller holds ``_conn_lock``).

        The jobs first run one after the other, without savepoints (every statement costs
        the writer a GIL re-take). Should one fail, the transaction is rolled back and, if
        there were others, they all run again, each inside its own SAVEPOINT, so that the
        failing one fails alone (a job only executes statements: running it again is safe).

        Journaled jobs: the transaction also records the last one's sequence number. One
        that fails on its own for a reason that will not pass goes to the dead-letter folder
        (and counts as applied); one that fails for a reason that may pass (see
        :data:`_TRANSIENT_CODES`) fails the whole transaction, and the caller retries.
        """
        conn = self._write_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in jobs:
                    job.result = job.fn(conn)
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if len(jobs) == 1 and not jobs[0].seq:
                    jobs[0].error = exc
                    return
                conn.execute("BEGIN IMMEDIATE")
                for job in jobs:
                    conn.execute("SAVEPOINT job")
                    try:
                        job.result = job.fn(conn)
                    except Exception as job_exc:
                        conn.execute("ROLLBACK TO job")
                        if not job.seq:
                            job.error = job_exc
                        elif _transient(job_exc):
                            raise
                        else:
                            self._dead_letter(job, job_exc)
                    conn.execute("RELEASE job")
            if conn.in_transaction:
                seq = max((job.seq for job in jobs), default=0)
                if seq:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES (?, ?)"
                        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (APPLIED_KEY, str(seq)),
                    )
                conn.execute("COMMIT")
                self._checkpointer.committed(sum(job.weight for job in jobs))
        except Exception as exc:  # the transaction itself failed (disk full, I/O error)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                job.error = job.error or exc
                job.dead_letter = None

    # -- the ingest journal -------------------------------------------------------------------

    def _dead_letter(self, job: _Job, error: BaseException) -> None:
        """Write journaled ``job``'s record to the dead-letter folder (an ``OSError``, e.g. a
        full disk, propagates: the job is then retried like a transient failure)."""
        assert self._journal is not None and job.location is not None
        payload = self._journal.read(job.location)
        text = f"{type(error).__name__}: {error}"
        try:
            now, kind, writes, columns = _record_decoder.decode(payload)
            keys = builtins.list(columns)
            document: dict[str, Any] = {
                "seq": job.seq,
                "error": text,
                "acknowledgedAt": now,
                "kind": kind,
                "records": [
                    dict(zip(keys, row, strict=True))
                    for row in zip(*columns.values(), strict=True)
                ],
                "writes": [{"kind": k, "mode": m, "records": r} for k, m, r in writes],
            }
        except (msgspec.DecodeError, ValueError) as exc:
            document = {"seq": job.seq, "error": f"{text}; undecodable record: {exc}",
                        "payloadHex": payload.hex()}  # fmt: skip
        path = self._journal.write_dead_letter(job.seq, _json_encoder.encode(document))
        job.dead_letter = str(path)
        job.error_text = text

    def _open_journal(self, directory: Path) -> None:
        """Open the journal and store the batches it holds beyond the applied mark."""
        journal = Journal(directory)
        applied = int(self.setting(APPLIED_KEY, "0"))
        self._applied_seq = self._journaled_seq = applied
        self._journal = journal
        replayed = records = 0
        try:
            for seq, payload, location in journal.replay(applied):
                job = self._replay_job(seq, payload, location)
                with self._journal_lock:
                    self._jobs.put(job)
                    self._journaled_seq = seq
                    self._journaled_records += job.weight
                    full = self._journaled_records - self._applied_records > MAX_JOURNAL_PENDING
                replayed += 1
                records += job.weight
                if full:
                    self._wait_for_journal()  # bounded memory for a long journal
            self._wait_for_journal()
        except BaseException:
            self._journal = None
            journal.close()
            raise
        journal.last_seq = max(journal.last_seq, self._applied_seq)
        journal.reset()  # every record in it is stored: start with an empty journal
        if replayed:
            log.warning(
                "ingest journal: stored batches acknowledged before the last stop",
                batches=replayed,
                records=records,
                journal=str(directory),
            )

    def _replay_job(self, seq: int, payload: bytes, location: Location) -> _Job:
        try:
            now, kind, writes, columns = _record_decoder.decode(payload)
            prepared, weight = self._column_statements(
                [Write(k, r, m) for k, m, r in writes],  # type: ignore[arg-type]
                kind,  # type: ignore[arg-type]
                columns,
                now,
            )
            return _Job(_applier(prepared), weight, seq=seq, location=location)
        except Exception as exc:  # a record this version cannot read: kept aside

            def refuse(conn: sqlite3.Connection, error: BaseException = exc) -> None:
                raise StorageError(f"unreadable journal record: {error!r}")

            return _Job(refuse, 1, seq=seq, location=location)

    def replay_dead_letters(self) -> tuple[int, builtins.list[tuple[Path, str]]]:
        """Store the batches of the journal's dead-letter folder again (once what made SQLite
        refuse them is fixed). A stored one moves to ``dead-letter/replayed/``; one refused
        again stays. Returns how many were stored, and each refused file with its error."""
        if self._journal is None:
            raise StorageError("this storage has no ingest journal")
        folder = self._journal.dead_letter_dir
        done = folder / "replayed"
        stored = 0
        refused: builtins.list[tuple[Path, str]] = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            try:
                letter = _json_decoder.decode(path.read_bytes())
                records = letter["records"]
                columns = {key: [r.get(key) for r in records] for key in records[0]}
                writes = [Write(w["kind"], w["records"], w["mode"]) for w in letter["writes"]]
                self.write_columns(writes, letter["kind"], columns)
            except (msgspec.DecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
                refused.append((path, f"not a dead letter this version can read: {exc!r}"))
                continue
            except (sqlite3.Error, StorageError) as exc:
                refused.append((path, f"{type(exc).__name__}: {exc}"))
                continue
            done.mkdir(mode=0o700, exist_ok=True)
            path.replace(done / path.name)
            stored += 1
        return stored, refused

    def ingest_journal_stats(self) -> dict[str, Any] | None:
        """The ingest journal's state (``None`` without one): for ``/health``."""
        if self._journal is None:
            return None
        return {
            "acknowledged": self._journaled_seq,
            "stored": self._applied_seq,
            "pendingRecords": self._journaled_records - self._applied_records,
            "deadLetters": self.dead_letters,
            "bytes": self._journal.size(),
        }


#: A statement, its parameters, and whether they are one parameter set per row (executemany)
#: or one flat list for a multi-row statement.
_Statement = tuple[str, list[Any], bool]


def _applier(prepared: list[_Statement]) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        for sql, params, many in prepared:
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)

    return apply


def _answer(callbacks: Iterable[Callable[[BaseException | None], None]]) -> None:
    """Call back batches answered once there was room (a failing callback is logged)."""
    for callback in callbacks:
        try:
            callback(None)
        except Exception as exc:  # never let a caller's callback stop the writer thread
            log.error("sqlite write callback failed", error=repr(exc))


def _transient(error: BaseException) -> bool:
    """Whether a failed write may succeed later (see :data:`_TRANSIENT_CODES`)."""
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):  # an extended code names its primary one first
        return "_".join(name.split("_")[:2]) in _TRANSIENT_CODES
    return isinstance(error, sqlite3.OperationalError | OSError)


def _chunk_sizes(total: int, largest: int) -> Iterator[tuple[int, int]]:
    """Split ``total`` rows into (start, count) chunks of ``largest`` rows, then one chunk of
    the remaining multiple of 4, then 2 and 1: few statements per write (the writer re-takes
    the GIL after each), and at most ``largest // 4 + 2`` statement texts."""
    start = 0
    while total - start >= largest:
        yield start, largest
        start += largest
    for size in ((total - start) & ~3, 2, 1):
        if size and total - start >= size:
            yield start, size
            start += size


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def journal_dir_for(path: str | Path) -> Path:
    """Where the ingest journal of the database file ``path`` lives: ``<file>-ingest``, a
    sibling of SQLite's own ``-wal`` and ``-shm`` files."""
    path = Path(path)
    return path.with_name(f"{path.name}-ingest")


def open_sqlite(data_dir: str | Path, *, ingest_journal: bool = False) -> SQLiteStorage:
    """Open (creating and migrating as needed) ``<data_dir>/collector.db``, with its ingest
    journal when ``ingest_journal`` (the collector command's default)."""
    path = Path(data_dir) / "collector.db"
    return SQLiteStorage(path, journal_dir=journal_dir_for(path) if ingest_journal else None)


__all__ = ["SQLiteStorage", "journal_dir_for", "migrate", "open_sqlite"]
