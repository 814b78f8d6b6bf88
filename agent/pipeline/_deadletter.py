"""The dead-letter file: events the server rejected, one JSON object per line (mode 0600).

Each line is ``{"time": ..., "reason": <server message>, "status": <HTTP status or null>,
"event": <the step dict or thread upsert>}``. Nothing here is retried automatically: an
operator can fix the events and feed them back (e.g. through ``send_steps``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from agent._models import utc_now

__all__ = ["DeadLetterFile"]

_encoder = msgspec.json.Encoder()


class DeadLetterFile:
    """Append-only JSONL file, created 0600 on first write."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, entries: Sequence[tuple[dict[str, Any], str, int | None]]) -> int:
        """Append ``(event, reason, status)`` entries; return how many were written."""
        if not entries:
            return 0
        now = utc_now()
        lines = []
        for event, reason, status in entries:
            record = {"time": now, "reason": reason, "status": status, "event": event}
            try:
                lines.append(_encoder.encode(record))
            except (TypeError, ValueError, OverflowError):
                lines.append(_encoder.encode({**record, "event": repr(event)}))
        data = b"\n".join(lines) + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return len(entries)

    def read(self) -> list[dict[str, Any]]:
        """Every entry in the file (for tests and the CLI)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [msgspec.json.decode(line) for line in raw.splitlines() if line.strip()]
