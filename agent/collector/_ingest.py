"""Step ingestion semantics (``ingestStep``), shared by the GraphQL resolver and the fast path.

One function turns already type-checked ``ingestStep`` arguments into storage writes and a
per-step verdict, so that the general path and the batched fast path cannot drift apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.collector._storage import Record, Write
from agent.collector._timefmt import normalize_time

STEP_TYPES = frozenset(
    {
        "run",
        "tool",
        "llm",
        "embedding",
        "retrieval",
        "rerank",
        "undefined",
        "user_message",
        "assistant_message",
        "system_message",
    }
)
_STEP_TYPES_TEXT = ", ".join(sorted(STEP_TYPES))
_ID_NAMESPACE = uuid.UUID("9a3c1f0e-4b1d-4c57-9d1e-2f7c1d5b8a10")

#: Longest id accepted for a step, thread or nested object.
MAX_ID_LENGTH = 256

_ID_KEYS = ("threadId", "parentId", "rootRunId")
_TIME_KEYS = ("startTime", "endTime")
#: The plain (non-nested) ``ingestStep`` arguments, in the order :func:`check_columns` takes
#: them.
COLUMN_ARGS = (
    "id",
    "threadId",
    "parentId",
    "rootRunId",
    "type",
    "startTime",
    "endTime",
    "name",
    "error",
    "input",
    "output",
    "metadata",
    "tags",
)
#: The keys of a step record built from :data:`COLUMN_ARGS` (the environment last).
STEP_KEYS = (*COLUMN_ARGS, "environment")
_STEP_TYPES_OR_NONE = frozenset({*STEP_TYPES, None})


class InvalidValueError(ValueError):
    """An argument that has the right GraphQL type but an invalid value."""


def check_step_type(value: Any) -> str | None:
    """Validate a step type (``None`` passes); raise :class:`InvalidValueError` otherwise."""
    if value is None or value in STEP_TYPES:
        return value  # type: ignore[no-any-return]
    raise InvalidValueError(f"Invalid step type {value!r}: expected one of {_STEP_TYPES_TEXT}")


def check_time(name: str, value: Any) -> str | None:
    """Validate and normalise an ISO-8601 date argument (``None`` passes)."""
    if value is None:
        return None
    normalized = normalize_time(value) if isinstance(value, str) else None
    if normalized is None:
        raise InvalidValueError(f"Invalid {name} {str(value)[:64]!r}: expected an ISO-8601 date")
    return normalized


def check_id(name: str, value: Any) -> str | None:
    """Validate an id argument (``None`` passes): non-empty and bounded."""
    if value is None:
        return None
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidValueError(f"Invalid {name}: must be 1 to {MAX_ID_LENGTH} characters")
    return value  # type: ignore[no-any-return]


def derived_id(parent: str, role: str, index: int) -> str:
    """A deterministic id for a nested object sent without one (re-ingest stays idempotent)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{parent}/{role}/{index}"))


@dataclass(slots=True)
class IngestBatch:
    """Writes for a batch of steps, plus one verdict (``None`` = ok, else message) per step."""

    steps: list[Record] = field(default_factory=list)
    threads: dict[str, Record] = field(default_factory=dict)  # deduplicated by id
    generations: list[Record] = field(default_factory=list)
    scores: list[Record] = field(default_factory=list)
    attachments: list[Record] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)

    def writes(self) -> list[Write]:
        """The storage writes of the batch (applied in one transaction)."""
        return [
            Write("thread", list(self.threads.values()), "insert_missing"),
            Write("step", self.steps),
            Write("generation", self.generations),
            Write("score", self.scores),
            Write("attachment", self.attachments),
        ]

    def add(self, args: dict[str, Any], environment: str) -> None:
        """Validate one step's arguments and queue its writes (or record its error)."""
        try:
            self._add(args, environment)
        except InvalidValueError as exc:
            self.errors.append(str(exc))
        else:
            self.errors.append(None)

    def _add(self, args: dict[str, Any], environment: str) -> None:
        # ``args`` belongs to the batch from here on: it becomes the step record.
        step_id = check_id("step id", args.get("id"))
        if step_id is None:
            raise InvalidValueError("Invalid step id: must be 1 to 256 characters")
        get = args.get
        thread_id = get("threadId")
        for key in _ID_KEYS:
            value = get(key)
            if value is not None and (not value or len(value) > MAX_ID_LENGTH):
                check_id(key, value)
        step_type = get("type")
        if step_type is not None and step_type not in STEP_TYPES:
            check_step_type(step_type)
        for key in _TIME_KEYS:
            value = get(key)
            if value is not None:
                args[key] = check_time(key, value)
        nested = (
            args.pop("generation", None),
            args.pop("scores", None),
            args.pop("attachments", None),
        )
        if any(nested):
            self._add_nested(step_id, thread_id, environment, nested)
        args["environment"] = environment
        self.steps.append(args)
        if thread_id is not None and thread_id not in self.threads:
            self.threads[thread_id] = {"id": thread_id, "environment": environment}

    def _add_nested(
        self,
        step_id: str,
        thread_id: str | None,
        environment: str,
        nested: tuple[Record | None, list[Record] | None, list[Record] | None],
    ) -> None:
        generation, scores, attachments = nested
        generations: list[Record] = []
        if generation is not None:
            gen_type = generation.get("type")
            if gen_type is not None and gen_type not in ("CHAT", "COMPLETION"):
                raise InvalidValueError(
                    f"Invalid generation type {gen_type!r}: expected CHAT or COMPLETION"
                )
            generations.append(
                {
                    **generation,
                    "id": check_id("generation id", generation.get("id")) or step_id,
                    "type": gen_type or "CHAT",
                    "stepId": step_id,
                    "environment": environment,
                }
            )
        new_scores = [
            {
                **s,
                "id": check_id("score id", s.get("id")) or derived_id(step_id, "score", i),
                "stepId": step_id,
            }
            for i, s in enumerate(scores or ())
        ]
        new_attachments = [
            {
                **a,
                "id": check_id("attachment id", a.get("id"))
                or derived_id(step_id, "attachment", i),
                "stepId": step_id,
                "threadId": a.get("threadId") or thread_id,
            }
            for i, a in enumerate(attachments or ())
        ]
        self.generations += generations
        self.scores += new_scores
        self.attachments += new_attachments


def _valid_ids(values: list[Any], required: bool) -> bool:
    """Whether every id of a column passes :func:`check_id` (and is present if required)."""
    if required and None in values:
        return False
    present = values if required else [v for v in values if v is not None]
    return not present or (min(map(len, present)) > 0 and max(map(len, present)) <= MAX_ID_LENGTH)


def _normalized_times(values: list[Any]) -> list[Any] | None:
    """The column with every date normalised as :func:`check_time` does, or ``None`` when one
    of them is invalid."""
    distinct = {v for v in values if v is not None}
    if not distinct:
        return values
    normalized = {v: normalize_time(v) for v in distinct}
    if None in normalized.values():
        return None
    if all(k is v for k, v in normalized.items()):
        return values
    return [v if v is None else normalized[v] for v in values]


@dataclass(slots=True)
class StepColumns:
    """A checked batch of plain steps, column-wise: one list per :data:`STEP_KEYS` entry
    (times normalised, the environment stamped), and the threads it needs."""

    columns: list[list[Any]]
    threads: dict[str, Record]

    def by_key(self) -> dict[str, list[Any]]:
        """The columns keyed by wire key (for ``write_columns`` of a storage that has it)."""
        return dict(zip(STEP_KEYS, self.columns, strict=True))

    def thread_write(self) -> Write:
        """The threads the steps belong to, created when missing."""
        return Write("thread", list(self.threads.values()), "insert_missing")

    def batch(self) -> IngestBatch:
        """The same steps as an :class:`IngestBatch` of step records."""
        steps = [dict(zip(STEP_KEYS, row, strict=True)) for row in zip(*self.columns, strict=True)]
        return IngestBatch(steps=steps, threads=self.threads, errors=[None] * len(steps))


def check_columns(columns: Sequence[list[Any]], environment: str) -> StepColumns | None:
    """The batch of steps given column-wise (one list per :data:`COLUMN_ARGS` entry, values
    already type-checked, no nested objects), validated as a whole.

    Returns ``None`` when any step fails a check: the caller then runs :func:`ingest_batch`,
    which produces the per-step messages. Otherwise the result holds exactly the records
    :func:`ingest_batch` would produce for the same steps, built without per-step calls.
    """
    ids, thread_ids, parent_ids, root_ids, types, starts, ends, *rest = columns
    if not (
        _valid_ids(ids, True)
        and _valid_ids(thread_ids, False)
        and _valid_ids(parent_ids, False)
        and _valid_ids(root_ids, False)
        and _STEP_TYPES_OR_NONE.issuperset(types)
    ):
        return None
    starts_n = _normalized_times(starts)
    ends_n = _normalized_times(ends)
    if starts_n is None or ends_n is None:
        return None
    envs = [environment] * len(ids)
    threads = {
        tid: {"id": tid, "environment": environment}
        for tid in dict.fromkeys(thread_ids)
        if tid is not None
    }
    checked = [ids, thread_ids, parent_ids, root_ids, types, starts_n, ends_n, *rest, envs]
    return StepColumns(checked, threads)


def ingest_batch(steps: Sequence[dict[str, Any]], environment: str) -> IngestBatch:
    """Validate every step of a batch; the result holds the writes and per-step verdicts.

    The argument dicts are taken over (they become the step records).
    """
    batch = IngestBatch()
    for args in steps:
        batch.add(args, environment)
    return batch
