"""PostgreSQL schema of the collector: the versioned migrations, version for version SQLite's.

:data:`MIGRATIONS` is append-only, like :data:`agent.collector._sqlite_schema.MIGRATIONS`:
migration *n* here creates what migration *n* there creates (a test checks the count and that
the columns match :data:`~agent.collector._sqlite_schema.KINDS`). Differences are the engine's:

* text columns use the ``"C"`` collation (byte order, ASCII-only case folding, as SQLite);
* JSON columns are ``json``: the text as sent, so text filters on JSON behave as on SQLite;
  ``blob`` columns are ``bytea``;
* an identity column ``seq`` is the insertion order (SQLite's ``rowid``): list ties are broken
  by it and cursors carry it; the ``created_at`` indexes include it.

:func:`migrate` holds ``pg_advisory_xact_lock(MIGRATION_LOCK)`` for the whole run, so replicas
starting at once apply each migration exactly once and create the project id once.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

#: Key of the advisory lock held while migrating (a constant shared by every replica).
MIGRATION_LOCK = 0x4C495445_52414C31  # "LITERAL1"

#: Schema migrations, applied in order; ``schema_version`` holds how many were applied.
MIGRATIONS: list[str] = [
    # 1: one table per kind (JSON as json) and the settings table.
    """
    CREATE TABLE participant (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        identifier TEXT COLLATE "C",
        metadata JSON
    );
    CREATE TABLE thread (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C",
        metadata JSON,
        tags JSON,
        participant_id TEXT COLLATE "C",
        environment TEXT COLLATE "C"
    );
    CREATE TABLE step (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        thread_id TEXT COLLATE "C",
        parent_id TEXT COLLATE "C",
        root_run_id TEXT COLLATE "C",
        type TEXT COLLATE "C",
        name TEXT COLLATE "C",
        start_time TEXT COLLATE "C",
        end_time TEXT COLLATE "C",
        error TEXT COLLATE "C",
        input JSON,
        output JSON,
        metadata JSON,
        tags JSON,
        environment TEXT COLLATE "C"
    );
    CREATE TABLE generation (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        step_id TEXT COLLATE "C",
        type TEXT COLLATE "C",
        prompt_id TEXT COLLATE "C",
        provider TEXT COLLATE "C",
        model TEXT COLLATE "C",
        error TEXT COLLATE "C",
        settings JSON,
        variables JSON,
        tags JSON,
        metadata JSON,
        tools JSON,
        token_count BIGINT,
        input_token_count BIGINT,
        output_token_count BIGINT,
        tt_first_token DOUBLE PRECISION,
        token_throughput_in_seconds DOUBLE PRECISION,
        duration DOUBLE PRECISION,
        messages JSON,
        message_completion JSON,
        prompt TEXT COLLATE "C",
        completion TEXT COLLATE "C",
        environment TEXT COLLATE "C"
    );
    CREATE TABLE score (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C",
        type TEXT COLLATE "C",
        value DOUBLE PRECISION,
        label TEXT COLLATE "C",
        comment TEXT COLLATE "C",
        scorer TEXT COLLATE "C",
        tags JSON,
        step_id TEXT COLLATE "C",
        generation_id TEXT COLLATE "C",
        dataset_experiment_item_id TEXT COLLATE "C",
        updated_at TEXT COLLATE "C"
    );
    CREATE TABLE attachment (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        thread_id TEXT COLLATE "C",
        step_id TEXT COLLATE "C",
        metadata JSON,
        mime TEXT COLLATE "C",
        name TEXT COLLATE "C",
        object_key TEXT COLLATE "C",
        url TEXT COLLATE "C"
    );
    CREATE TABLE dataset (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C",
        description TEXT COLLATE "C",
        metadata JSON,
        type TEXT COLLATE "C"
    );
    CREATE TABLE dataset_item (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        dataset_id TEXT COLLATE "C",
        metadata JSON,
        input JSON,
        expected_output JSON,
        intermediary_steps JSON,
        step_id TEXT COLLATE "C",
        generation_id TEXT COLLATE "C"
    );
    CREATE TABLE experiment (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C",
        dataset_id TEXT COLLATE "C",
        prompt_experiment_id TEXT COLLATE "C",
        params JSON
    );
    CREATE TABLE experiment_item (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        dataset_experiment_id TEXT COLLATE "C",
        experiment_run_id TEXT COLLATE "C",
        dataset_item_id TEXT COLLATE "C",
        input JSON,
        output JSON
    );
    CREATE TABLE prompt_lineage (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C",
        description TEXT COLLATE "C",
        deleted_at TEXT COLLATE "C"
    );
    CREATE TABLE prompt_version (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        lineage_id TEXT COLLATE "C",
        version BIGINT,
        version_desc TEXT COLLATE "C",
        template_messages JSON,
        tools JSON,
        settings JSON,
        variables JSON,
        variables_default_values JSON,
        label TEXT COLLATE "C",
        status TEXT COLLATE "C",
        tags JSON,
        type TEXT COLLATE "C",
        updated_at TEXT COLLATE "C"
    );
    CREATE TABLE prompt_experiment (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        from_lineage_id TEXT COLLATE "C",
        from_version BIGINT,
        score_template_id TEXT COLLATE "C",
        template_messages JSON,
        settings JSON,
        tools JSON,
        variables JSON
    );
    CREATE TABLE prompt_rollout (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        lineage_id TEXT COLLATE "C",
        version BIGINT,
        rollout BIGINT
    );
    CREATE TABLE file (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        mime TEXT COLLATE "C",
        size BIGINT
    );
    CREATE TABLE meta (
        key TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    """,
    # 2: indexes for relations, lookups and newest-first lists.
    """
    CREATE INDEX step_thread ON step (thread_id);
    CREATE INDEX step_parent ON step (parent_id);
    CREATE INDEX step_created ON step (created_at, seq);
    CREATE INDEX thread_created ON thread (created_at, seq);
    CREATE INDEX thread_participant ON thread (participant_id);
    CREATE INDEX participant_identifier ON participant (identifier);
    CREATE INDEX generation_step ON generation (step_id);
    CREATE INDEX generation_created ON generation (created_at, seq);
    CREATE INDEX score_step ON score (step_id);
    CREATE INDEX score_item ON score (dataset_experiment_item_id);
    CREATE INDEX attachment_step ON attachment (step_id);
    CREATE INDEX dataset_item_dataset ON dataset_item (dataset_id);
    CREATE INDEX prompt_lineage_name ON prompt_lineage (name);
    CREATE INDEX prompt_version_lineage ON prompt_version (lineage_id, version);
    CREATE INDEX prompt_rollout_lineage ON prompt_rollout (lineage_id);
    CREATE INDEX dataset_name ON dataset (name);
    """,
    # 3: uploaded file bytes in the database (PostgreSQL, shared by every replica); NULL for files
    # kept under the data directory's uploads/ folder (SQLite).
    """
    ALTER TABLE file ADD COLUMN data BYTEA;
    """,
]


def migrate(conn: psycopg.Connection[Any], target: int | None = None) -> str:
    """Apply pending :data:`MIGRATIONS` (up to ``target``) under the advisory lock.

    Returns the project id, created here on first use (``""`` while no table exists yet,
    i.e. ``target=0``). Several collectors may call this at once: the lock serialises them,
    the first migrates, the others find nothing left to do.
    """
    target = len(MIGRATIONS) if target is None else target
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else int(row[0])
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        while version < target:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement.encode())
            version += 1
            conn.execute("UPDATE schema_version SET version = %s", (version,))
        if version == 0:
            return ""
        found = conn.execute("SELECT value FROM meta WHERE key = 'project_id'").fetchone()
        if found is not None:
            return str(found[0])
        project = f"project-{uuid.uuid4()}"
        conn.execute("INSERT INTO meta (key, value) VALUES ('project_id', %s)", (project,))
        return project


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The number of migrations applied to the database of ``conn`` (0 when none)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])
