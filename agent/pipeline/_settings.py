"""The pipeline's settings, flattened from :class:`~agent._config.AgentConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.pipeline._queue import OverflowPolicy
from agent.pipeline._retry import RetryPolicy

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    max_queue_events: int = 100_000
    max_queue_bytes: int = 64 << 20
    overflow: OverflowPolicy = OverflowPolicy.SPILL
    block_timeout: float = 0.05
    #: spill policy: longest wait of a producer that outruns the disk (see _queue)
    spill_wait: float = 0.5
    batch_size: int = 500
    batch_bytes: int = 4 << 20
    flush_interval: float = 0.2
    max_in_flight: int = 2
    shutdown_timeout: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    spool_directory: Path | None = None  # None: no spool
    spool_max_bytes: int = 1 << 30
    segment_bytes: int = 16 << 20
    fsync_interval: float | None = 0.005
    spool_full_policy: str = "drop_oldest"
    dead_letter: Path | None = None
    api_key: str | None = None
    url: str | None = None
    client: Any = None  # ClientConfig (timeouts, environment...) or None

    @classmethod
    def from_config(
        cls, config: Any, *, api_key: str | None = None, url: str | None = None
    ) -> Settings:
        """Build from an ``AgentConfig`` (None: ``load_config()``: defaults + environment)."""
        if config is None:
            from agent._config import load_config

            config = load_config()
        p = config.pipeline
        spool = config.spool
        directory = Path(spool.resolved_directory) if spool.enabled else None
        dead_letter = Path(spool.resolved_dead_letter)
        client = config.client
        return cls(
            max_queue_events=p.max_queue_events,
            max_queue_bytes=p.max_queue_bytes,
            overflow=OverflowPolicy(str(p.overflow)),
            block_timeout=p.block_timeout,
            spill_wait=p.spill_wait,
            batch_size=p.batch_size,
            batch_bytes=p.batch_bytes,
            flush_interval=p.flush_interval,
            max_in_flight=max(1, p.max_in_flight),
            shutdown_timeout=p.shutdown_timeout,
            retry=RetryPolicy.from_config(config.retry),
            spool_directory=directory,
            spool_max_bytes=spool.max_bytes,
            segment_bytes=spool.segment_bytes,
            fsync_interval=spool.fsync_interval,
            spool_full_policy=str(spool.full_policy),
            dead_letter=dead_letter,
            api_key=api_key or client.api_key,
            url=url or client.url,
            client=client,
        )
