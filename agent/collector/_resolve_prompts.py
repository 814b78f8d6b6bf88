"""Resolvers of prompts: lineages, versions (de-duplicated), variants and A/B rollouts."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

from agent.collector._resolve_base import (
    GET_OR_CREATE,
    Info,
    Resolver,
    new_id,
    one,
    related,
    request_context,
    require,
    save,
)
from agent.collector._storage import Record, Storage, Write
from agent.collector._timefmt import now_iso


def _lineage_by_name(storage: Storage, name: str) -> Record | None:
    found = storage.find("prompt_lineage", "name", [name], oldest_first=True, limit=1)
    return found[0] if found else None


def _create_lineage(_: Any, info: Info, name: str, description: str | None = None) -> Record:
    storage = request_context(info).storage
    with GET_OR_CREATE:
        existing = _lineage_by_name(storage, name)
        if existing is not None:
            return existing
        return save(
            storage, "prompt_lineage", {"id": new_id(), "name": name, "description": description}
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
    storage = request_context(info).storage
    with GET_OR_CREATE:
        require(storage, "prompt_lineage", lineageId, "Prompt lineage")
        versions = storage.find("prompt_version", "lineageId", [lineageId])
        for version in versions:
            if _same_version(version, kwargs):
                return version
        number = max((int(v["version"]) for v in versions), default=-1) + 1
        record = {
            **kwargs,
            "id": new_id(),
            "lineageId": lineageId,
            "version": number,
            "type": "CHAT",
            "updatedAt": now_iso(),
        }
        return save(storage, "prompt_version", record)


def _prompt_version(
    _: Any, info: Info, id: str | None = None, name: str | None = None, version: int | None = None
) -> Record | None:
    storage = request_context(info).storage
    if id:
        return one(storage, "prompt_version", id)
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
    ctx = request_context(info)
    lineage = one(ctx.storage, "prompt_lineage", version.get("lineageId"))
    name = quote(lineage["name"] if lineage else "", safe="")
    project = ctx.storage.project_id
    return f"{ctx.base_url}/projects/{project}/playground?name={name}&version={version['version']}"


def _create_prompt_experiment(_: Any, info: Info, **kwargs: Any) -> Record:
    return save(request_context(info).storage, "prompt_experiment", {**kwargs, "id": new_id()})


def _prompt_rollout(_: Any, info: Info, lineageName: str, projectId: str | None = None) -> Record:  # noqa: N803
    storage = request_context(info).storage
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
    storage = request_context(info).storage
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


QUERY: dict[str, Resolver] = {
    "promptLineage": lambda _, info, name: _lineage_by_name(request_context(info).storage, name),
    "promptVersion": _prompt_version,
    "promptLineageRollout": _prompt_rollout,
}

MUTATION: dict[str, Resolver] = {
    "createPromptLineage": _create_lineage,
    "createPromptVersion": _create_prompt_version,
    "createPromptExperiment": _create_prompt_experiment,
    "updatePromptLineageRollout": _update_rollout,
}

FIELDS: dict[tuple[str, str], Resolver] = {
    ("PromptVersion", "lineage"): related("prompt_lineage", "lineageId"),
    ("PromptVersion", "url"): _prompt_url,
    ("PromptVersion", "type"): lambda v, _: v.get("type") or "CHAT",
    ("PromptExperiment", "projectId"): lambda _, info: request_context(info).storage.project_id,
}
