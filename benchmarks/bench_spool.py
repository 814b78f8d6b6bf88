"""Disk spool throughput: append (batch x fsync interval), durable group commit, replay.

Run with ``python -m benchmarks spool [--runs N] [--dir PATH] [--quick]``. Prints a markdown
table of medians over the runs and writes ``benchmarks/results/spool.json``.

Records are ~1 KB (what the worker spills: one msgpack-encoded step each). The spool directory
defaults to a fresh temporary directory; pass ``--dir`` to measure another filesystem.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.pipeline._spool import Spool

RECORD_SIZE = 1024
RESULTS = Path(__file__).parent / "results" / "spool.json"


def _records(n: int, size: int = RECORD_SIZE) -> list[bytes]:
    return [(b"%016d" % i).ljust(size, b"x") for i in range(n)]


def _fresh(base: Path, name: str) -> Path:
    path = base / name
    if path.exists():
        shutil.rmtree(path)
    return path


def bench_append(base: Path, batch: int, interval: float | None, total: int) -> dict[str, float]:
    """Append ``total`` records in calls of ``batch``; return records/s and MB/s."""
    path = _fresh(base, f"append-{batch}-{interval}")
    batches = [_records(batch)] * (total // batch)
    spool = Spool(path, fsync_interval=interval, max_bytes=8 << 30)
    append = spool.append
    t0 = time.perf_counter()
    for b in batches:
        append(b)
    elapsed = time.perf_counter() - t0
    n = spool.stats.appended
    fsyncs = spool.stats.fsyncs
    spool.close()
    shutil.rmtree(path)
    return {
        "records_per_s": n / elapsed,
        "mb_per_s": n * RECORD_SIZE / elapsed / 1e6,
        "us_per_call": elapsed / len(batches) * 1e6,
        "fsyncs": fsyncs,
    }


def bench_durable(base: Path, threads: int, per_thread: int, interval: float) -> dict[str, float]:
    """``threads`` threads each doing ``per_thread`` durable appends of one record."""
    path = _fresh(base, "durable")
    spool = Spool(path, fsync_interval=interval)
    record = _records(1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        mine = latencies[t]
        barrier.wait()
        for _ in range(per_thread):
            t0 = time.perf_counter()
            spool.append(record, durable=True)
            mine.append(time.perf_counter() - t0)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - t0
    fsyncs = spool.stats.fsyncs
    spool.close()
    shutil.rmtree(path)
    flat = sorted(x for lat in latencies for x in lat)
    return {
        "records_per_s": len(flat) / elapsed,
        "p50_ms": flat[len(flat) // 2] * 1e3,
        "p99_ms": flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1e3,
        "records_per_fsync": len(flat) / max(fsyncs, 1),
    }


def bench_replay(base: Path, total: int, read_batch: int = 1000) -> dict[str, float]:
    """Fill, close, reopen (recovery scan), then read + ack everything."""
    path = _fresh(base, "replay")
    spool = Spool(path, fsync_interval=None, max_bytes=8 << 30)
    batch = _records(1000)
    for _ in range(total // 1000):
        spool.append(batch)
    spool.close()
    t0 = time.perf_counter()
    spool = Spool(path, fsync_interval=None, max_bytes=8 << 30)
    t_open = time.perf_counter() - t0
    n = 0
    t0 = time.perf_counter()
    while items := spool.read(read_batch):
        n += len(items)
        spool.ack([ref for ref, _ in items])
    elapsed = time.perf_counter() - t0
    assert n == total, (n, total)
    spool.close()
    shutil.rmtree(path)
    return {
        "records_per_s": n / elapsed,
        "mb_per_s": n * RECORD_SIZE / elapsed / 1e6,
        "recovery_open_ms": t_open * 1e3,
        "recovery_mb_per_s": n * RECORD_SIZE / t_open / 1e6,
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _repeat(runs: int, fn: Callable[[], dict[str, float]]) -> dict[str, Any]:
    results = [fn() for _ in range(runs)]
    return {"median": _median(results), "runs": results}


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks spool", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument("--dir", type=Path, default=None, help="where to create spools")
    parser.add_argument("--quick", action="store_true", help="fewer records (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="do not write results JSON")
    args = parser.parse_args(argv)

    scale = 0.1 if args.quick else 1.0
    own_tmp = args.dir is None
    base = Path(tempfile.mkdtemp(prefix="bench-spool-")) if own_tmp else args.dir
    base.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Any] = {}
    try:
        for interval in (0, 0.005, None):
            for batch in (1, 100, 1000):
                if interval == 0 and batch == 1:
                    total = int(500 * scale) or 50  # one fsync per record: keep it short
                elif interval == 0:
                    total = int(50_000 * scale)
                else:
                    total = int(100_000 * scale)
                total = max(batch, total - total % batch)
                name = f"append batch={batch} fsync={interval}"
                cases[name] = _repeat(
                    args.runs,
                    functools.partial(bench_append, base, batch, interval, total),
                )
                cases[name]["records"] = total
                print(f"  {name}: {_fmt(cases[name]['median']['records_per_s'])} rec/s", flush=True)
        per_thread = int(500 * scale) or 50
        cases["durable 4 threads fsync=0.005"] = _repeat(
            args.runs, lambda: bench_durable(base, 4, per_thread, 0.005)
        )
        cases["durable 4 threads fsync=0.005"]["records"] = 4 * per_thread
        replay_total = int(100_000 * scale)
        cases["replay read(1000)+ack"] = _repeat(
            args.runs, lambda: bench_replay(base, replay_total)
        )
        cases["replay read(1000)+ack"]["records"] = replay_total
        cases["replay read(1)+ack"] = _repeat(
            args.runs, functools.partial(bench_replay, base, replay_total // 10, 1)
        )
        cases["replay read(1)+ack"]["records"] = replay_total // 10
    finally:
        if own_tmp:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"Spool, ~{RECORD_SIZE} B records, medians of {args.runs} runs")
    print()
    print("| case | records/s | MB/s | other |")
    print("|---|---:|---:|---|")
    for name, case in cases.items():
        m = case["median"]
        other = ", ".join(
            f"{k}={_fmt(v)}" for k, v in m.items() if k not in {"records_per_s", "mb_per_s"}
        )
        mb = _fmt(m["mb_per_s"]) if "mb_per_s" in m else ""
        print(f"| {name} | {_fmt(m['records_per_s'])} | {mb} | {other} |")

    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "spool",
            "record_size": RECORD_SIZE,
            "runs": args.runs,
            "quick": args.quick,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "dir": str(args.dir) if args.dir else tempfile.gettempdir(),
            },
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cases": cases,
        }
        RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {RESULTS}")
    return 0
