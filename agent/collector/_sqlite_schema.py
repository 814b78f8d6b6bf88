"""SQLite schema of the collector: column map per kind and the versioned migrations.

:data:`MIGRATIONS` is append-only: a shipped migration is never edited; a schema change is a
new script at the end (``schema_version`` records how many were applied). :data:`KINDS` must
describe the columns those scripts create (a test checks it).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Literal

ColumnType = Literal["text", "json", "int", "real", "blob"]

COMMON: dict[str, ColumnType] = {"id": "text", "createdAt": "text"}

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
    "file": {"mime": "text", "size": "int", "data": "blob"},
}


def snake(key: str) -> str:
    """Column name of a wire key (``createdAt`` -> ``created_at``)."""
    return re.sub(r"([A-Z])", r"_\1", key).lower()


#: Schema migrations, applied in order; ``schema_version`` holds how many were applied.
MIGRATIONS: list[str] = [
    # 1: one table per kind (JSON as TEXT) and the settings table.
    """
    CREATE TABLE participant (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        identifier TEXT,
        metadata TEXT
    );
    CREATE TABLE thread (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        name TEXT,
        metadata TEXT,
        tags TEXT,
        participant_id TEXT,
        environment TEXT
    );
    CREATE TABLE step (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        thread_id TEXT,
        parent_id TEXT,
        root_run_id TEXT,
        type TEXT,
        name TEXT,
        start_time TEXT,
        end_time TEXT,
        error TEXT,
        input TEXT,
        output TEXT,
        metadata TEXT,
        tags TEXT,
        environment TEXT
    );
    CREATE TABLE generation (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        step_id TEXT,
        type TEXT,
        prompt_id TEXT,
        provider TEXT,
        model TEXT,
        error TEXT,
        settings TEXT,
        variables TEXT,
        tags TEXT,
        metadata TEXT,
        tools TEXT,
        token_count INTEGER,
        input_token_count INTEGER,
        output_token_count INTEGER,
        tt_first_token REAL,
        token_throughput_in_seconds REAL,
        duration REAL,
        messages TEXT,
        message_completion TEXT,
        prompt TEXT,
        completion TEXT,
        environment TEXT
    );
    CREATE TABLE score (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        name TEXT,
        type TEXT,
        value REAL,
        label TEXT,
        comment TEXT,
        scorer TEXT,
        tags TEXT,
        step_id TEXT,
        generation_id TEXT,
        dataset_experiment_item_id TEXT,
        updated_at TEXT
    );
    CREATE TABLE attachment (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        thread_id TEXT,
        step_id TEXT,
        metadata TEXT,
        mime TEXT,
        name TEXT,
        object_key TEXT,
        url TEXT
    );
    CREATE TABLE dataset (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        name TEXT,
        description TEXT,
        metadata TEXT,
        type TEXT
    );
    CREATE TABLE dataset_item (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        dataset_id TEXT,
        metadata TEXT,
        input TEXT,
        expected_output TEXT,
        intermediary_steps TEXT,
        step_id TEXT,
        generation_id TEXT
    );
    CREATE TABLE experiment (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        name TEXT,
        dataset_id TEXT,
        prompt_experiment_id TEXT,
        params TEXT
    );
    CREATE TABLE experiment_item (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        dataset_experiment_id TEXT,
        experiment_run_id TEXT,
        dataset_item_id TEXT,
        input TEXT,
        output TEXT
    );
    CREATE TABLE prompt_lineage (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        name TEXT,
        description TEXT,
        deleted_at TEXT
    );
    CREATE TABLE prompt_version (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        lineage_id TEXT,
        version INTEGER,
        version_desc TEXT,
        template_messages TEXT,
        tools TEXT,
        settings TEXT,
        variables TEXT,
        variables_default_values TEXT,
        label TEXT,
        status TEXT,
        tags TEXT,
        type TEXT,
        updated_at TEXT
    );
    CREATE TABLE prompt_experiment (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        from_lineage_id TEXT,
        from_version INTEGER,
        score_template_id TEXT,
        template_messages TEXT,
        settings TEXT,
        tools TEXT,
        variables TEXT
    );
    CREATE TABLE prompt_rollout (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        lineage_id TEXT,
        version INTEGER,
        rollout INTEGER
    );
    CREATE TABLE file (
        id TEXT PRIMARY KEY NOT NULL,
        created_at TEXT NOT NULL,
        mime TEXT,
        size INTEGER
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    """,
    # 2: indexes for relations, lookups and newest-first lists.
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
    # 3: uploaded file bytes in the database (PostgreSQL, shared by every replica); NULL for files
    # kept under the data directory's uploads/ folder (SQLite).
    """
    ALTER TABLE file ADD COLUMN data BLOB;
    """,
]


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
