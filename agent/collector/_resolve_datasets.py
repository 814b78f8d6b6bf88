"""Resolvers of datasets, dataset items, experiments and experiment items."""

from __future__ import annotations

from typing import Any

from agent.collector._resolve_base import (
    MAX_NESTED,
    Info,
    Resolver,
    creator,
    deleter,
    getter,
    new_id,
    request_context,
    require,
    save,
)
from agent.collector._storage import Record, Storage, Write


def cascade_dataset(storage: Storage, dataset: Record) -> list[Write]:
    return [
        Write("dataset_item", storage.find("dataset_item", "datasetId", [dataset["id"]]), "delete")
    ]


def _create_dataset(_: Any, info: Info, **kwargs: Any) -> Record:
    record = {**kwargs, "id": new_id(), "type": kwargs.get("type") or "key_value"}
    return save(request_context(info).storage, "dataset", record)


def _update_dataset(_: Any, info: Info, id: str, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    require(storage, "dataset", id, "Dataset")
    return save(storage, "dataset", {"id": id, **kwargs})


def _create_dataset_item(_: Any, info: Info, datasetId: str, **kwargs: Any) -> Record:  # noqa: N803
    storage = request_context(info).storage
    require(storage, "dataset", datasetId, "Dataset")
    record = {**kwargs, "id": new_id(), "datasetId": datasetId, "intermediarySteps": []}
    return save(storage, "dataset_item", record)


def _descendants(storage: Storage, step_id: str) -> list[Record]:
    out: list[Record] = []
    frontier = [step_id]
    while frontier and len(out) < MAX_NESTED:
        children = storage.find("step", "parentId", frontier, oldest_first=True, limit=MAX_NESTED)
        out += children
        frontier = [c["id"] for c in children]
    return out[:MAX_NESTED]


def _add_step_to_dataset(_: Any, info: Info, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    dataset_id, step_id = kwargs["datasetId"], kwargs["stepId"]
    require(storage, "dataset", dataset_id, "Dataset")
    step = require(storage, "step", step_id, "Step")
    record = {
        "id": new_id(),
        "datasetId": dataset_id,
        "stepId": step_id,
        "input": step.get("input"),
        "expectedOutput": step.get("output"),
        "metadata": kwargs.get("metadata") or {},
        "intermediarySteps": _descendants(storage, step_id),
    }
    return save(storage, "dataset_item", record)


def _add_generation_to_dataset(_: Any, info: Info, **kwargs: Any) -> Record:
    storage = request_context(info).storage
    dataset_id, generation_id = kwargs["datasetId"], kwargs["generationId"]
    metadata = kwargs.get("metadata")
    require(storage, "dataset", dataset_id, "Dataset")
    gen = require(storage, "generation", generation_id, "Generation")
    if gen.get("type") == "COMPLETION":
        item_input: Any = {"prompt": gen.get("prompt")}
        expected: Any = {"content": gen.get("completion")}
    else:
        item_input = {"messages": gen.get("messages")}
        expected = gen.get("messageCompletion")
    record = {
        "id": new_id(),
        "datasetId": dataset_id,
        "generationId": generation_id,
        "input": item_input,
        "expectedOutput": expected,
        "metadata": {"type": gen.get("type"), **(metadata or {})},
        "intermediarySteps": [],
    }
    return save(storage, "dataset_item", record)


QUERY: dict[str, Resolver] = {"datasetItem": getter("dataset_item")}

MUTATION: dict[str, Resolver] = {
    "createDataset": _create_dataset,
    "updateDataset": _update_dataset,
    "deleteDataset": deleter("dataset", cascade_dataset),
    "createDatasetItem": _create_dataset_item,
    "deleteDatasetItem": deleter("dataset_item"),
    "addStepToDataset": _add_step_to_dataset,
    "addGenerationToDataset": _add_generation_to_dataset,
    "createDatasetExperiment": creator("experiment"),
    "createDatasetExperimentItem": creator("experiment_item"),
}
