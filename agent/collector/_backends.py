"""Pick the collector's storage engine from its database URL.

* ``None`` or ``""``: SQLite, ``<data_dir>/collector.db`` (the default);
* ``sqlite:///relative/dir`` or ``sqlite:////absolute/dir``: SQLite, ``collector.db`` in that
  directory (a path ending in ``.db`` names the file itself);
* ``postgresql://...`` or ``postgres://...``: PostgreSQL (a libpq URL; needs the ``postgres``
  extra: ``pip install 'literal-agent[postgres]'``).

Errors never contain the URL's password.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from agent.collector._storage import Storage

#: URL schemes accepted for PostgreSQL.
POSTGRES_SCHEMES = ("postgresql", "postgres")
ACCEPTED_FORMS = (
    "sqlite:///path/to/dir, postgresql://user:password@host:5432/dbname"
    " (or postgres://...), or no URL for SQLite in the data directory"
)


class StorageOpenError(RuntimeError):
    """The configured database cannot be reached or prepared (message free of passwords)."""


def _scheme(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def _redact_without_psycopg(url: str) -> str:
    """``url`` without password or query (psycopg may be absent here)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}" if ":" in userinfo else netloc
    return f"{parts.scheme}://{netloc}{parts.path}" + ("?..." if parts.query else "")


def redact_url(url: str) -> str:
    """``url`` with its password (user-info or ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The password(s) in ``url``, raw and percent-decoded (to mask them in messages)."""
    out: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            out += [parts.password, unquote(parts.password)]
        out += [v for k, v in parse_qsl(parts.query) if k == "password" and v]
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            out.append(userinfo.split(":", 1)[1])
    except ValueError:
        pass
    return sorted({s for s in out if s}, key=len, reverse=True)


def sqlite_path(url: str, data_dir: str | Path) -> Path:
    """The SQLite file named by a ``sqlite://`` URL (``sqlite://`` alone: the data dir)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"sqlite URL must not name a host: {_redact_without_psycopg(url)!r}"
            " (use sqlite:///relative/dir or sqlite:////absolute/dir)"
        )
    raw = unquote(parts.path)
    if raw.startswith("/"):
        raw = raw[1:]  # sqlite:///rel -> "rel", sqlite:////abs -> "/abs"
    if not raw:
        return Path(data_dir) / "collector.db"
    path = Path(raw).expanduser()
    return path if path.suffix in (".db", ".sqlite", ".sqlite3") else path / "collector.db"


def open_storage(
    database_url: str | None,
    data_dir: str | Path,
    *,
    pool_size: int = 10,
    ingest_journal: bool = False,
) -> Storage:
    """Open the storage named by ``database_url`` (see the module docstring);
    ``pool_size``: most connections to PostgreSQL (unused on SQLite); ``ingest_journal``:
    SQLite's ingest journal (unused on PostgreSQL).

    Raises :class:`ValueError` for an unknown scheme (naming the accepted forms) and
    :class:`StorageOpenError` when PostgreSQL cannot be reached or migrated.
    """
    from agent.collector._journal import JournalError
    from agent.collector._sqlite import SQLiteStorage, journal_dir_for

    if not database_url or _scheme(database_url) == "sqlite":
        path = sqlite_path(database_url or "", data_dir)
        journal = journal_dir_for(path) if ingest_journal else None
        try:
            return SQLiteStorage(path, journal_dir=journal)
        except JournalError as exc:
            raise StorageOpenError(str(exc)) from None
    scheme = _scheme(database_url)
    if scheme in POSTGRES_SCHEMES:
        try:
            from agent.collector._postgres import open_postgres
        except ImportError as exc:
            raise ValueError(
                "database_url is a PostgreSQL URL but psycopg is not installed:"
                " pip install 'literal-agent[postgres]'"
            ) from exc
        return open_postgres(database_url, max_size=pool_size)
    shown = _redact_without_psycopg(database_url) if scheme else "<not a URL>"
    raise ValueError(f"Unsupported database_url {shown!r}: expected {ACCEPTED_FORMS}")
