"""Collector ingest on PostgreSQL beside SQLite: same SDK-shaped batches, same run.

Three set-ups, each a real ``python -m agent collector`` process (or two) fed the request
bodies of :mod:`benchmarks.bench_collector_ingest` (``send_steps`` documents of ~1 KB steps)
over keep-alive connections:

* ``sqlite``: one collector, SQLite in a temporary data directory (the default engine);
* ``postgres``: one collector, ``database_url`` = a fresh schema of a PostgreSQL server;
* ``postgres x2``: two collectors (two processes, two pools) on that one schema, the
  connections split between them (what a load balancer in front of replicas does).

Reported per batch size: stored steps/s, p50/p99 request latency, collector CPU per step;
medians over ``--runs`` runs, each on a fresh database; the runs of the set-ups interleave,
so that other load on the machine hits each alike (the load average is recorded).

The PostgreSQL server is ``$LITERAL_TEST_POSTGRES_URL`` when set; otherwise the benchmark
starts its own from the distribution's binaries (``initdb`` in a temporary directory,
``fsync`` on, ``synchronous_commit=off``: the durability class of SQLite's WAL +
``synchronous=NORMAL``) and stops it at the end. The server's settings are recorded.

    python -m benchmarks collector_pg [--runs 5] [--steps 20000] [--connections 4]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agent.testing import CollectorProcess
from benchmarks.bench_collector_ingest import (
    API_KEY,
    build_bodies,
    cpu_seconds,
    percentile,
    post_all,
    stored_steps,
    warm_up,
)

RESULTS = Path(__file__).parent / "results" / "collector_pg.json"
SETUPS = ("sqlite", "postgres", "postgres x2")
ENV_DATABASE_URL = "LITERAL_AGENT_COLLECTOR_DATABASE_URL"


# -- a PostgreSQL server -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[str, str]]:
    """Yield (admin URL, origin): the test server if configured, else a private one."""
    url = os.environ.get("LITERAL_TEST_POSTGRES_URL")
    if url:
        yield url, "LITERAL_TEST_POSTGRES_URL"
        return
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = bins[-1] if bins else shutil.which("initdb")
    if not initdb:
        raise SystemExit("no PostgreSQL: set LITERAL_TEST_POSTGRES_URL or install postgresql")
    bin_dir = Path(initdb).parent
    tmp = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    as_root = os.getuid() == 0

    def run(cmd: list[str]) -> None:
        if as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    if as_root:
        shutil.chown(tmp, "postgres")
    port = _free_port()
    data = tmp / "data"
    run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c synchronous_commit=off"
    run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(tmp / "log"),
            "-o",
            opts,
            "-w",
            "start",
        ]
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", "private (initdb)"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(tmp, ignore_errors=True)


def server_settings(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        return {n: str(conn.execute(f"SHOW {n}".encode()).fetchone()[0]) for n in names}  # type: ignore[index]


@contextlib.contextmanager
def fresh_schema(admin_url: str) -> Iterator[str]:
    """A new empty schema; yields a URL whose ``search_path`` is that schema."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}".encode())
    parts = urlsplit(admin_url)
    query = "&".join(q for q in (parts.query, f"options=-csearch_path%3D{name}") if q)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE".encode())


# -- one run -----------------------------------------------------------------------------------


def post_split(
    ports: list[int], bodies: list[bytes], connections: int
) -> tuple[float, list[float]]:
    """Bodies dealt round-robin to ``ports``, connections split evenly; one wall clock."""
    results: list[tuple[float, list[float]]] = []
    errors: list[BaseException] = []
    per = max(1, connections // len(ports))

    def feed(index: int) -> None:
        try:
            results.append(post_all(ports[index], bodies[index :: len(ports)], per))
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(len(ports))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall, [lat for _, lats in results for lat in lats]


def run_once(
    setup: str, admin_url: str, batch: int, bodies: list[bytes], connections: int
) -> dict[str, float]:
    replicas = 2 if setup.endswith("x2") else 1
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if setup != "sqlite":
            env[ENV_DATABASE_URL] = stack.enter_context(fresh_schema(admin_url))
        procs = []
        for n in range(replicas):
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-pg-{n}-"))
            procs.append(stack.enter_context(CollectorProcess(Path(tmp), api_key=API_KEY, env=env)))
        ports = [p.port for p in procs]
        for port in ports:
            warm_up(port, batch)
        pids = [p.pid for p in procs if p.pid is not None]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        wall, latencies = post_split(ports, bodies, connections)
        server_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        stored = stored_steps(ports[0]) - batch * replicas  # minus the warm-up batches
    expected = len(bodies) * batch
    if stored != expected:
        raise RuntimeError(f"{setup}: stored {stored} steps, expected {expected}")
    return {
        "steps_per_s": stored / wall,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "server_cpu_us_per_step": server_cpu / stored * 1e6,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks collector_pg")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000, help="steps per run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batches", default="100,500")
    parser.add_argument("--setups", default=",".join(SETUPS), help="subset of " + ", ".join(SETUPS))
    args = parser.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = set(setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown setups {sorted(unknown)}")
    rows: list[dict[str, Any]] = []
    with postgres_server() as (admin_url, origin):
        settings = server_settings(admin_url)
        print(
            f"PostgreSQL {settings['server_version']} ({origin}): fsync={settings['fsync']},"
            f" synchronous_commit={settings['synchronous_commit']}",
            flush=True,
        )
        for batch in (int(b) for b in args.batches.split(",")):
            bodies = build_bodies(batch, args.steps)
            # Runs interleave the set-ups (rotating which goes first), so that load from
            # elsewhere on the machine hits every set-up alike.
            by_setup: dict[str, list[dict[str, float]]] = {s: [] for s in setups}
            for run in range(args.runs):
                for setup in setups[run % len(setups) :] + setups[: run % len(setups)]:
                    by_setup[setup].append(
                        run_once(setup, admin_url, batch, bodies, args.connections)
                    )
            for setup in setups:
                runs = by_setup[setup]
                row = {
                    "setup": setup,
                    "batch": batch,
                    "runs": args.runs,
                    "steps_per_run": len(bodies) * batch,
                    **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
                    "all_steps_per_s": [round(r["steps_per_s"]) for r in runs],
                }
                rows.append(row)
                print(
                    f"batch {batch:>4} {setup:<12}: {row['steps_per_s']:>8,.0f} steps/s"
                    f"  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms"
                    f"  server CPU {row['server_cpu_us_per_step']:6.1f} us/step"
                    f"  (runs: {row['all_steps_per_s']})",
                    flush=True,
                )
    print()
    print(
        "| batch | set-up | steps/s (median) | vs SQLite | p50 latency | p99 latency"
        " | collector CPU/step |"
    )
    print("| ---: | :--- | ---: | ---: | ---: | ---: | ---: |")
    base = {r["batch"]: r["steps_per_s"] for r in rows if r["setup"] == "sqlite"}
    for row in rows:
        ratio = f"{row['steps_per_s'] / base[row['batch']]:.2f}x" if row["batch"] in base else "-"
        print(
            f"| {row['batch']} | {row['setup']} | {row['steps_per_s']:,.0f} | {ratio} "
            f"| {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms "
            f"| {row['server_cpu_us_per_step']:.0f} us |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "collector_pg",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "postgres": {"origin": origin, **settings},
        "connections": args.connections,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {RESULTS}")
    return 0
