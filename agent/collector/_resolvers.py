"""GraphQL resolvers of the collector: each root and nested field, over the storage interface.

Resolvers are synchronous (they run in a worker thread, never on the event loop) and see the
request through :class:`RequestContext`. Objects are wire-shaped dicts, so most fields use the
default resolver; only relations and computed fields have one here.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import quote

from graphql import GraphQLError, GraphQLResolveInfo, GraphQLSchema

from agent.collector._ingest import (
    InvalidValueError,
    check_id,
    check_step_type,
    check_time,
    ingest_batch,
)
from agent.collector._storage import (
    MAX_PAGE_SIZE,
    Filter,
    Kind,
    ListQuery,
    Record,
    Storage,
    StorageError,
    Write,
)
from agent.collector._timefmt import now_iso

Resolver = Callable[..., Any]
Info: TypeAlias = "GraphQLResolveInfo[Any]"

#: Most steps returned inside one thread, and most descendants copied by addStepToDataset.
MAX_NESTED = 1000
_MAX_FILTERS = 50

# Serialises read-then-write sequences (get-or-create, version numbering) within a process.
_GET_OR_CREATE = threading.Lock()


@dataclass(slots=True)
class RequestContext:
    """What a resolver knows about the request."""

    storage: Storage
    environment: str
    base_url: str
    file_url: Callable[[str], str]


def _ctx(info: Info) -> RequestContext:
    ctx = info.context
    assert isinstance(ctx, RequestContext)
    return ctx


def _new_id() -> str:
    return str(uuid.uuid4())


def _one(storage: Storage, kind: Kind, id_: str | None) -> Record | None:
    if not id_:
        return None
    return storage.get(kind, [id_]).get(id_)


def _require(storage: Storage, kind: Kind, id_: str, label: str) -> Record:
    record = _one(storage, kind, id_)
    if record is None:
        raise GraphQLError(f"{label} {id_!r} not found")
    return record


def _save(storage: Storage, kind: Kind, record: Record) -> Record:
    storage.write([Write(kind, [record])])
    saved = _one(storage, kind, record["id"])
    assert saved is not None
    return saved


def _checked(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (InvalidValueError, StorageError) as exc:
        raise GraphQLError(str(exc)) from exc


# -- lists -----------------------------------------------------------------------------


def _list_query(kwargs: dict[str, Any]) -> ListQuery:
    raw_filters = kwargs.get("filters") or []
    if len(raw_filters) > _MAX_FILTERS:
        raise GraphQLError(f"Too many filters (max {_MAX_FILTERS})")
    filters = tuple(
        Filter(f["field"], f["operator"], f.get("value"), f.get("path")) for f in raw_filters
    )
    order = kwargs.get("orderBy") or {}
    first = kwargs.get("first")
    if first is not None and (first < 0 or first > MAX_PAGE_SIZE):
        raise GraphQLError(f"first must be between 0 and {MAX_PAGE_SIZE}")
    return ListQuery(
        filters=filters,
        order_column=order.get("column", "createdAt"),
        descending=order.get("direction", "DESC") != "ASC",
        first=first,
        after=kwargs.get("after"),
        before=kwargs.get("before"),
    )


def _connection(info: Info, kind: Kind, kwargs: dict[str, Any]) -> Record:
    storage = _ctx(info).storage
    page = _checked(lambda: storage.list(kind, _list_query(kwargs)))
    return {
        "pageInfo": {
            "startCursor": page.cursors[0] if page.cursors else None,
            "endCursor": page.cursors[-1] if page.cursors else None,
            "hasNextPage": page.has_next,
            "hasPreviousPage": page.has_previous,
        },
        "totalCount": page.total,
        "edges": [{"cursor": c, "node": n} for c, n in zip(page.cursors, page.items, strict=True)],
    }


def _lister(kind: Kind) -> Resolver:
    def resolve(_: Any, info: Info, **kwargs: Any) -> Record:
        return _connection(info, kind, kwargs)

    return resolve


def _getter(kind: Kind, arg: str = "id") -> Resolver:
    def resolve(_: Any, info: Info, **kwargs: Any) -> Record | None:
        return _one(_ctx(info).storage, kind, kwargs.get(arg))

    return resolve


def _deleter(
    kind: Kind, cascade: Callable[[Storage, Record], list[Write]] | None = None
) -> Resolver:
    def resolve(_: Any, info: Info, id: str) -> Record | None:
        storage = _ctx(info).storage
        record = _one(storage, kind, id)
        if record is None:
            return None
        extra = cascade(storage, record) if cascade else []
        storage.write([*extra, Write(kind, [record], "delete")])
        return record

    return resolve


def _step_children(storage: Storage, step_ids: list[str]) -> list[Write]:
    return [
        Write("score", storage.find("score", "stepId", step_ids), "delete"),
        Write("attachment", storage.find("attachment", "stepId", step_ids), "delete"),
        Write("generation", storage.find("generation", "stepId", step_ids), "delete"),
    ]


def _cascade_thread(storage: Storage, thread: Record) -> list[Write]:
    steps = storage.find("step", "threadId", [thread["id"]])
    return [*_step_children(storage, [s["id"] for s in steps]), Write("step", steps, "delete")]


def _cascade_step(storage: Storage, step: Record) -> list[Write]:
    return _step_children(storage, [step["id"]])


def _cascade_dataset(storage: Storage, dataset: Record) -> list[Write]:
    return [
        Write("dataset_item", storage.find("dataset_item", "datasetId", [dataset["id"]]), "delete")
    ]


# -- participants ----------------------------------------------------------------------


def _participant(
    _: Any, info: Info, id: str | None = None, identifier: str | None = None
) -> Record | None:
    storage = _ctx(info).storage
    if id is not None:
        return _one(storage, "participant", id)
    if identifier is not None:
        found = storage.find("participant", "identifier", [identifier], oldest_first=True, limit=1)
        return found[0] if found else None
    return None


def _create_participant(_: Any, info: Info, identifier: str, metadata: Any = None) -> Record:
    storage = _ctx(info).storage
    with _GET_OR_CREATE:
        found = storage.find("participant", "identifier", [identifier], oldest_first=True, limit=1)
        if found:
            return found[0]
        return _save(
            storage,
            "participant",
            {"id": _new_id(), "identifier": identifier, "metadata": metadata or {}},
        )


def _update_participant(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    _require(storage, "participant", id, "Participant")
    return _save(storage, "participant", {"id": id, **kwargs})


def _participant_threads(participant: Record, info: Info) -> list[Record]:
    return _ctx(info).storage.find("thread", "participantId", [participant["id"]])


# -- threads ---------------------------------------------------------------------------


def _threads(_: Any, info: Info, **kwargs: Any) -> Record:
    conn = _connection(info, "thread", kwargs)
    keep = kwargs.get("stepTypesToKeep")
    if keep:
        _checked(lambda: [check_step_type(t) for t in keep])
        for edge in conn["edges"]:
            edge["node"] = {**edge["node"], "_stepTypes": frozenset(keep)}
    return conn


def _thread_fields(kwargs: dict[str, Any]) -> Record:
    out = {k: v for k, v in kwargs.items() if k in ("name", "metadata", "participantId", "tags")}
    if "participantId" in out:
        _checked(lambda: check_id("participantId", out["participantId"]))
    return out


def _create_thread(_: Any, info: Info, **kwargs: Any) -> Record:
    ctx = _ctx(info)
    record = {"id": _new_id(), "environment": ctx.environment, **_thread_fields(kwargs)}
    return _save(ctx.storage, "thread", record)


def _upsert_thread(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    ctx = _ctx(info)
    _checked(lambda: check_id("thread id", id))
    env = kwargs.get("environment") or ctx.environment
    return _save(ctx.storage, "thread", {"id": id, "environment": env, **_thread_fields(kwargs)})


def _update_thread(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    _require(storage, "thread", id, "Thread")
    return _save(storage, "thread", {"id": id, **_thread_fields(kwargs)})


def _thread_participant(thread: Record, info: Info) -> Record | None:
    return _one(_ctx(info).storage, "participant", thread.get("participantId"))


def _thread_steps(thread: Record, info: Info) -> list[Record]:
    steps = _ctx(info).storage.find(
        "step", "threadId", [thread["id"]], oldest_first=True, limit=MAX_NESTED
    )
    keep = thread.get("_stepTypes")
    if keep:
        steps = [s for s in steps if s.get("type") in keep]
    steps.sort(key=lambda s: s.get("startTime") or s["createdAt"])
    return steps


def _thread_token_count(thread: Record, info: Info) -> int:
    storage = _ctx(info).storage
    steps = storage.find("step", "threadId", [thread["id"]], limit=MAX_NESTED)
    gens = storage.find("generation", "stepId", [s["id"] for s in steps]) if steps else []
    return sum(int(g.get("tokenCount") or 0) for g in gens)


# -- steps -----------------------------------------------------------------------------


def _step_fields(kwargs: dict[str, Any]) -> Record:
    out: Record = {}
    for key in (
        "threadId",
        "parentId",
        "rootRunId",
        "name",
        "error",
        "input",
        "output",
        "metadata",
        "tags",
    ):
        if kwargs.get(key) is not None:
            out[key] = kwargs[key]
    for key in ("threadId", "parentId", "rootRunId"):
        if key in out:
            check_id(key, out[key])
    if kwargs.get("type") is not None:
        out["type"] = check_step_type(kwargs["type"])
    for key in ("startTime", "endTime"):
        if kwargs.get(key) is not None:
            out[key] = check_time(key, kwargs[key])
    return out


def _create_step(_: Any, info: Info, **kwargs: Any) -> Record:
    ctx = _ctx(info)
    fields = _checked(lambda: _step_fields(kwargs))
    record = {
        "id": _new_id(),
        "type": "undefined",
        "startTime": now_iso(),
        "environment": ctx.environment,
        **fields,
    }
    writes = [Write("step", [record])]
    if record.get("threadId"):
        writes.insert(
            0,
            Write(
                "thread",
                [{"id": record["threadId"], "environment": ctx.environment}],
                "insert_missing",
            ),
        )
    ctx.storage.write(writes)
    return _require(ctx.storage, "step", record["id"], "Step")


def _update_step(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    _require(storage, "step", id, "Step")
    fields = _checked(lambda: _step_fields(kwargs))
    return _save(storage, "step", {"id": id, **fields})


def _ingest_step(_: Any, info: Info, **kwargs: Any) -> Record:
    ctx = _ctx(info)
    batch = ingest_batch([kwargs], ctx.environment)
    error = batch.errors[0]
    if error is not None:
        return {"ok": False, "message": error}
    ctx.storage.write(batch.writes())
    return {"ok": True, "message": None}


def _step_scores(step: Record, info: Info) -> list[Record]:
    return _ctx(info).storage.find(
        "score", "stepId", [step["id"]], oldest_first=True, limit=MAX_NESTED
    )


def _step_generation(step: Record, info: Info) -> Record | None:
    found = _ctx(info).storage.find("generation", "stepId", [step["id"]], limit=1)
    return found[0] if found else None


def _step_attachments(step: Record, info: Info) -> list[Record]:
    return _ctx(info).storage.find(
        "attachment", "stepId", [step["id"]], oldest_first=True, limit=MAX_NESTED
    )


def _related(kind: Kind, key: str) -> Resolver:
    def resolve(obj: Record, info: Info) -> Record | None:
        return _one(_ctx(info).storage, kind, obj.get(key))

    return resolve


# -- generations, scores, attachments ---------------------------------------------------


def _create_generation(_: Any, info: Info, generation: Record) -> Record:
    ctx = _ctx(info)
    record = {
        **generation,
        "id": generation.get("id") or _new_id(),
        "stepId": None,
        "environment": ctx.environment,
    }
    record["type"] = record.get("type") or "CHAT"
    return _save(ctx.storage, "generation", record)


def _create_score(_: Any, info: Info, **kwargs: Any) -> Record:
    record = {**kwargs, "id": _new_id(), "updatedAt": now_iso()}
    return _save(_ctx(info).storage, "score", record)


def _update_score(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    _require(storage, "score", id, "Score")
    return _save(storage, "score", {"id": id, **kwargs, "updatedAt": now_iso()})


def _create_attachment(_: Any, info: Info, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    step = _one(storage, "step", kwargs.get("stepId"))
    record = {**kwargs, "id": _new_id(), "threadId": step.get("threadId") if step else None}
    return _save(storage, "attachment", record)


def _update_attachment(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    _require(storage, "attachment", id, "Attachment")
    kwargs.pop("projectId", None)
    return _save(storage, "attachment", {"id": id, **kwargs})


def _attachment_thread(attachment: Record, info: Info) -> str | None:
    if attachment.get("threadId"):
        return str(attachment["threadId"])
    step = _one(_ctx(info).storage, "step", attachment.get("stepId"))
    return step.get("threadId") if step else None


def _attachment_url(attachment: Record, info: Info) -> str | None:
    if attachment.get("url"):
        return str(attachment["url"])
    key = attachment.get("objectKey")
    return _ctx(info).file_url(key) if key else None


# -- datasets and experiments -----------------------------------------------------------


def _create_dataset(_: Any, info: Info, **kwargs: Any) -> Record:
    record = {**kwargs, "id": _new_id(), "type": kwargs.get("type") or "key_value"}
    return _save(_ctx(info).storage, "dataset", record)


def _update_dataset(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    _require(storage, "dataset", id, "Dataset")
    return _save(storage, "dataset", {"id": id, **kwargs})


def _create_dataset_item(_: Any, info: Info, datasetId: str, **kwargs: Any) -> Record:  # noqa: N803
    storage = _ctx(info).storage
    _require(storage, "dataset", datasetId, "Dataset")
    record = {**kwargs, "id": _new_id(), "datasetId": datasetId, "intermediarySteps": []}
    return _save(storage, "dataset_item", record)


def _descendants(storage: Storage, step_id: str) -> list[Record]:
    out: list[Record] = []
    frontier = [step_id]
    while frontier and len(out) < MAX_NESTED:
        children = storage.find("step", "parentId", frontier, oldest_first=True, limit=MAX_NESTED)
        out += children
        frontier = [c["id"] for c in children]
    return out[:MAX_NESTED]


def _add_step_to_dataset(_: Any, info: Info, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    dataset_id, step_id = kwargs["datasetId"], kwargs["stepId"]
    _require(storage, "dataset", dataset_id, "Dataset")
    step = _require(storage, "step", step_id, "Step")
    record = {
        "id": _new_id(),
        "datasetId": dataset_id,
        "stepId": step_id,
        "input": step.get("input"),
        "expectedOutput": step.get("output"),
        "metadata": kwargs.get("metadata") or {},
        "intermediarySteps": _descendants(storage, step_id),
    }
    return _save(storage, "dataset_item", record)


def _add_generation_to_dataset(_: Any, info: Info, **kwargs: Any) -> Record:
    storage = _ctx(info).storage
    dataset_id, generation_id = kwargs["datasetId"], kwargs["generationId"]
    metadata = kwargs.get("metadata")
    _require(storage, "dataset", dataset_id, "Dataset")
    gen = _require(storage, "generation", generation_id, "Generation")
    if gen.get("type") == "COMPLETION":
        item_input: Any = {"prompt": gen.get("prompt")}
        expected: Any = {"content": gen.get("completion")}
    else:
        item_input = {"messages": gen.get("messages")}
        expected = gen.get("messageCompletion")
    record = {
        "id": _new_id(),
        "datasetId": dataset_id,
        "generationId": generation_id,
        "input": item_input,
        "expectedOutput": expected,
        "metadata": {"type": gen.get("type"), **(metadata or {})},
        "intermediarySteps": [],
    }
    return _save(storage, "dataset_item", record)


def _creator(kind: Kind) -> Resolver:
    def resolve(_: Any, info: Info, **kwargs: Any) -> Record:
        return _save(_ctx(info).storage, kind, {**kwargs, "id": _new_id()})

    return resolve


# -- prompts ---------------------------------------------------------------------------


def _lineage_by_name(storage: Storage, name: str) -> Record | None:
    found = storage.find("prompt_lineage", "name", [name], oldest_first=True, limit=1)
    return found[0] if found else None


def _create_lineage(_: Any, info: Info, name: str, description: str | None = None) -> Record:
    storage = _ctx(info).storage
    with _GET_OR_CREATE:
        existing = _lineage_by_name(storage, name)
        if existing is not None:
            return existing
        return _save(
            storage, "prompt_lineage", {"id": _new_id(), "name": name, "description": description}
        )


def _norm_settings(value: Any) -> Any:
    if not value:
        return {}
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "provider"}
    return value


def _same_version(version: Record, kwargs: dict[str, Any]) -> bool:
    return (
        version.get("templateMessages") == kwargs.get("templateMessages")
        and (version.get("tools") or []) == (kwargs.get("tools") or [])
        and _norm_settings(version.get("settings")) == _norm_settings(kwargs.get("settings"))
    )


def _create_prompt_version(_: Any, info: Info, lineageId: str, **kwargs: Any) -> Record:  # noqa: N803
    storage = _ctx(info).storage
    with _GET_OR_CREATE:
        _require(storage, "prompt_lineage", lineageId, "Prompt lineage")
        versions = storage.find("prompt_version", "lineageId", [lineageId])
        for version in versions:
            if _same_version(version, kwargs):
                return version
        number = max((int(v["version"]) for v in versions), default=-1) + 1
        record = {
            **kwargs,
            "id": _new_id(),
            "lineageId": lineageId,
            "version": number,
            "type": "CHAT",
            "updatedAt": now_iso(),
        }
        return _save(storage, "prompt_version", record)


def _prompt_version(
    _: Any, info: Info, id: str | None = None, name: str | None = None, version: int | None = None
) -> Record | None:
    storage = _ctx(info).storage
    if id:
        return _one(storage, "prompt_version", id)
    if not name:
        return None
    lineage = _lineage_by_name(storage, name)
    if lineage is None:
        return None
    versions = storage.find("prompt_version", "lineageId", [lineage["id"]])
    if version is not None:
        return next((v for v in versions if v["version"] == version), None)
    if not versions:
        return None
    rollouts = [
        r for r in storage.find("prompt_rollout", "lineageId", [lineage["id"]]) if r["rollout"] > 0
    ]
    by_number = {v["version"]: v for v in versions}
    rollouts = [r for r in rollouts if r["version"] in by_number]
    if rollouts:
        pick = random.choices(rollouts, weights=[r["rollout"] for r in rollouts])[0]
        return by_number[pick["version"]]
    return max(versions, key=lambda v: int(v["version"]))


def _prompt_url(version: Record, info: Info) -> str:
    ctx = _ctx(info)
    lineage = _one(ctx.storage, "prompt_lineage", version.get("lineageId"))
    name = quote(lineage["name"] if lineage else "", safe="")
    project = ctx.storage.project_id
    return f"{ctx.base_url}/projects/{project}/playground?name={name}&version={version['version']}"


def _create_prompt_experiment(_: Any, info: Info, **kwargs: Any) -> Record:
    return _save(_ctx(info).storage, "prompt_experiment", {**kwargs, "id": _new_id()})


def _prompt_rollout(_: Any, info: Info, lineageName: str, projectId: str | None = None) -> Record:  # noqa: N803
    storage = _ctx(info).storage
    lineage = _lineage_by_name(storage, lineageName)
    rollouts = storage.find("prompt_rollout", "lineageId", [lineage["id"]]) if lineage else []
    rollouts.sort(key=lambda r: r["version"])
    return {
        "pageInfo": {
            "startCursor": None,
            "endCursor": None,
            "hasNextPage": False,
            "hasPreviousPage": False,
        },
        "edges": [{"node": {"version": r["version"], "rollout": r["rollout"]}} for r in rollouts],
    }


def _update_rollout(
    _: Any,
    info: Info,
    name: str,
    rollouts: list[Record],
    projectId: str | None = None,  # noqa: N803
) -> Record:
    storage = _ctx(info).storage
    lineage = _lineage_by_name(storage, name)
    if lineage is None:
        return {
            "ok": False,
            "message": f"Prompt lineage {name!r} not found",
            "errorCode": "NOT_FOUND",
        }
    known = {v["version"] for v in storage.find("prompt_version", "lineageId", [lineage["id"]])}
    versions = [r["version"] for r in rollouts]
    unknown = sorted(set(versions) - known)
    if unknown:
        return {
            "ok": False,
            "message": f"Unknown prompt versions: {unknown}",
            "errorCode": "UNKNOWN_VERSION",
        }
    if len(set(versions)) != len(versions):
        return {
            "ok": False,
            "message": "A version appears more than once",
            "errorCode": "DUPLICATE_VERSION",
        }
    if any(r["rollout"] < 0 for r in rollouts) or sum(r["rollout"] for r in rollouts) != 100:
        return {
            "ok": False,
            "message": "Rollout percentages must be >= 0 and sum to 100",
            "errorCode": "INVALID_ROLLOUT",
        }
    old = storage.find("prompt_rollout", "lineageId", [lineage["id"]])
    new = [
        {
            "id": f"{lineage['id']}:{r['version']}",
            "lineageId": lineage["id"],
            "version": r["version"],
            "rollout": r["rollout"],
        }
        for r in rollouts
    ]
    storage.write([Write("prompt_rollout", old, "delete"), Write("prompt_rollout", new)])
    return {"ok": True, "message": None, "errorCode": None}


# -- binding ---------------------------------------------------------------------------

QUERY: dict[str, Resolver] = {
    "participants": _lister("participant"),
    "participant": _participant,
    "threads": _threads,
    "threadDetail": _getter("thread"),
    "steps": _lister("step"),
    "step": _getter("step"),
    "scores": _lister("score"),
    "generations": _lister("generation"),
    "attachment": _getter("attachment"),
    "datasetItem": _getter("dataset_item"),
    "promptLineage": lambda _, info, name: _lineage_by_name(_ctx(info).storage, name),
    "promptVersion": _prompt_version,
    "promptLineageRollout": _prompt_rollout,
}

MUTATION: dict[str, Resolver] = {
    "createParticipant": _create_participant,
    "updateParticipant": _update_participant,
    "deleteParticipant": _deleter("participant"),
    "createThread": _create_thread,
    "upsertThread": _upsert_thread,
    "updateThread": _update_thread,
    "deleteThread": _deleter("thread", _cascade_thread),
    "createStep": _create_step,
    "updateStep": _update_step,
    "deleteStep": _deleter("step", _cascade_step),
    "ingestStep": _ingest_step,
    "createGeneration": _create_generation,
    "createScore": _create_score,
    "updateScore": _update_score,
    "deleteScore": _deleter("score"),
    "createAttachment": _create_attachment,
    "updateAttachment": _update_attachment,
    "deleteAttachment": _deleter("attachment"),
    "createDataset": _create_dataset,
    "updateDataset": _update_dataset,
    "deleteDataset": _deleter("dataset", _cascade_dataset),
    "createDatasetItem": _create_dataset_item,
    "deleteDatasetItem": _deleter("dataset_item"),
    "addStepToDataset": _add_step_to_dataset,
    "addGenerationToDataset": _add_generation_to_dataset,
    "createDatasetExperiment": _creator("experiment"),
    "createDatasetExperimentItem": _creator("experiment_item"),
    "createPromptLineage": _create_lineage,
    "createPromptVersion": _create_prompt_version,
    "createPromptExperiment": _create_prompt_experiment,
    "updatePromptLineageRollout": _update_rollout,
}

FIELDS: dict[tuple[str, str], Resolver] = {
    ("Participant", "metadata"): lambda p, _: p.get("metadata") or {},
    ("Participant", "threadCount"): lambda p, info: len(_participant_threads(p, info)),
    ("Participant", "lastEngaged"): lambda p, info: next(
        (t["createdAt"] for t in _participant_threads(p, info)), None
    ),
    ("Participant", "tokenCount"): lambda p, _: 0,
    ("Thread", "participant"): _thread_participant,
    ("Thread", "steps"): _thread_steps,
    ("Thread", "tokenCount"): _thread_token_count,
    ("Step", "scores"): _step_scores,
    ("Step", "generation"): _step_generation,
    ("Step", "attachments"): _step_attachments,
    ("Step", "thread"): _related("thread", "threadId"),
    ("Generation", "step"): _related("step", "stepId"),
    ("Generation", "projectId"): lambda _, info: _ctx(info).storage.project_id,
    ("Score", "step"): _related("step", "stepId"),
    ("Score", "projectId"): lambda _, info: _ctx(info).storage.project_id,
    ("Attachment", "url"): _attachment_url,
    ("Attachment", "threadId"): _attachment_thread,
    ("PromptVersion", "lineage"): _related("prompt_lineage", "lineageId"),
    ("PromptVersion", "url"): _prompt_url,
    ("PromptVersion", "type"): lambda v, _: v.get("type") or "CHAT",
    ("PromptExperiment", "projectId"): lambda _, info: _ctx(info).storage.project_id,
}


def bind(schema: GraphQLSchema) -> None:
    """Attach every resolver to ``schema`` (built from :data:`agent.collector._schema.SDL`)."""
    assert schema.query_type is not None and schema.mutation_type is not None
    for name, fn in QUERY.items():
        schema.query_type.fields[name].resolve = fn
    for name, fn in MUTATION.items():
        schema.mutation_type.fields[name].resolve = fn
    for (type_name, field_name), fn in FIELDS.items():
        type_ = schema.get_type(type_name)
        type_.fields[field_name].resolve = fn  # type: ignore[union-attr]
