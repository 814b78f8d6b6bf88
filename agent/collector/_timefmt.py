"""Timestamps of the collector: parse ISO-8601 input, produce UTC ``...Z`` strings."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_time(value: str) -> str | None:
    """Return ``value`` as a UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` string, or ``None`` when it
    is not a date.

    Accepts ``Z`` or a numeric offset, with or without fraction (any precision Python
    parses); a value without offset is taken as UTC. Every stored time has this one form, so
    that text order is time order (``...:01Z`` would sort after ``...:01.5Z``). A value
    already in that form is returned unchanged (the common case, kept cheap).
    """
    if len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if len(value) == 27 and value[10] == "T" and value[19] == "." and value[26] == "Z":
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
