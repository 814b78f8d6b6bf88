"""Collector ingest throughput: SDK-shaped ``send_steps`` batches into SQLite.

The collector runs as a real subprocess (``python -m agent collector``) on a temporary data
directory. This process is the client: it pre-builds ``AddStep`` request bodies exactly like
the reference SDK (``literalai.api.helpers.gql``) with ~1 KB steps, posts them over a few
keep-alive connections, then reads the stored row count back. Reported per batch size:
steps/s stored (from the first request to the read that sees every step), p50/p99 request
latency, server and client CPU per step (both processes share the
machine's cores), the server's CPU split by thread (event loop; busiest other thread, the
SQLite writer; the rest, GraphQL worker threads and the SQLite checkpointer), and the
1-minute load average and the machine's speed (``benchmarks._machine``: a Python loop and
10,000 SQLite inserts, timed) at the start of each run (the machine may be shared: read the
figures beside them); medians over several runs, each on a fresh database.

    python -m benchmarks collector_ingest [--runs 5] [--steps 100000] [--connections 4,16]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from literalai.api.helpers.gql import steps_query_builder, steps_variables_builder

from agent.testing import CollectorProcess
from benchmarks._machine import cpu_speed, describe, sqlite_speed

RESULTS = Path(__file__).parent / "results" / "collector_ingest.json"
API_KEY = "bench-key"


def make_step(thread_id: str, parent_id: str | None, index: int) -> dict[str, Any]:
    """One ~1 KB step dict, shaped like ``Step.to_dict()``."""
    return {
        "id": str(uuid.uuid4()),
        "threadId": thread_id,
        "parentId": parent_id,
        "rootRunId": parent_id,
        "type": "llm" if index % 3 == 0 else "tool",
        "name": f"step-{index}",
        "startTime": "2024-05-01T12:34:56.123456Z",
        "endTime": "2024-05-01T12:34:57.654321Z",
        "input": {"content": "What is the weather like in Paris today? " * 8},
        "output": {"content": "It is sunny with a light breeze and 21 degrees. " * 7},
        "metadata": {"user": "bench", "index": index, "tags": ["a", "b"]},
        "tags": ["bench", "ingest"],
        "error": None,
        "generation": None,
        "scores": [],
        "attachments": [],
    }


def build_bodies(batch: int, total: int) -> list[bytes]:
    """Request bodies for ``total`` steps in batches of ``batch`` (one thread per batch)."""
    bodies = []
    query = None
    for _ in range(max(1, total // batch)):
        thread_id = str(uuid.uuid4())
        steps = [make_step(thread_id, None, i) for i in range(batch)]
        query = query or steps_query_builder(steps)
        bodies.append(
            json.dumps({"query": query, "variables": steps_variables_builder(steps)}).encode()
        )
    return bodies


def post_all(port: int, bodies: list[bytes], connections: int) -> tuple[float, list[float]]:
    """Post every body over ``connections`` keep-alive connections; wall time and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"content-type": "application/json", "x-api-key": API_KEY}
        mine: list[float] = []
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            start = time.perf_counter()
            conn.request("POST", "/api/graphql", body=bodies[index], headers=headers)
            response = conn.getresponse()
            payload = response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200 or b'"ok":false' in payload or b"errors" in payload:
                errors.append(payload[:200].decode(errors="replace"))
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return wall, latencies


def stored_steps(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"query": "query { steps(first: 0) { totalCount } }"})
    conn.request("POST", "/api/graphql", body=body, headers={"x-api-key": API_KEY})
    count = int(json.loads(conn.getresponse().read())["data"]["steps"]["totalCount"])
    conn.close()
    return count


def warm_up(port: int, batch: int) -> None:
    """One small request per shape, so the parsed document is cached as in steady state."""
    post_all(port, build_bodies(batch, batch), 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time consumed so far by each thread of process ``pid`` (Linux /proc)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def thread_split(pid: int, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """Server CPU seconds by role: the event loop (main thread), the busiest other thread
    (the SQLite writer under ingest load) and all the others (GraphQL worker threads, the
    SQLite checkpointer)."""
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    loop = used.pop(pid, 0.0)
    busiest = max(used.values(), default=0.0)
    return {"event_loop": loop, "busiest_thread": busiest, "others": sum(used.values()) - busiest}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_once(batch: int, total: int, connections: int) -> dict[str, float]:
    bodies = build_bodies(batch, total)
    load = os.getloadavg()[0]
    speed, disk_speed = cpu_speed(1), sqlite_speed()
    with (
        tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp,
        CollectorProcess(Path(tmp), api_key=API_KEY) as proc,
    ):
        warm_up(proc.port, batch)
        assert proc.pid is not None
        cpu_before = cpu_seconds(proc.pid)
        threads_before = thread_cpu_seconds(proc.pid)
        client_before = time.process_time()
        start = time.perf_counter()
        _, latencies = post_all(proc.port, bodies, connections)
        # The clock stops once a read sees every step: an answer given before the steps are
        # committed (the collector's ingest journal) gains nothing here.
        stored = stored_steps(proc.port) - batch  # minus the warm-up batch
        wall = time.perf_counter() - start
        client_cpu = time.process_time() - client_before
        server_cpu = cpu_seconds(proc.pid) - cpu_before
        split = thread_split(proc.pid, threads_before, thread_cpu_seconds(proc.pid))
    expected = len(bodies) * batch
    if stored != expected:
        raise RuntimeError(f"stored {stored} steps, expected {expected}")
    body_kb = statistics.mean(len(b) for b in bodies) / batch / 1024
    return {
        "steps_per_s": stored / wall,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "kb_per_step": body_kb,
        "server_cpu_us_per_step": server_cpu / stored * 1e6,
        **{f"server_{role}_cpu_us_per_step": cpu / stored * 1e6 for role, cpu in split.items()},
        "client_cpu_us_per_step": client_cpu / stored * 1e6,
        "loadavg_1m_at_start": load,
        "cpu_speed_s_at_start": speed,
        "sqlite_speed_s_at_start": disk_speed,
    }


def in_process_paths(batch: int, batches: int) -> dict[str, float]:
    """Steps/s of GraphQLService.handle (no HTTP) with the fast path and with graphql-core."""
    from agent.collector._graphql import GraphQLService
    from agent.collector._resolvers import RequestContext
    from agent.collector._sqlite import open_sqlite

    out = {}
    for label, fast in (("fast_path", True), ("graphql_core", False)):
        bodies = build_bodies(batch, batch * (batches + 1))
        with tempfile.TemporaryDirectory(prefix="bench-paths-") as tmp:
            storage = open_sqlite(tmp)
            service = GraphQLService(storage, fast_paths=fast)
            ctx = RequestContext(storage, "prod", "http://bench", lambda key: key)
            service.handle(bodies[0], ctx)  # parse and cache the document
            start = time.perf_counter()
            for body in bodies[1:]:
                service.handle(body, ctx)
            out[label] = (len(bodies) - 1) * batch / (time.perf_counter() - start)
            storage.close()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks collector_ingest")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100_000, help="steps per run")
    parser.add_argument(
        "--connections",
        default="4,16",
        help="client connections, comma-separated: 4 is one agent with a few batches in "
        "flight, 16 several agents sharing the collector",
    )
    parser.add_argument("--batches", default="100,500")
    args = parser.parse_args(argv)
    configs = [
        (int(c), int(b)) for c in args.connections.split(",") for b in args.batches.split(",")
    ]
    load_before = os.getloadavg()
    # Interleaved (run 1 of every configuration, then run 2, ...) so that a drift in the
    # machine's speed does not favour one configuration.
    results: dict[tuple[int, int], list[dict[str, float]]] = {config: [] for config in configs}
    for _ in range(args.runs):
        for connections, batch in configs:
            results[(connections, batch)].append(run_once(batch, args.steps, connections))
    rows = []
    for (connections, batch), runs in results.items():
        row = {
            "connections": connections,
            "batch": batch,
            "runs": args.runs,
            "steps_per_run": (args.steps // batch) * batch,
            **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
            "all_steps_per_s": [round(r["steps_per_s"]) for r in runs],
            "all_loadavg_1m_at_start": [round(r["loadavg_1m_at_start"], 2) for r in runs],
            "all_cpu_speed_s_at_start": [r["cpu_speed_s_at_start"] for r in runs],
            "all_sqlite_speed_s_at_start": [r["sqlite_speed_s_at_start"] for r in runs],
        }
        rows.append(row)
        print(
            f"{connections:>2} connections, batch {batch:>4}: {row['steps_per_s']:>9,.0f} steps/s"
            f"  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
            f"server CPU {row['server_cpu_us_per_step']:5.1f} us/step "
            f"(event loop {row['server_event_loop_cpu_us_per_step']:.1f}, busiest thread "
            f"{row['server_busiest_thread_cpu_us_per_step']:.1f}, others "
            f"{row['server_others_cpu_us_per_step']:.1f})  "
            f"client CPU {row['client_cpu_us_per_step']:5.1f} us/step  "
            f"(runs: {row['all_steps_per_s']}, load at start: {row['all_loadavg_1m_at_start']}, "
            f"speed at start: CPU {row['all_cpu_speed_s_at_start']} s, "
            f"SQLite {row['all_sqlite_speed_s_at_start']} s)",
            flush=True,
        )
    print()
    print(
        "| connections | batch | steps/s (median) | runs | p50 latency | p99 latency "
        "| server CPU/step | client CPU/step | load (1 min) | CPU / SQLite speed | KB/step |"
    )
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        runs_text = " / ".join(f"{v / 1000:.1f}k" for v in row["all_steps_per_s"])
        print(
            f"| {row['connections']} | {row['batch']} | {row['steps_per_s']:,.0f} | {runs_text} "
            f"| {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms "
            f"| {row['server_cpu_us_per_step']:.1f} us | {row['client_cpu_us_per_step']:.1f} us "
            f"| {row['loadavg_1m_at_start']:.2f} "
            f"| {row['cpu_speed_s_at_start']:.2f} / {row['sqlite_speed_s_at_start']:.2f} s "
            f"| {row['kb_per_step']:.2f} |"
        )
    paths = in_process_paths(100, 20)
    print(
        f"\nin-process GraphQLService.handle, batches of 100: fast path "
        f"{paths['fast_path']:,.0f} steps/s vs graphql-core {paths['graphql_core']:,.0f} steps/s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "collector_ingest",
        "machine": {
            **describe(),
            "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "rows": rows,
        "in_process_batch100_steps_per_s": {k: round(v) for k, v in paths.items()},
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average (1 min) before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"written {RESULTS}")
    return 0
