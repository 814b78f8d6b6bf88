"""Attachments of the library hook: a URL is attached at once, file content is uploaded in
the background (``api.upload_file``) and the attachment then sent as an update of its step.

The caller's thread never does I/O: reading a ``path`` and the two upload requests run on a
small worker pool; ``client.flush()`` waits for pending uploads before flushing the pipeline.
Failures are counted and logged, never raised.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent._hook_sink import SinkHolder
from agent._models import Attachment

__all__ = ["Uploader"]


class Uploader:
    """Runs uploads off the hot path and enqueues ``{"id": step_id, "attachments": [...]}``."""

    def __init__(self, holder: SinkHolder, api_factory: Callable[[], Any]) -> None:
        self._holder = holder
        self._api_factory = api_factory
        self._api: Any = None
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()

    def submit(
        self, attachment: Attachment, step_id: str, content: bytes | str | None, path: str | None
    ) -> None:
        """Upload in the background, then send the attachment onto step ``step_id``."""
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="literal-upload"
                )
            future = self._executor.submit(self._upload, attachment, step_id, content, path)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _upload(
        self, attachment: Attachment, step_id: str, content: bytes | str | None, path: str | None
    ) -> None:
        stats = self._holder.stats
        try:
            data = Path(path).read_bytes() if content is None and path is not None else content
            if data is None:
                return
            if self._api is None:
                self._api = self._api_factory()
            answer = self._api.upload_file(
                content=data,
                thread_id=attachment.thread_id,
                mime=attachment.mime or "application/octet-stream",
            )
            attachment.object_key = answer.get("object_key")
            attachment.url = attachment.url or answer.get("url")
            if not attachment.object_key and not attachment.url:
                stats.count("attachment_upload_refused", name=attachment.name)
                return
        except Exception as exc:
            stats.count("attachment_upload_failed", name=attachment.name, error=repr(exc))
            return
        self._holder.enqueue({"id": step_id, "attachments": [attachment.to_dict()]})

    @property
    def pending(self) -> bool:
        """Whether uploads are running or queued."""
        return bool(self._pending)

    def wait(self, timeout: float | None) -> bool:
        """Wait for the uploads submitted so far; ``False`` if some are still running."""
        with self._lock:
            pending = set(self._pending)
        if not pending:
            return True
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done

    def shutdown(self) -> None:
        """Let running uploads finish; no new ones."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
