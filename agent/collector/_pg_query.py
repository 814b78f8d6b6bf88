"""SQL for list queries on PostgreSQL: filters, orders, JSON paths.

The filter fields and order columns are SQLite's (:mod:`agent.collector._sqlite_query`):
the same whitelisted SQL expressions over the alias ``t``, values always bound parameters.
Only the spelling of a condition differs, chosen so that results match SQLite's:

* comparisons with a text column convert the value as SQLite's TEXT affinity does;
* ``ilike`` is ``ILIKE ... ESCAPE ''`` on ``"C"``-collated text (SQLite ``LIKE``: ASCII-only
  case folding, no escape character);
* a JSON ``path`` is typed like SQLite's ``json_extract``: strings, objects and arrays
  compare as text, numbers and booleans (1/0) as numbers, JSON null / missing as NULL;
  ``gt``/``lt`` across types order every number before every text, as SQLite does.

Known difference: a non-numeric string compared with a numeric field (``value gt "abc"``)
is a :class:`StorageError` here; SQLite compares it by type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.collector._sqlbase import (
    COMPARE,
    NEGATIVE,
    checked_value,
    like_pattern,
    parse_path,
    split_relation,
)
from agent.collector._sqlite_query import _FILTERS, FieldKind, order_expression
from agent.collector._storage import Filter, StorageError

_DEFAULT_FIELDS: dict[str, tuple[str, FieldKind]] = {
    "id": ("t.id", "text"),
    "createdAt": ("t.created_at", "time"),
}


def order_key(kind: str, column: str) -> tuple[str, bool]:
    """The sort key expression of an order column (never NULL) and whether it is numeric.

    Text keys sort in the ``"C"`` collation, numeric keys as ``double precision`` (so a
    cursor carries a JSON number); NULLs sort as SQLite's do (``''`` / ``-1e308``).
    """
    expr, numeric = order_expression(kind, column)
    if expr == "t.created_at":
        return expr, False  # NOT NULL and indexed with seq: no COALESCE
    if numeric:
        return f"CAST(COALESCE({expr}, -1e308) AS DOUBLE PRECISION)", True
    return f"(COALESCE({expr}, '') COLLATE \"C\")", False


def where_clauses(kind: str, filters: Sequence[Filter]) -> tuple[list[str], list[Any]]:
    """SQL conditions (AND-combined) and their parameters; raises StorageError if invalid."""
    fields = _FILTERS.get(kind, _DEFAULT_FIELDS)
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
    relation = split_relation(expr)
    if relation is None:
        return _simple_condition(expr, kind, flt)
    template, placeholder, inner_expr = relation
    op = flt.operator
    positive = Filter(flt.field, NEGATIVE.get(op, op), flt.value, flt.path)
    inner, params = _simple_condition(inner_expr, kind, positive)
    sql = template.replace(placeholder, inner)
    return (f"NOT {sql}" if op in NEGATIVE else sql), params


def pg_text(value: str) -> str:
    """``value`` storable in a PostgreSQL text column: NUL (which PostgreSQL rejects and
    SQLite keeps) becomes U+FFFD, the same on writes and lookups."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def as_text(value: Any) -> str:
    """A value compared with a text column, converted as SQLite's TEXT affinity does."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return pg_text(value if isinstance(value, str) else str(value))


def _as_number(value: Any, flt: Filter) -> float:
    """A value compared with a numeric field (booleans are 1/0, as SQLite binds them)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StorageError(
            f"Operator {flt.operator!r} on field {flt.field!r} needs a number, got {value!r:.64}"
        ) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)  # bools included: SQLite binds them as 0/1


def _simple_condition(expr: str, kind: FieldKind, flt: Filter) -> tuple[str, list[Any]]:
    if flt.path is not None:
        path = parse_path(flt, kind)
        value = checked_value(kind, flt)
        return _json_path_condition(f"{expr} #> %s::text[]", path, flt.operator, value, flt)
    value = checked_value(kind, flt)
    op = flt.operator
    text_expr = f'({expr}::text COLLATE "C")' if kind in ("json", "list") else expr
    if kind == "num":
        return _scalar_condition(expr, "DOUBLE PRECISION", flt, value, _as_number)
    if op in ("in", "nin") and kind == "list":
        sql = (
            f"EXISTS (SELECT 1 FROM json_array_elements_text(CASE WHEN json_typeof({expr})"
            f" = 'array' THEN {expr} END) j(v) WHERE j.v = ANY(%s::text[]))"
        )
        values = [as_text(v) for v in value]
        return (f"NOT {sql}" if op == "nin" else sql), [values]
    if op in ("is", "nis") and value is None:
        return f"{expr} IS {'NOT ' if op == 'nis' else ''}NULL", []
    return _scalar_condition(text_expr, "TEXT", flt, value, lambda v, _f: as_text(v))


def _scalar_condition(
    expr: str, sql_type: str, flt: Filter, value: Any, convert: Any
) -> tuple[str, list[Any]]:
    """eq/neq/compare/ilike/in/is on a scalar expression of type ``sql_type``."""
    op = flt.operator
    array = "float8[]" if sql_type == "DOUBLE PRECISION" else "text[]"
    param = f"CAST(%s AS {sql_type})"
    if op == "eq":
        return f"{expr} = {param}", [convert(value, flt)]
    if op == "neq":
        return f"{expr} IS DISTINCT FROM {param}", [convert(value, flt)]
    if op in COMPARE:
        return f"{expr} {COMPARE[op]} {param}", [convert(value, flt)]
    if op in ("ilike", "nilike"):
        target = f"CAST({expr} AS TEXT)" if sql_type != "TEXT" else expr
        pattern = pg_text(like_pattern(value))
        if op == "ilike":
            return f"{target} ILIKE %s ESCAPE ''", [pattern]
        return f"({target} IS NULL OR {target} NOT ILIKE %s ESCAPE '')", [pattern]
    if op in ("in", "nin"):
        values = [convert(v, flt) for v in value]
        if op == "in":
            return f"{expr} = ANY(%s::{array})", [values]
        return f"NOT COALESCE({expr} = ANY(%s::{array}), FALSE)", [values]
    # is / nis with a boolean (null was handled by the caller): SQLite compares with 1/0.
    if value is None:
        return f"{expr} IS {'NOT ' if op == 'nis' else ''}NULL", []
    test = "=" if op == "is" else "<>"
    return f"{expr} {test} {param}", [convert(int(value), flt)]


def _json_path_condition(
    node: str, path: list[str], op: str, value: Any, flt: Filter
) -> tuple[str, list[Any]]:
    """A filter on the JSON value at ``path``, typed as SQLite's ``json_extract`` returns it.

    Strings (and objects/arrays, as their JSON text) compare as text, numbers and booleans
    (as 1/0) as numbers; JSON ``null`` and a missing key are SQL NULL. The value is
    extracted once, in a scalar sub-select (``x.n``), so the path is bound once.
    """
    n = "x.n"
    text = (
        f"(CASE WHEN json_typeof({n}) IN ('string', 'object', 'array')"
        f" THEN {n} #>> '{{}}' END) COLLATE \"C\""
    )
    num = (
        f"(CASE json_typeof({n}) WHEN 'number' THEN ({n} #>> '{{}}')::float8"
        f" WHEN 'boolean' THEN CASE WHEN ({n} #>> '{{}}') = 'true' THEN 1.0 ELSE 0.0 END END)"
    )
    raw = f"(({n} #>> '{{}}') COLLATE \"C\")"
    params: list[Any] = []
    if op in ("is", "nis") and value is None:
        cond = f"({n} IS NULL OR json_typeof({n}) = 'null')"
        if op == "nis":
            cond = f"NOT {cond}"
    elif op in ("ilike", "nilike"):
        params.append(pg_text(like_pattern(value)))
        if op == "ilike":
            cond = f"{raw} ILIKE %s ESCAPE ''"
        else:
            cond = f"({raw} IS NULL OR {raw} NOT ILIKE %s ESCAPE '')"
    elif op in ("in", "nin"):
        texts = [pg_text(v) for v in value if isinstance(v, str)]
        numbers = [float(v) for v in value if _is_number(v)]
        cond = f"({text} = ANY(%s::text[]) OR {num} = ANY(%s::float8[]))"
        params += [texts, numbers]
        if op == "nin":
            cond = f"NOT COALESCE({cond}, FALSE)"
    else:
        if op in ("is", "nis"):
            value = int(value)
        if isinstance(value, str):
            expr, cast, value = text, "TEXT", pg_text(value)
        else:
            expr, cast = num, "DOUBLE PRECISION"
            value = float(value)
        params.append(value)
        if op == "neq":
            cond = f"{expr} IS DISTINCT FROM CAST(%s AS {cast})"
        elif op in COMPARE:
            # SQLite orders every number before every text: a value of the other type
            # compares by type alone.
            other = num if cast == "TEXT" else text
            above = "TRUE" if (op in ("lt", "lte")) == (cast == "TEXT") else "FALSE"
            cond = (
                f"CASE WHEN {other} IS NOT NULL THEN {above}"
                f" ELSE {expr} {COMPARE[op]} CAST(%s AS {cast}) END"
            )
        else:
            sql_op = {"eq": "=", "is": "=", "nis": "<>"}[op]
            cond = f"{expr} {sql_op} CAST(%s AS {cast})"
    return f"(SELECT {cond} FROM (SELECT {node} AS n) x)", [*params, path]  # text order
