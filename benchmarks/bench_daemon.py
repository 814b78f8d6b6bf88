"""Daemon intake: events/s accepted from 4 producer processes, side by side with raw AF_UNIX.

    python -m benchmarks daemon [--runs 3] [--seconds 3] [--producers 4] [--batch 256]

Every producer process sends pre-encoded binary frames (``--batch`` events of ~1 KB each,
``ack: true``) over its own connection, keeping ``--window`` frames in flight, and counts
the events acknowledged during the measured window (after a warm-up). The same producers
run against, in the same run:

* ``raw``: a bare asyncio AF_UNIX server that walks the frame headers and answers each
  frame with a constant ack; no decoding: the transport's ceiling on this machine;
* ``decode``: the raw server plus an untyped ``msgspec.msgpack.decode`` of every frame:
  the floor for any Python consumer that turns the events into objects;
* ``discard``: the daemon (``memory`` durability) as ``literal-agent run --discard`` runs
  it: read, decode, validate and convert to the pipeline's dicts, then count and free them:
  the daemon's own cost;
* ``intake``: the daemon feeding a real pipeline whose worker is not started: the queue
  absorbs everything (hundreds of thousands of live events: fresh memory for each one);
* ``memory``: the daemon (``DaemonServer``, ``memory`` durability) feeding a real
  :class:`~agent.pipeline.Pipeline` whose worker runs with an exporter that acknowledges
  every batch at once (so the backend's speed is not measured, but the pipeline's own
  batching/encoding is, on the same CPU);
* ``disk``: the same with ``disk`` durability: each frame is group-committed to the
  pipeline's spool (fsync window 5 ms) before its ack.

Reported: medians over ``--runs`` of events/s, the ratio to raw, p50/p99 ack latency.
Results: a markdown table on stdout and ``benchmarks/results/daemon.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import msgspec

from agent.daemon._protocol import HEADER, MAGIC, Ack, Batch, StepEvent, encode_frame
from benchmarks._machine import describe

RESULTS = Path(__file__).parent / "results" / "daemon.json"
MODES = ("raw", "decode", "discard", "intake", "memory", "disk")
TARGETS = {"memory": 200_000, "disk": 50_000}


def make_events(n: int) -> list[StepEvent]:
    """~1 KB steps (msgpack), shaped like an LLM call."""
    thread = str(uuid.uuid4())
    return [
        StepEvent(
            id=str(uuid.uuid4()),
            name="chat-completion",
            step_type="llm",  # type: ignore[arg-type]
            thread_id=thread,
            parent_id=str(uuid.uuid4()),
            start_time="2026-01-01T00:00:00.000000Z",
            end_time="2026-01-01T00:00:01.250000Z",
            input={"content": "What is the capital of France? " * 12},
            output={"content": "Paris is the capital of France. " * 10},
            metadata={"user": "u-42", "index": i, "model": "gpt-4o-mini"},
            tags=["bench", "daemon"],
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- servers


class _NullExporter:
    """Acknowledges every batch at once (the backend is not what is measured here)."""

    async def send_steps(self, steps: list[dict[str, Any]]) -> dict[int, str]:
        return {}

    async def upsert_thread(self, thread: dict[str, Any]) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def _raw_server(sock: socket.socket, stop: Any, decode: bool) -> None:
    ack = encode_frame(Ack(seq=0, accepted=0))
    unpack = msgspec.msgpack.decode

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray(await reader.readexactly(len(MAGIC)))
        buf.clear()
        pos = 0
        while True:
            data = await reader.read(1 << 18)
            if not data:
                break
            buf += data
            frames = 0
            while len(buf) - pos >= 4:
                (size,) = HEADER.unpack_from(buf, pos)
                if len(buf) - pos - 4 < size:
                    break
                if decode:
                    unpack(bytes(buf[pos + 4 : pos + 4 + size]))
                pos += 4 + size
                frames += 1
            del buf[:pos]
            pos = 0
            if frames:
                writer.write(ack * frames)
        writer.close()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            writer.close()

    server = await asyncio.start_unix_server(guarded, sock=sock, limit=1 << 18)
    async with server:
        while not stop.is_set():
            await asyncio.sleep(0.05)


def serve(mode: str, path: str, spool_dir: str, ready: Any, stop: Any, out: Any) -> None:
    """Server process: bind, signal ready, serve until ``stop``, report stats."""
    from agent._logging import configure_logging
    from agent.daemon._sockets import bind_unix

    configure_logging("console", "warning")
    sock = bind_unix(path)
    if mode in ("raw", "decode"):
        ready.set()
        asyncio.run(_raw_server(sock, stop, decode=mode == "decode"))
        out.put({})
        return
    from agent.daemon._backend import Backend, MemoryBackend, PipelineBackend
    from agent.daemon._command import tune_gc
    from agent.daemon._server import DaemonServer, ServerSettings
    from agent.pipeline import Pipeline, Settings

    settings = Settings(
        max_queue_events=5_000_000,
        max_queue_bytes=16 << 30,
        spool_directory=Path(spool_dir) if mode == "disk" else None,
        fsync_interval=0.005,
        url="http://127.0.0.1:9",
        api_key="bench",
    )
    pipeline = Pipeline(settings=settings, exporter_factory=_NullExporter, start=mode != "intake")
    backend: Backend = MemoryBackend(keep=False) if mode == "discard" else PipelineBackend(pipeline)
    durability: Literal["memory", "disk"] = "disk" if mode == "disk" else "memory"
    server = DaemonServer(backend, ServerSettings(durability=durability, idle_timeout=600))
    tune_gc()  # as `literal-agent run` does

    async def main() -> None:
        await server.start([sock])
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.close(grace=0.1)

    asyncio.run(main())
    stats = pipeline.stats().as_dict()
    keys = ("enqueued", "spilled", "sent", "queue_depth", "batches")
    out.put({"daemon": server.stats(), "pipeline": {k: stats[k] for k in keys}})
    out.close()
    out.join_thread()
    os._exit(0)  # the queue may hold millions of events: skip the orderly teardown


# --------------------------------------------------------------------------- producers


def produce(
    path: str,
    frame: bytes,
    batch: int,
    window: int,
    warmup: float,
    seconds: float,
    go: Any,
    out: Any,
) -> None:
    """Producer process: send frames with a window, count acked events in the measured span."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(MAGIC)
    go.wait()
    sent_at: list[float] = []
    head = 0
    buf = bytearray()
    latencies: list[float] = []
    acked = 0
    start = time.perf_counter()
    t0 = start + warmup
    t1 = t0 + seconds
    measured_from: float | None = None
    while True:
        now = time.perf_counter()
        if now >= t1:
            break
        while len(sent_at) - head < window:
            sent_at.append(time.perf_counter())
            sock.sendall(frame)
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("server closed")
        now = time.perf_counter()
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (size,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break
            pos += 4 + size
            sent = sent_at[head]
            head += 1
            if now >= t0:
                if measured_from is None:
                    measured_from = now
                acked += batch
                latencies.append(now - sent)
        del buf[:pos]
    elapsed = time.perf_counter() - (measured_from or t0)
    sock.close()
    out.put({"acked": acked, "elapsed": elapsed, "latencies": latencies})


def measure(mode: str, args: argparse.Namespace, frame: bytes) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        path = os.path.join(tmp, "agent.sock")
        ready, stop, go = ctx.Event(), ctx.Event(), ctx.Event()
        server_out: Any = ctx.Queue()
        prod_out: Any = ctx.Queue()
        server = ctx.Process(
            target=serve, args=(mode, path, os.path.join(tmp, "spool"), ready, stop, server_out)
        )
        server.start()
        if not ready.wait(60):
            raise RuntimeError(f"{mode} server did not start")
        producers = [
            ctx.Process(
                target=produce,
                args=(
                    path,
                    frame,
                    args.batch,
                    args.window,
                    args.warmup,
                    args.seconds,
                    go,
                    prod_out,
                ),
            )
            for _ in range(args.producers)
        ]
        for p in producers:
            p.start()
        go.set()
        results = [prod_out.get(timeout=args.seconds + args.warmup + 60) for _ in producers]
        for p in producers:
            p.join(30)
        stop.set()
        server_stats = server_out.get(timeout=60)
        server.join(60)
    rate = sum(r["acked"] / r["elapsed"] for r in results)
    lat = sorted(x for r in results for x in r["latencies"])
    return {
        "events_per_s": rate,
        "ack_p50_ms": _pct(lat, 0.50) * 1e3,
        "ack_p99_ms": _pct(lat, 0.99) * 1e3,
        "acked": sum(r["acked"] for r in results),
        "server": server_stats,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks daemon", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256, help="events per frame")
    parser.add_argument("--window", type=int, default=4, help="frames in flight per producer")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]

    machine_at_start = describe()
    events = make_events(args.batch)
    frame = encode_frame(Batch(events=events, seq=1, ack=True))
    event_bytes = (len(frame) - 4) / args.batch
    print(
        f"{args.producers} producers, {args.batch} events/frame (~{event_bytes:.0f} B/event), "
        f"window {args.window}, {args.seconds}s x {args.runs} runs",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for i in range(args.runs):
        for mode in modes:
            result = measure(mode, args, frame)
            runs[mode].append(result)
            print(
                f"  run {i + 1} {mode:>6}: {result['events_per_s']:>12,.0f} events/s  "
                f"ack p99 {result['ack_p99_ms']:.2f} ms",
                flush=True,
            )
    summary: dict[str, dict[str, float]] = {}
    for mode in modes:
        summary[mode] = {
            key: statistics.median(r[key] for r in runs[mode])
            for key in ("events_per_s", "ack_p50_ms", "ack_p99_ms")
        }
    raw = summary.get("raw", {}).get("events_per_s")
    lines = [
        "| mode | events/s (median) | ratio to raw AF_UNIX | ack p50 ms | ack p99 ms | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for mode in modes:
        s = summary[mode]
        ratio = s["events_per_s"] / raw if raw else float("nan")
        s["ratio_to_raw"] = ratio
        target = TARGETS.get(mode)
        goal = (
            f">= {target:,}/s" + (" and >= 0.6 x raw" if mode == "memory" else "")
            if target
            else "-"
        )
        lines.append(
            f"| {mode} | {s['events_per_s']:,.0f} | {ratio:.2f} | {s['ack_p50_ms']:.2f} "
            f"| {s['ack_p99_ms']:.2f} | {goal} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "daemon",
            "machine": {"at_start": machine_at_start, "at_end": describe()},
            "params": {k: v for k, v in vars(args).items() if k != "no_save"},
            "event_bytes": event_bytes,
            "median": summary,
            "runs": {
                m: [{k: v for k, v in r.items() if k != "server"} for r in rs]
                for m, rs in runs.items()
            },
            "table": table,
        }
        RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
