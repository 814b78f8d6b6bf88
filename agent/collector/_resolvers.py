"""GraphQL resolvers: users, threads, steps, generations, scores, attachments; and the binding.

Datasets and experiments live in :mod:`._resolve_datasets`, prompts in
:mod:`._resolve_prompts`, shared helpers in :mod:`._resolve_base`; :func:`bind` attaches all
of them to the schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from graphql import GraphQLSchema

from agent.collector import _resolve_datasets, _resolve_prompts
from agent.collector._ingest import check_id, check_step_type, check_time, ingest_batch
from agent.collector._resolve_base import (
    GET_OR_CREATE,
    MAX_NESTED,
    Info,
    RequestContext,
    Resolver,
    cascade_step,
    cascade_thread,
    checked,
    connection,
    deleter,
    getter,
    lister,
    new_id,
    one,
    related,
    request_context,
    require,
    save,
)
from agent.collector._storage import Record, Write
from agent.collector._timefmt import now_iso

__all__ = ["RequestContext", "bind"]


# -- participants ----------------------------------------------------------------------


def _participant(
    _: Any, info: Info, id: str | None = None, identifier: str | None = None
) -> Record | None:
    storage = request_context(info).storage
    if id is not None:
        return one(storage, "participant", id)
    if identifier is not None:
        found = storage.find("participant", "identifier", [identifier], oldest_first=True, limit=1)
        return found[0] if found else None
    return None


def _create_participant(_: Any, info: Info, identifier: str, metadata: Any = None) -> Record:
    storage = request_context(info).storage
    with GET_OR_CREATE:
        found = storage.find("participant", "identifier", [identifier], oldest_first=True, limit=1)
        if found:
            return found[0]
        return save(
            storage,
            "participant",
            {"id": new_id(), "identifier": identifier, "metadata": metadata or {}},
        )


def _update_participant(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    require(storage, "participant", id, "Participant")
    return save(storage, "participant", {"id": id, **kwargs})


def _participant_threads(participant: Record, info: Info) -> list[Record]:
    return request_context(info).storage.find("thread", "participantId", [participant["id"]])


# -- threads ---------------------------------------------------------------------------


def _threads(_: Any, info: Info, **kwargs: Any) -> Record:
    conn = connection(info, "thread", kwargs)
    keep = kwargs.get("stepTypesToKeep")
    if keep:
        checked(lambda: [check_step_type(t) for t in keep])
        for edge in conn["edges"]:
            edge["node"] = {**edge["node"], "_stepTypes": frozenset(keep)}
    return conn


def _thread_fields(kwargs: dict[str, Any]) -> Record:
    out = {k: v for k, v in kwargs.items() if k in ("name", "metadata", "participantId", "tags")}
    if "participantId" in out:
        checked(lambda: check_id("participantId", out["participantId"]))
    return out


def _create_thread(_: Any, info: Info, **kwargs: Any) -> Record:
    ctx = request_context(info)
    record = {"id": new_id(), "environment": ctx.environment, **_thread_fields(kwargs)}
    return save(ctx.storage, "thread", record)


def _upsert_thread(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    ctx = request_context(info)
    checked(lambda: check_id("thread id", id))
    env = kwargs.get("environment") or ctx.environment
    return save(ctx.storage, "thread", {"id": id, "environment": env, **_thread_fields(kwargs)})


def _update_thread(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    require(storage, "thread", id, "Thread")
    return save(storage, "thread", {"id": id, **_thread_fields(kwargs)})


def _thread_participant(thread: Record, info: Info) -> Record | None:
    return one(request_context(info).storage, "participant", thread.get("participantId"))


def _thread_steps(thread: Record, info: Info) -> list[Record]:
    steps = request_context(info).storage.find(
        "step", "threadId", [thread["id"]], oldest_first=True, limit=MAX_NESTED
    )
    keep = thread.get("_stepTypes")
    if keep:
        steps = [s for s in steps if s.get("type") in keep]
    steps.sort(key=lambda s: s.get("startTime") or s["createdAt"])
    return steps


def _token_count(info: Info, thread_ids: list[str]) -> int:
    """Tokens of the generations in these threads' steps (at most MAX_NESTED steps)."""
    storage = request_context(info).storage
    if not thread_ids:
        return 0
    steps = storage.find("step", "threadId", thread_ids, limit=MAX_NESTED)
    gens = storage.find("generation", "stepId", [s["id"] for s in steps]) if steps else []
    return sum(int(g.get("tokenCount") or 0) for g in gens)


def _thread_token_count(thread: Record, info: Info) -> int:
    return _token_count(info, [thread["id"]])


def _thread_duration(thread: Record, info: Info) -> float | None:
    """Seconds from the first step's start to the last step's end; ``None`` without steps.

    Stored times share one form (``normalize_time``), so text order is time order.
    """
    steps = request_context(info).storage.find(
        "step", "threadId", [thread["id"]], limit=MAX_NESTED
    )
    if not steps:
        return None
    first = min(s.get("startTime") or s["createdAt"] for s in steps)
    last = max(s.get("endTime") or s.get("startTime") or s["createdAt"] for s in steps)
    return max(0.0, (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds())


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
    ctx = request_context(info)
    fields = checked(lambda: _step_fields(kwargs))
    record = {
        "id": new_id(),
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
    return require(ctx.storage, "step", record["id"], "Step")


def _update_step(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    require(storage, "step", id, "Step")
    fields = checked(lambda: _step_fields(kwargs))
    return save(storage, "step", {"id": id, **fields})


def _ingest_step(_: Any, info: Info, **kwargs: Any) -> Record:
    ctx = request_context(info)
    batch = ingest_batch([kwargs], ctx.environment)
    error = batch.errors[0]
    if error is not None:
        return {"ok": False, "message": error}
    ctx.storage.write(batch.writes())
    return {"ok": True, "message": None}


def _step_scores(step: Record, info: Info) -> list[Record]:
    return request_context(info).storage.find(
        "score", "stepId", [step["id"]], oldest_first=True, limit=MAX_NESTED
    )


def _step_generation(step: Record, info: Info) -> Record | None:
    found = request_context(info).storage.find("generation", "stepId", [step["id"]], limit=1)
    return found[0] if found else None


def _step_attachments(step: Record, info: Info) -> list[Record]:
    return request_context(info).storage.find(
        "attachment", "stepId", [step["id"]], oldest_first=True, limit=MAX_NESTED
    )


# -- generations, scores, attachments ---------------------------------------------------


def _create_generation(_: Any, info: Info, generation: Record) -> Record:
    ctx = request_context(info)
    record = {
        **generation,
        "id": generation.get("id") or new_id(),
        "stepId": None,
        "environment": ctx.environment,
    }
    record["type"] = record.get("type") or "CHAT"
    return save(ctx.storage, "generation", record)


def _create_score(_: Any, info: Info, **kwargs: Any) -> Record:
    record = {**kwargs, "id": new_id(), "updatedAt": now_iso()}
    return save(request_context(info).storage, "score", record)


def _update_score(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    require(storage, "score", id, "Score")
    return save(storage, "score", {"id": id, **kwargs, "updatedAt": now_iso()})


def _create_attachment(_: Any, info: Info, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    step = one(storage, "step", kwargs.get("stepId"))
    record = {**kwargs, "id": new_id(), "threadId": step.get("threadId") if step else None}
    return save(storage, "attachment", record)


def _update_attachment(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    require(storage, "attachment", id, "Attachment")
    kwargs.pop("projectId", None)
    return save(storage, "attachment", {"id": id, **kwargs})


def _attachment_thread(attachment: Record, info: Info) -> str | None:
    if attachment.get("threadId"):
        return str(attachment["threadId"])
    step = one(request_context(info).storage, "step", attachment.get("stepId"))
    return step.get("threadId") if step else None


def _attachment_url(attachment: Record, info: Info) -> str | None:
    if attachment.get("url"):
        return str(attachment["url"])
    key = attachment.get("objectKey")
    return request_context(info).file_url(key) if key else None


QUERY: dict[str, Resolver] = {
    "participants": lister("participant"),
    "participant": _participant,
    "threads": _threads,
    "threadDetail": getter("thread"),
    "steps": lister("step"),
    "step": getter("step"),
    "scores": lister("score"),
    "generations": lister("generation"),
    "attachment": getter("attachment"),
    **_resolve_datasets.QUERY,
    **_resolve_prompts.QUERY,
}

MUTATION: dict[str, Resolver] = {
    "createParticipant": _create_participant,
    "updateParticipant": _update_participant,
    "deleteParticipant": deleter("participant"),
    "createThread": _create_thread,
    "upsertThread": _upsert_thread,
    "updateThread": _update_thread,
    "deleteThread": deleter("thread", cascade_thread),
    "createStep": _create_step,
    "updateStep": _update_step,
    "deleteStep": deleter("step", cascade_step),
    "ingestStep": _ingest_step,
    "createGeneration": _create_generation,
    "createScore": _create_score,
    "updateScore": _update_score,
    "deleteScore": deleter("score"),
    "createAttachment": _create_attachment,
    "updateAttachment": _update_attachment,
    "deleteAttachment": deleter("attachment"),
    **_resolve_datasets.MUTATION,
    **_resolve_prompts.MUTATION,
}

FIELDS: dict[tuple[str, str], Resolver] = {
    ("Participant", "metadata"): lambda p, _: p.get("metadata") or {},
    ("Participant", "threadCount"): lambda p, info: len(_participant_threads(p, info)),
    ("Participant", "lastEngaged"): lambda p, info: next(
        (t["createdAt"] for t in _participant_threads(p, info)), None
    ),
    ("Participant", "tokenCount"): lambda p, info: _token_count(
        info, [t["id"] for t in _participant_threads(p, info)]
    ),
    ("Thread", "participant"): _thread_participant,
    ("Thread", "steps"): _thread_steps,
    ("Thread", "tokenCount"): _thread_token_count,
    ("Thread", "duration"): _thread_duration,
    ("Step", "scores"): _step_scores,
    ("Step", "generation"): _step_generation,
    ("Step", "attachments"): _step_attachments,
    ("Step", "thread"): related("thread", "threadId"),
    ("Generation", "step"): related("step", "stepId"),
    ("Generation", "projectId"): lambda _, info: request_context(info).storage.project_id,
    ("Score", "step"): related("step", "stepId"),
    ("Score", "projectId"): lambda _, info: request_context(info).storage.project_id,
    ("Attachment", "url"): _attachment_url,
    ("Attachment", "threadId"): _attachment_thread,
    **_resolve_prompts.FIELDS,
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
