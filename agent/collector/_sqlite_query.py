"""SQL for list queries on SQLite: filters (protocol §5.14), orders and opaque cursors.

Every filter field and order column is whitelisted per kind and mapped to an SQL expression
over the alias ``t``; values are always bound parameters.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from agent.collector._storage import Filter, StorageError
from agent.collector._timefmt import normalize_time

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()

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
    "participant": {
        "createdAt": ("t.created_at", False),
        "identifier": ("t.identifier", False),
        "threadCount": (_FILTERS["participant"]["threadCount"][0], True),
        "lastEngaged": (_FILTERS["participant"]["lastEngaged"][0], False),
    },
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


def encode_cursor(value: Any, rowid: int) -> str:
    return base64.urlsafe_b64encode(_json_encoder.encode([value, rowid])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, rowid = _json_decoder.decode(raw)
        if not isinstance(rowid, int):
            raise TypeError
    except Exception as exc:
        raise StorageError(f"Invalid cursor {cursor[:64]!r}") from exc
    return value, rowid


def order_expression(kind: str, column: str) -> tuple[str, bool]:
    """SQL expression and numeric flag of an order column; raises StorageError if unknown."""
    orders = _ORDERS.get(kind, {"createdAt": ("t.created_at", False)})
    if column not in orders:
        allowed = ", ".join(sorted(orders))
        raise StorageError(f"Cannot order {kind} by {column!r} (allowed: {allowed})")
    return orders[column]


def where_clauses(kind: str, filters: Sequence[Filter]) -> tuple[list[str], list[Any]]:
    """SQL conditions (AND-combined) and their parameters; raises StorageError if invalid."""
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
