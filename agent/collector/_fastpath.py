"""Batched fast paths: the SDK's ``AddStep`` (send_steps) and ``CreateScores`` documents.

A validated document made only of ``ingestStep`` (or only of ``createScore``) fields whose
arguments are all variables gets a :class:`Plan`. A request with a plan is answered straight
from its variables, which arrive as undecoded JSON (``msgspec.Raw``): strings are decoded with
typed decoders, JSON arguments (``input``, ``output``, ``metadata``, ``tags``) are stored as
the client's JSON text without a decode/encode round trip, and the whole batch is written in
one storage call (column-wise, without a dict per step, when the storage has
``write_columns``). Any variable that does not have exactly the expected shape makes
:func:`run_plan` return ``None`` and the caller falls back to graphql-core, which produces the
standard messages; per-step checks are shared with the resolver (:mod:`._ingest`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

import msgspec
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLInputType,
    GraphQLSchema,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    coerce_input_value,
)

from agent.collector._ingest import COLUMN_ARGS, StepColumns, check_columns, ingest_batch
from agent.collector._resolvers import RequestContext
from agent.collector._storage import JsonText, Record, Write
from agent.collector._timefmt import now_iso

RawVariables = dict[str, msgspec.Raw]
#: A checker turns one raw variable into the argument value, or returns FALLBACK.
Checker = Callable[[msgspec.Raw], Any]
FALLBACK: Any = object()

_NULL = b"null"
_EMPTY_LIST = b"[]"
_NULL_RAW = msgspec.Raw(_NULL)
#: ``ingestStep`` arguments read column-wise, by how they are checked.
_STRING_ARGS = frozenset(("id", "threadId", "parentId", "rootRunId", "type", "name", "startTime",
                          "endTime", "error"))  # fmt: skip
_NESTED_ARGS = ("generation", "scores", "attachments")
_NO_NESTED = frozenset((_NULL, _EMPTY_LIST))
_str = msgspec.json.Decoder(str | None)
_str_list = msgspec.json.Decoder(list[str] | None)
_float = msgspec.json.Decoder(float | None)
_score_type = msgspec.json.Decoder(Literal["HUMAN", "CODE", "AI"] | None)
_any = msgspec.json.Decoder()
_SCORE_FIELDS = frozenset(
    {
        "id", "name", "type", "value", "label", "comment", "scorer", "tags", "stepId",
        "datasetExperimentItemId", "createdAt", "updatedAt",
    }
)  # fmt: skip


def _typed(decoder: msgspec.json.Decoder[Any]) -> Checker:
    def check(raw: msgspec.Raw) -> Any:
        try:
            return decoder.decode(raw)
        except msgspec.DecodeError:
            return FALLBACK

    return check


_check_str = _typed(_str)
_check_str_list = _typed(_str_list)


def _json_text(raw: msgspec.Raw) -> Any:
    """Keep a JSON argument as the client's text (msgspec has already validated it)."""
    text = str(raw, "utf-8")  # type: ignore[call-overload]
    return None if text == "null" else JsonText(text)


def _tags_text(raw: msgspec.Raw) -> Any:
    """``[String!]`` kept as text once it is known to be a list of strings."""
    value = _check_str_list(raw)
    if value is FALLBACK or value is None:
        return value
    return JsonText(str(raw, "utf-8"))  # type: ignore[call-overload]


def _input_object(type_: GraphQLInputType) -> Checker:
    def check(raw: msgspec.Raw) -> Any:
        if bytes(raw) == _EMPTY_LIST:
            return []
        try:
            value = _any.decode(raw)
            return None if value is None else coerce_input_value(value, type_)
        except (msgspec.DecodeError, GraphQLError):
            return FALLBACK

    return check


def decode_variables(raw: RawVariables) -> dict[str, Any]:
    """Fully decode raw variables (for the general path)."""
    return {name: _any.decode(value) for name, value in raw.items()}


@dataclass(slots=True)
class _Field:
    key: str  # response key (alias)
    args: list[tuple[str, str, Checker]]  # (argument, variable, checker)
    selected: list[str]


@dataclass(slots=True)
class Plan:
    """A recognised batch document: its root fields, each fed only by variables."""

    root: str  # "ingestStep" or "createScore"
    fields: list[_Field]
    required: frozenset[str]  # variables declared non-null
    #: ``ingestStep`` only: per argument, the variable feeding it in each field (``None``:
    #: argument not passed), for the column-wise path.
    columns: dict[str, list[str | None]] = field(default_factory=dict)
    #: ``ingestStep`` only: the response data when every step is stored.
    all_ok: dict[str, Any] = field(default_factory=dict)
    #: ``ingestStep`` only: how :func:`defer_batch` decodes the variables in one call, once
    #: learned from a request; ``False``: this plan cannot have one.
    layout: _Layout | Literal[False] | None = None


def _checker_for(root: str, arg: str, type_: Any) -> Checker:
    if root == "ingestStep" and arg in ("input", "output", "metadata"):
        return _json_text
    if root == "ingestStep" and arg == "tags":
        return _tags_text
    if arg == "tags":
        return _check_str_list
    if root == "createScore" and arg == "value":
        return _typed(_float)
    if root == "createScore" and arg == "type":
        return _typed(_score_type)
    named = getattr(type_, "of_type", type_)
    if getattr(named, "name", "") in ("String", "DateTime", "StepType"):
        return _check_str
    return _input_object(type_)


def make_plan(schema: GraphQLSchema, document: DocumentNode) -> Plan | None:
    """The plan of a validated document, or ``None`` when it is not a recognised batch."""
    if len(document.definitions) != 1:
        return None
    op = document.definitions[0]
    if not isinstance(op, OperationDefinitionNode) or op.operation != OperationType.MUTATION:
        return None
    if op.directives:
        return None
    required: set[str] = set()
    for definition in op.variable_definitions or ():
        if definition.default_value is not None or definition.directives:
            return None
        if isinstance(definition.type, NonNullTypeNode):
            required.add(definition.variable.name.value)
    mutation = schema.mutation_type
    assert mutation is not None
    root_name: str | None = None
    fields: list[_Field] = []
    for selection in op.selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return None
        name = selection.name.value
        if name not in ("ingestStep", "createScore") or (root_name and name != root_name):
            return None
        root_name = name
        arg_defs = mutation.fields[name].args
        args: list[tuple[str, str, Checker]] = []
        for arg in selection.arguments or ():
            if not isinstance(arg.value, VariableNode):
                return None
            checker = _checker_for(name, arg.name.value, arg_defs[arg.name.value].type)
            args.append((arg.name.value, arg.value.name.value, checker))
        allowed = {"ok", "message"} if name == "ingestStep" else _SCORE_FIELDS
        selected = _selected(selection, allowed)
        if selected is None:
            return None
        key = selection.alias.value if selection.alias else name
        fields.append(_Field(key, args, selected))
    if root_name is None:
        return None
    plan = Plan(root_name, fields, frozenset(required))
    if root_name == "ingestStep":
        plan.columns = {arg: [None] * len(fields) for arg in (*COLUMN_ARGS, *_NESTED_ARGS)}
        for index, fld in enumerate(fields):
            for arg_name, var, _ in fld.args:
                plan.columns[arg_name][index] = var
        ok = {"ok": True, "message": None}
        plan.all_ok = {fld.key: {k: ok[k] for k in fld.selected} for fld in fields}
    return plan


def _selected(selection: FieldNode, allowed: frozenset[str] | set[str]) -> list[str] | None:
    out: list[str] = []
    for sub in selection.selection_set.selections if selection.selection_set else ():
        if (
            not isinstance(sub, FieldNode)
            or sub.alias
            or sub.arguments
            or sub.directives
            or sub.selection_set
            or sub.name.value not in allowed
        ):
            return None
        out.append(sub.name.value)
    return out


def _arguments(plan: Plan, variables: RawVariables) -> list[dict[str, Any]] | None:
    rows: list[dict[str, Any]] = []
    get = variables.get
    decode_str = _str.decode
    try:
        for fld in plan.fields:
            args: dict[str, Any] = {}
            for arg, var, check in fld.args:
                raw = get(var)
                if raw is None:
                    continue  # absent variable: absent argument
                if check is _check_str:  # the common case, inlined
                    args[arg] = decode_str(raw)
                    continue
                value = check(raw)
                if value is FALLBACK:
                    return None
                args[arg] = value
            rows.append(args)
    except msgspec.DecodeError:
        return None
    return rows


def _json_column(raws: list[Any], text_type: type[str]) -> list[Any]:
    """JSON arguments kept as the client's text (``null`` -> ``None``)."""
    texts: list[Any] = list(map(text_type, raws, repeat("utf-8")))
    if "null" in texts:
        return [None if text == "null" else text for text in texts]
    return texts


def _checked_columns(
    column: Callable[[str], list[Any]], decode_strings: bool, text_type: type[str], env: str
) -> StepColumns | None:
    """The common ``send_steps`` batch, checked column-wise (one decoder call per value, no
    per-step Python); ``None`` when the batch needs the per-step path (nested objects, a
    value of the wrong type, an invalid step). ``column(arg)`` gives an argument's values,
    one per step: raw JSON, except string arguments when not ``decode_strings`` (decoded
    already). JSON columns hold ``text_type`` text."""
    columns: list[list[Any]] = []
    try:
        for arg in _NESTED_ARGS:
            if not _NO_NESTED.issuperset(map(bytes, column(arg))):
                return None
        for arg in COLUMN_ARGS:
            values = column(arg)
            if arg in _STRING_ARGS:
                columns.append(list(map(_str.decode, values)) if decode_strings else values)
                continue
            if arg == "tags":  # [String!], kept as text once checked
                for _ in map(_str_list.decode, values):
                    pass
            columns.append(_json_column(values, text_type))
    except msgspec.DecodeError:
        return None
    return check_columns(columns, env)


def _step_columns(
    plan: Plan, variables: RawVariables, ctx: RequestContext, text_type: type[str]
) -> StepColumns | None:
    """:func:`_checked_columns` of a batch whose variables are decoded into a dict."""
    get: Callable[..., Any] = variables.get  # keys may be None (argument not passed)

    def column(arg: str) -> list[Any]:
        return list(map(get, plan.columns[arg], repeat(_NULL_RAW)))

    return _checked_columns(column, True, text_type, ctx.environment)


def _ingest_columns(
    plan: Plan, variables: RawVariables, ctx: RequestContext
) -> dict[str, Any] | None:
    """The common ``send_steps`` batch written column-wise (see :func:`_step_columns`)."""
    # A storage with ``write_columns`` (SQLite) takes the columns as they are, JSON as plain
    # text; any other gets step records, JSON as JsonText.
    write_columns = getattr(ctx.storage, "write_columns", None)
    checked = _step_columns(plan, variables, ctx, JsonText if write_columns is None else str)
    if checked is None:
        return None
    if write_columns is not None:
        write_columns([checked.thread_write()], "step", checked.by_key())
    else:
        ctx.storage.write(checked.batch().writes())
    return {"data": dict(plan.all_ok)}


#: Starts a deferred write; the callback gets ``None`` once the write is kept (committed, or
#: in the ingest journal), else the error.
Submit = Callable[[Callable[[BaseException | None], None]], None]


def _required_present(plan: Plan, variables: RawVariables) -> bool:
    """Whether every variable declared non-null is given and not ``null`` (else graphql-core
    answers, with its message)."""
    required: list[Any] = list(map(variables.get, plan.required))
    return None not in required and _NULL not in map(bytes, required)


@dataclass(slots=True)
class _Layout:
    """A batch's variables decoded in one call into one struct: each step's fields together,
    in the order the client sends them (msgspec matches keys fastest in field order), so
    that a column is a strided slice of the struct's values."""

    decoder: msgspec.json.Decoder[Any]
    stride: int  # fields per step
    position: dict[str, int]  # argument -> its field's offset within a step
    required: list[int]  # value indexes of the variables declared non-null


def _learn_layout(plan: Plan, variables: RawVariables) -> _Layout | Literal[False]:
    """The struct layout of ``plan``'s variables, in the key order of one request's;
    ``False`` when the plan cannot have one (an argument not passed to every field, a
    variable feeding two arguments)."""
    args = (*_NESTED_ARGS, *COLUMN_ARGS)
    var_arg = {var: (arg, i) for arg in args for i, var in enumerate(plan.columns[arg])}
    if None in var_arg or len(var_arg) != len(args) * len(plan.fields):
        return False
    sent = [var_arg[name][0] for name in variables if var_arg.get(name, ("", 1))[1] == 0]
    order = [*dict.fromkeys(sent), *(arg for arg in args if arg not in sent)]
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for index in range(len(plan.fields)):
        for arg in order:
            name = f"f{len(fields)}"
            rename[name] = plan.columns[arg][index]  # type: ignore[assignment]
            if arg in _STRING_ARGS:
                fields.append((name, str | None, None))
            else:
                fields.append((name, msgspec.Raw, _NULL_RAW))
    index_of = {var: i for i, var in enumerate(rename.values())}
    if not plan.required <= index_of.keys():
        return False
    struct = msgspec.defstruct("StepVariables", fields, rename=rename)
    position = {arg: order.index(arg) for arg in args}
    required = sorted(index_of[var] for var in plan.required)
    return _Layout(msgspec.json.Decoder(struct), len(order), position, required)


def _layout_columns(layout: _Layout, values: tuple[Any, ...], env: str) -> StepColumns | None:
    """:func:`_checked_columns` of a batch decoded with ``layout`` (same checks, same
    result as :func:`_step_columns`)."""
    for index in layout.required:
        value = values[index]
        if value is None or (type(value) is msgspec.Raw and bytes(value) == _NULL):
            return None
    stride, position = layout.stride, layout.position

    def column(arg: str) -> list[Any]:
        return list(values[position[arg] :: stride])

    return _checked_columns(column, False, str, env)


_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw] | None)


def defer_batch(
    plan: Plan, raw_variables: msgspec.Raw, ctx: RequestContext
) -> tuple[dict[str, Any], Submit] | None:
    """For a caller that must not block: the answer of a planned ``send_steps`` batch whose
    steps all pass, and the function that queues its write (the answer holds once the write
    is kept). ``None`` when the request needs :func:`run_plan` (on a thread): another shape,
    a step that fails a check, or a storage without ``submit_columns``.

    ``raw_variables`` is the request's whole ``variables`` value, undecoded: decoded in one
    call into the plan's struct (:class:`_Layout`, learned from the plan's first deferred
    request), or else into a dict of raw values.
    """
    submit_columns = getattr(ctx.storage, "submit_columns", None)
    if submit_columns is None or not plan.columns:
        return None
    layout = plan.layout
    try:
        if layout:
            values = msgspec.structs.astuple(layout.decoder.decode(raw_variables))
            checked = _layout_columns(layout, values, ctx.environment)
        else:
            variables = _raw_dict.decode(raw_variables)
            if variables is None:
                return None
            if layout is None:
                plan.layout = _learn_layout(plan, variables)
            if not _required_present(plan, variables):
                return None
            checked = _step_columns(plan, variables, ctx, str)
    except msgspec.DecodeError:
        return None
    if checked is None:
        return None
    writes, columns = [checked.thread_write()], checked.by_key()

    def submit(callback: Callable[[BaseException | None], None]) -> None:
        submit_columns(writes, "step", columns, callback)

    return {"data": dict(plan.all_ok)}, submit


def run_plan(plan: Plan, variables: RawVariables, ctx: RequestContext) -> dict[str, Any] | None:
    """Answer a planned request, or ``None`` to let graphql-core answer it."""
    if not _required_present(plan, variables):
        return None
    if plan.columns:
        answer = _ingest_columns(plan, variables, ctx)
        if answer is not None:
            return answer
    rows = _arguments(plan, variables)
    if rows is None:
        return None
    if plan.root == "ingestStep":
        return _ingest(plan, rows, ctx)
    return _scores(plan, rows, ctx)


def _ingest(plan: Plan, rows: list[dict[str, Any]], ctx: RequestContext) -> dict[str, Any]:
    batch = ingest_batch(rows, ctx.environment)
    ctx.storage.write(batch.writes())
    data: dict[str, Any] = {}
    for fld, error in zip(plan.fields, batch.errors, strict=True):
        result = {"ok": error is None, "message": error}
        data[fld.key] = {k: result[k] for k in fld.selected}
    return {"data": data}


def _scores(plan: Plan, rows: list[dict[str, Any]], ctx: RequestContext) -> dict[str, Any]:
    now = now_iso()
    records: list[Record] = [
        {**args, "id": str(uuid.uuid4()), "createdAt": now, "updatedAt": now} for args in rows
    ]
    ctx.storage.write([Write("score", records)])
    data: dict[str, Any] = {}
    for fld, record in zip(plan.fields, records, strict=True):
        data[fld.key] = {k: record.get(k) for k in fld.selected}
    return {"data": data}
