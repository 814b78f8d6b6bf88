"""What producers may enqueue, and its normalised form: one plain dict per event.

Accepted items (normalised by the worker, never on the producer's thread):

* :class:`~agent._models.Step` (any type: ``llm`` steps carry their generation, messages
  are steps) -> its ``to_dict()``: one ``ingestStep`` of a ``send_steps`` batch.
* a ``dict`` without ``"__kind__"`` (or with ``"__kind__": "step"``) -> a step dict
  (``StepDict``, camelCase wire keys), sent as is.
* :class:`~agent._models.Score` with ``step_id``, or a dict with ``"__kind__": "score"``
  and ``"stepId"`` -> the step upsert ``{"id": step_id, "scores": [score]}`` (ingest is an
  upsert by id: the step's other fields are kept).
* :class:`~agent._models.Thread`, or a dict with ``"__kind__": "thread"`` and ``"id"``
  (optional ``name``, ``metadata``, ``participantId``/``participant_id``, ``tags``) -> one
  ``upsert_thread`` call, ``None`` values dropped as the reference SDK does.

Anything else is dropped and counted (``invalid_item``). Items must not be mutated after
they are enqueued: they are read later, on the worker thread.

A normalised thread event keeps ``"__kind__": "thread"``; every other event is a step dict.
"""

from __future__ import annotations

from typing import Any

from agent._models import Score, Step, Thread

__all__ = ["KIND_KEY", "THREAD", "Event", "Item", "is_thread", "normalize"]

KIND_KEY = "__kind__"
THREAD = "thread"
SCORE = "score"
STEP = "step"

Event = dict[str, Any]
Item = Step | Score | Thread | dict[str, Any]

_THREAD_KEYS = (("id", "id"), ("name", "name"), ("metadata", "metadata"), ("tags", "tags"))


def is_thread(event: Event) -> bool:
    return event.get(KIND_KEY) == THREAD


def _thread_event(thread_id: Any, get: Any) -> Event | None:
    if not isinstance(thread_id, str) or not thread_id:
        return None
    out: Event = {KIND_KEY: THREAD, "id": thread_id}
    for key, src in _THREAD_KEYS[1:]:
        value = get(src)
        if value is not None:
            out[key] = value
    participant = get("participantId")
    if participant is None:
        participant = get("participant_id")
    if participant is not None:
        out["participantId"] = participant
    return out


def _score_event(score: dict[str, Any]) -> Event | None:
    step_id = score.get("stepId")
    if not isinstance(step_id, str) or not step_id:
        return None
    return {"id": step_id, "scores": [score]}


def normalize(item: object) -> Event | None:
    """The event dict for ``item``, or None when it cannot be sent (count it as invalid)."""
    if type(item) is dict:
        kind = item.get(KIND_KEY)
        if kind is None:
            return item if isinstance(item.get("id"), str) else None
        if kind == STEP:
            out = {k: v for k, v in item.items() if k != KIND_KEY}
            return out if isinstance(out.get("id"), str) else None
        if kind == THREAD:
            return _thread_event(item.get("id"), item.get)
        if kind == SCORE:
            score = {k: v for k, v in item.items() if k != KIND_KEY}
            return _score_event(score)
        return None
    if isinstance(item, Step):
        return item.to_dict()
    if isinstance(item, Score):
        return _score_event(item.to_dict())
    if isinstance(item, Thread):
        return _thread_event(
            item.id,
            {
                "name": item.name,
                "metadata": item.metadata or None,
                "tags": item.tags or None,
                "participantId": item.participant_id,
            }.get,
        )
    if isinstance(item, dict):  # dict subclasses (TypedDict instances are plain dicts)
        return normalize(dict(item))
    return None
