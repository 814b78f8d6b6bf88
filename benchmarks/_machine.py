"""How fast the machine was while a benchmark ran.

The benchmark machine is a shared VM whose speed drifts (the same run of the same code has
taken ~1.5x longer from one hour to the next); the load average does not show it. Each
benchmark records :func:`cpu_speed` beside its figures: the time of a fixed pure-Python loop,
so that figures measured at different times can be compared (a run that took 20% longer on
the loop had ~20% less CPU to spend).
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

#: Iterations of the calibration loop (~0.3 s on the reference machine at its fastest).
CALIBRATION_ITERATIONS = 5_000_000


def cpu_speed(repeats: int = 3) -> float:
    """Seconds a fixed pure-Python loop takes (median of ``repeats``): lower is faster."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        total = 0
        for i in range(CALIBRATION_ITERATIONS):
            total += i
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def sqlite_speed(rows: int = 10_000, batch: int = 100) -> float:
    """Seconds to insert ``rows`` ~1 KB rows keyed by random UUIDs into a fresh SQLite file
    in WAL mode, ``batch`` rows per transaction: lower is faster. Unlike :func:`cpu_speed`
    it also feels the file system, the page cache and system-call costs, which drift on
    their own on a VM (the collector benchmarks depend on them)."""
    payload = "x" * 1000
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "speed.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT)")
        batches = [
            [(str(uuid.uuid4()), payload) for _ in range(batch)] for _ in range(rows // batch)
        ]
        start = time.perf_counter()
        for chunk in batches:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t VALUES (?, ?)", chunk)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return round(elapsed, 3)


def describe() -> dict[str, Any]:
    """CPUs, Python, platform, the 1-minute load average, :func:`cpu_speed` and
    :func:`sqlite_speed`, now."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpu_speed_s": cpu_speed(),
        "sqlite_speed_s": sqlite_speed(),
    }
