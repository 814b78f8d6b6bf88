"""Pipeline benchmark: ours vs the reference SDK's EventProcessor vs OpenTelemetry's
BatchSpanProcessor + OTLP/HTTP exporter, side by side in one run, ~1 KB events.

Measured (medians of ``--runs`` runs):

* hot path: the producer-thread cost of handing one event over (``Pipeline.enqueue``,
  ``EventProcessor.add_event``, ``Span.end`` -> ``BatchSpanProcessor.on_end``), p50/p99;
* end to end: events acknowledged per second by a counting sink (a tiny HTTP server in its
  own process answering GraphQL ``send_steps`` and OTLP ``/v1/traces``) and, for the two
  Literal pipelines, by the real collector (``literal-agent collector`` process, SQLite);
* memory: peak RSS of a producer process pushing 1,000,000 events into an outage (backend
  down, spool on), against the configured queue memory cap + 40 MB.

Usage: ``python -m benchmarks pipeline [--runs 3] [--quick]``; writes
``benchmarks/results/pipeline.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks._machine import describe

RESULTS = Path(__file__).parent / "results" / "pipeline.json"
PAYLOAD = "lorem ipsum dolor sit amet " * 30  # ~800 chars -> ~1 KB step dicts


def make_event(i: int, prefix: str) -> dict[str, Any]:
    """A ~1 KB step dict (unique id and content)."""
    return {
        "id": f"{prefix}-{i}",
        "name": "llm-call",
        "type": "llm",
        "threadId": f"{prefix}-thread-{i // 100}",
        "startTime": "2024-05-01T12:34:56.123456Z",
        "endTime": "2024-05-01T12:34:57.123456Z",
        "input": {"content": f"{i} {PAYLOAD}"},
        "output": {"content": f"{i} done"},
        "metadata": {"user": "bench", "n": i},
        "tags": ["bench"],
    }


# --------------------------------------------------------------------------- counting sink


def _sink_main(port_value: Any, steps: Any, spans: Any, ready: Any) -> None:
    """Child process: an HTTP/1.1 server that acknowledges everything and counts it."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    ok_cache: dict[int, bytes] = {}

    def graphql_answer(n: int) -> bytes:
        body = ok_cache.get(n)
        if body is None:
            inner = ",".join(f'"step{i}":{{"ok":true,"message":null}}' for i in range(n))
            body = ok_cache[n] = ('{"data":{' + inner + "}}").encode()
        return body

    def respond(body: bytes, ctype: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: "
            + ctype
            + b"\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = bytearray()
            self.need = 0  # bytes of the current request (head + body), once its head is in

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                if not self.need:
                    end = self.buf.find(b"\r\n\r\n")
                    if end < 0:
                        return
                    head = bytes(self.buf[:end]).lower()
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        if line.startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    self.need = end + 4 + length
                    self.head_end = end
                    self.path = head.split(b" ", 2)[1]
                if len(self.buf) < self.need:
                    return  # wait for the rest of the body (no rescan of the buffer)
                body = bytes(self.buf[self.head_end + 4 : self.need])
                del self.buf[: self.need]
                self.need = 0
                if self.path.endswith(b"/v1/traces"):
                    req = ExportTraceServiceRequest.FromString(body)
                    n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
                    with spans.get_lock():
                        spans.value += n
                    self.transport.write(respond(b"", b"application/x-protobuf"))
                else:
                    # one aliased ingestStep per step in the (first) query string: count
                    # them with a C-speed scan instead of decoding megabytes of JSON
                    n = body.count(b"ingestStep(")
                    with steps.get_lock():
                        steps.value += n
                    self.transport.write(respond(graphql_answer(n), b"application/json"))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, "127.0.0.1", 0, backlog=256)
        port_value.value = server.sockets[0].getsockname()[1]
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


class CountingSink:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.port = ctx.Value("i", 0)
        self.steps = ctx.Value("q", 0)
        self.spans = ctx.Value("q", 0)
        ready = ctx.Event()
        self.proc = ctx.Process(
            target=_sink_main, args=(self.port, self.steps, self.spans, ready), daemon=True
        )
        self.proc.start()
        if not ready.wait(20):
            raise RuntimeError("counting sink did not start")
        self.url = f"http://127.0.0.1:{self.port.value}"

    def counts(self) -> tuple[int, int]:
        return self.steps.value, self.spans.value

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join(5)


def wait_until(cond: Any, timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def percentiles(samples: list[int]) -> tuple[float, float]:
    samples.sort()
    n = len(samples)
    return samples[n // 2] / 1000.0, samples[min(n - 1, int(n * 0.99))] / 1000.0


def collector_count(data_dir: Path, prefix: str) -> int:
    import sqlite3

    conn = sqlite3.connect(data_dir / "collector.db", timeout=30)
    try:
        return _count_prefix(conn, prefix)
    finally:
        conn.close()


def _count_prefix(conn: Any, prefix: str) -> int:
    # a range on the primary key (an index scan), not LIKE (a full scan)
    row = conn.execute(
        "SELECT COUNT(*) FROM step WHERE id >= ? AND id < ?", (prefix + "-", prefix + ".")
    ).fetchone()
    return int(row[0])


class StoredCount:
    """Polls how many steps of a run the collector stored, cheaply enough not to slow the
    run it measures: counting 100,000 index entries every 5 ms would take a good part of a
    core from the producer and the collector sharing the machine. Once told the run's last
    id (:meth:`expect`), a poll looks that one id up and counts only once it is stored."""

    def __init__(self, data_dir: Path, prefix: str) -> None:
        self.data_dir, self.prefix = data_dir, prefix
        self.sentinel: str | None = None
        self.last = 0
        self.conn: Any = None

    def expect(self, step_id: str) -> None:
        self.sentinel = step_id

    def __call__(self) -> int:
        import sqlite3

        if self.conn is None:
            self.conn = sqlite3.connect(self.data_dir / "collector.db", timeout=30)
        if self.sentinel is not None:
            found = self.conn.execute("SELECT 1 FROM step WHERE id = ?", (self.sentinel,))
            if found.fetchone() is None:
                return self.last
        self.last = _count_prefix(self.conn, self.prefix)
        return self.last

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --------------------------------------------------------------------------- the contenders


#: the documented knobs for throughput (``[pipeline]`` batch_size, batch_bytes,
#: max_in_flight): fewer, larger requests (the HTTP client costs ~0.8 ms of CPU per request).
#: Counting sink only: the collector's GraphQL layer is slow with 2,000-alias documents.
TUNED = {"batch_size": 2000, "batch_bytes": 8 << 20, "max_in_flight": 4}
#: against the collector: 1,000-step batches (the agent spends ~0.6 ms of CPU per request,
#: ~1 us per step at the default 500; the collector is not dearer per step at 1,000)
COLLECTOR_B1000 = {"batch_size": 1000}


def run_ours(
    url: str,
    api_key: str,
    n: int,
    prefix: str,
    acked: Any,
    tmp: Path,
    *,
    tuned: bool = False,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from agent.pipeline import Pipeline, Settings

    settings = Settings(
        api_key=api_key,
        url=url,
        spool_directory=tmp / f"spool-{prefix}",
        dead_letter=tmp / "dead-letter.jsonl",
        # room for the whole burst: this measures delivery, not the memory-full spill
        max_queue_events=max(100_000, 3 * n),
        max_queue_bytes=max(64 << 20, n * 8000),
        **(TUNED if tuned else {}),  # type: ignore[arg-type]
        **(overrides or {}),
    )
    p = Pipeline(settings=settings)
    p.wait_ready(10)
    base = acked()
    for i in range(1000):  # warm-up: connections, lazy imports, documents
        p.enqueue(make_event(i, prefix + "-warm"))
    p.flush(60)
    wait_until(lambda: acked() - base >= 1000, 60)
    events = [make_event(i, prefix) for i in range(n)]
    base = acked()
    if isinstance(acked, StoredCount):
        acked.expect(events[-1]["id"])
    gc.collect()
    gc.disable()
    samples = [0] * n
    clock = time.perf_counter_ns
    enqueue = p.enqueue
    t0 = time.perf_counter()
    for i, event in enumerate(events):
        s = clock()
        enqueue(event)
        samples[i] = clock() - s
    produced = time.perf_counter() - t0
    gc.enable()
    ok = wait_until(lambda: acked() - base >= n - p.stats().dropped_total, 600)
    elapsed = time.perf_counter() - t0
    stats = p.stats()
    p.shutdown(10)
    p50, p99 = percentiles(samples)
    return {
        "p50_us": p50,
        "p99_us": p99,
        "produce_s": produced,
        "events_per_s": n / elapsed if ok else (acked() - base) / elapsed,
        "complete": ok,
        "spilled": stats.spilled,
        "dropped": stats.dropped_total,
    }


def run_reference(url: str, api_key: str, n: int, prefix: str, acked: Any) -> dict[str, Any]:
    from literalai.api import LiteralAPI
    from literalai.event_processor import EventProcessor

    # Any: the reference is untyped (StepDict vs our plain dicts)
    processor: Any = EventProcessor(api=LiteralAPI(api_key=api_key, url=url), batch_size=5)
    base = acked()
    for i in range(10):  # warm-up
        processor.add_event(make_event(i, prefix + "-warm"))
    wait_until(lambda: acked() - base >= 10, 60, step=0.01)
    events = [make_event(i, prefix) for i in range(n)]
    base = acked()
    gc.collect()
    gc.disable()
    samples = [0] * n
    clock = time.perf_counter_ns
    add = processor.add_event
    t0 = time.perf_counter()
    for i, event in enumerate(events):
        s = clock()
        add(event)
        samples[i] = clock() - s
    gc.enable()
    # its own notion of done (queue empty, nothing in process): a failed batch is dropped
    wait_until(
        lambda: processor.event_queue.empty() and not processor._is_processing(), 600, step=0.01
    )
    ok = wait_until(lambda: acked() - base >= n, 2, step=0.01)
    elapsed = time.perf_counter() - t0
    processor.flush_and_stop()
    p50, p99 = percentiles(samples)
    return {
        "p50_us": p50,
        "p99_us": p99,
        "events_per_s": n / elapsed if ok else (acked() - base) / elapsed,
        "complete": ok,
    }


def run_otel(url: str, n: int, acked: Any) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    # defaults (batch 512, delay 5 s) except the queue, so it does not drop the burst
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"{url}/v1/traces"), max_queue_size=max(2048, n)
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")
    base = acked()
    for _ in range(1000):  # warm-up
        tracer.start_span("warm-up").end()
    processor.force_flush(60_000)
    wait_until(lambda: acked() - base >= 1000, 60)
    spans = []
    for i in range(n):
        span = tracer.start_span("llm-call")
        span.set_attribute("input", f"{i} {PAYLOAD}")
        span.set_attribute("output", f"{i} done")
        span.set_attribute("thread", f"thread-{i // 100}")
        spans.append(span)
    base = acked()
    gc.collect()
    gc.disable()
    samples = [0] * n
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for i, span in enumerate(spans):
        s = clock()
        span.end()
        samples[i] = clock() - s
    gc.enable()
    processor.force_flush(120_000)
    ok = wait_until(lambda: acked() - base >= n, 5)
    elapsed = time.perf_counter() - t0
    provider.shutdown()
    p50, p99 = percentiles(samples)
    return {
        "p50_us": p50,
        "p99_us": p99,
        "events_per_s": (acked() - base) / elapsed,
        "complete": ok,
    }


# --------------------------------------------------------------------------- outage memory

OUTAGE = textwrap.dedent(
    """
    import gc, json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from benchmarks.bench_pipeline import make_event
    from agent.pipeline import Pipeline, Settings

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        return 0

    url, tmp, cap = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    n = int(sys.argv[5])
    p = Pipeline(settings=Settings(api_key="k", url=url, spool_directory=tmp / "spool",
                                   dead_letter=tmp / "dl.jsonl", max_queue_bytes=cap,
                                   max_queue_events=1_000_000, fsync_interval=0.05))
    p.wait_ready(10)
    gc.collect()
    baseline = rss("VmRSS")
    t0 = time.perf_counter()
    for i in range(n):
        p.enqueue(make_event(i, "outage"))
    produce = time.perf_counter() - t0
    r = p.flush(120)
    s = p.stats()
    print(json.dumps({"baseline": baseline, "peak": rss("VmHWM"), "produce_s": produce,
                      "total_s": time.perf_counter() - t0, "spooled": r.spooled,
                      "spilled": s.spilled, "dropped": s.dropped, "timed_out": r.timed_out,
                      "producer_waits": s.producer_waits,
                      "producer_wait_max_ms": s.producer_wait_max_ms}))
    """
)


def run_outage(n: int, cap: int, tmp: Path) -> dict[str, Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp / "outage.py"
    script.write_text(OUTAGE)
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, str(script), f"http://127.0.0.1:{port}", str(tmp), str(cap), root, str(n)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
        env={**os.environ, "LITERAL_AGENT_LOGGING_LEVEL": "warning"},
    )
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    return result


# --------------------------------------------------------------------------- driver


LABELS = {
    "ours_sink": ("literal-agent Pipeline (defaults)", "counting sink"),
    "ours_sink_tuned": ("literal-agent Pipeline (tuned)", "counting sink"),
    "otel_sink": ("OTel BatchSpanProcessor + OTLP/HTTP", "counting sink"),
    "ours_collector": ("literal-agent Pipeline (defaults)", "collector (SQLite)"),
    "ours_collector_b1000": ("literal-agent Pipeline (batch_size 1000)", "collector (SQLite)"),
    "reference_collector": ("literalai 0.1.300 EventProcessor", "collector (SQLite)"),
}


def med(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks pipeline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--outage-events", type=int, default=1_000_000)
    parser.add_argument("--cap-mb", type=int, default=32, help="queue memory cap (MB)")
    args = parser.parse_args(argv)
    n_ours = 20_000 if args.quick else 200_000
    n_otel = 10_000 if args.quick else 50_000
    n_ref = 500 if args.quick else 2_000
    n_coll = 10_000 if args.quick else 100_000
    outage_n = 50_000 if args.quick else args.outage_events

    from agent.testing import CollectorProcess

    # SIGTERM (timeout, kill) must still stop the sink and collector processes
    machine_at_start = describe()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sink = CountingSink()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    collector = CollectorProcess(tmp / "collector", api_key="bench-key").start()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in LABELS}
    try:
        steps = lambda: sink.counts()[0]  # noqa: E731
        spans = lambda: sink.counts()[1]  # noqa: E731

        def stored(prefix: str) -> Any:
            return StoredCount(collector.data_dir, prefix)

        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", flush=True)
            rows["ours_sink"].append(run_ours(sink.url, "k", n_ours, f"s{run}", steps, tmp))
            rows["ours_sink_tuned"].append(
                run_ours(sink.url, "k", n_ours, f"t{run}", steps, tmp, tuned=True)
            )
            rows["otel_sink"].append(run_otel(sink.url, n_otel, spans))
            rows["ours_collector"].append(
                run_ours(collector.url, "bench-key", n_coll, f"c{run}", stored(f"c{run}"), tmp)
            )
            rows["ours_collector_b1000"].append(
                run_ours(
                    collector.url,
                    "bench-key",
                    n_coll,
                    f"d{run}",
                    stored(f"d{run}"),
                    tmp,
                    overrides=COLLECTOR_B1000,
                )
            )
            rows["reference_collector"].append(
                run_reference(collector.url, "bench-key", n_ref, f"r{run}", stored(f"r{run}"))
            )
            for name, series in rows.items():
                r = series[-1]
                print(
                    f"  {name:22s} p50={r['p50_us']:.2f}us p99={r['p99_us']:.2f}us "
                    f"{r['events_per_s']:,.0f} ev/s complete={r['complete']}",
                    flush=True,
                )
        print("outage (1 run)...", flush=True)
        outage = run_outage(outage_n, args.cap_mb << 20, tmp)
    finally:
        collector.stop()
        sink.stop()

    summary = {
        name: {k: med(series, k) for k in ("p50_us", "p99_us", "events_per_s")}
        for name, series in rows.items()
    }
    eps = {name: summary[name]["events_per_s"] for name in summary}
    ref = eps["reference_collector"]
    otel = eps["otel_sink"]
    cap = args.cap_mb << 20
    delta_mb = (outage["peak"] - outage["baseline"]) / 2**20

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    ratios = {
        "ours_vs_reference": ratio(eps["ours_collector"], ref),
        "ours_b1000_vs_reference": ratio(eps["ours_collector_b1000"], ref),
        "ours_vs_otel": ratio(eps["ours_sink"], otel),
        "ours_tuned_vs_otel": ratio(eps["ours_sink_tuned"], otel),
    }
    best_sink = max(eps["ours_sink"], eps["ours_sink_tuned"])
    best_coll = eps["ours_collector"]
    targets = {
        "hot_path_p50_le_1.5us": summary["ours_sink"]["p50_us"] <= 1.5,
        "hot_path_p99_le_15us": summary["ours_sink"]["p99_us"] <= 15.0,
        "e2e_collector_ge_50k": best_coll >= 50_000,
        "e2e_sink_ge_50k": best_sink >= 50_000,
        "ratio_reference_ge_10x": (ratio(best_coll, ref) or 0) >= 10,
        "ratio_otel_ge_3x": (ratio(best_sink, otel) or 0) >= 3,
        "outage_rss_within_cap_plus_40mb": delta_mb <= args.cap_mb + 40,
        "outage_nothing_dropped": not sum(outage["dropped"].values()),
    }
    result = {
        "machine": {"at_start": machine_at_start, "at_end": describe()},
        "runs": args.runs,
        "load_average_at_end": os.getloadavg(),
        "tuned_settings": TUNED,
        "collector_b1000_settings": COLLECTOR_B1000,
        "events": {
            "ours_sink": n_ours,
            "otel_sink": n_otel,
            "ours_collector": n_coll,
            "ours_sink_tuned": n_ours,
            "reference_collector": n_ref,
            "outage": outage_n,
        },
        "median": summary,
        "ratios": ratios,
        "outage": {
            **outage,
            "cap_bytes": cap,
            "peak_minus_baseline_mb": delta_mb,
            "peak_mb": outage["peak"] / 2**20,
            "baseline_mb": outage["baseline"] / 2**20,
        },
        "targets_met": targets,
        "raw": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))

    print()
    print(
        f"Pipeline benchmark, ~1 KB events, medians of {args.runs} runs "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    print()
    print("| contender | endpoint | hot path p50 (us) | hot path p99 (us) | events/s acked |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, (who, where) in LABELS.items():
        s = summary[name]
        print(
            f"| {who} | {where} | {s['p50_us']:.2f} | {s['p99_us']:.2f} | "
            f"{s['events_per_s']:,.0f} |"
        )
    print()
    print(
        "Ratios (same run): ours/reference (collector) = "
        f"{ratios['ours_vs_reference'] or 0:.1f}x; ours/OTel (counting sink) = "
        f"{ratios['ours_vs_otel'] or 0:.1f}x defaults, "
        f"{ratios['ours_tuned_vs_otel'] or 0:.1f}x tuned"
    )
    print(f"tuned = {TUNED}; load average at the end: {os.getloadavg()}")
    print(
        f"Outage ({outage_n:,} events, backend down, spool on): peak RSS "
        f"{outage['peak'] / 2**20:.0f} MB, baseline {outage['baseline'] / 2**20:.0f} MB, "
        f"growth {delta_mb:.0f} MB vs cap {args.cap_mb} MB + 40 MB; spooled "
        f"{outage['spooled']:,}, dropped {sum(outage['dropped'].values()):,}"
    )
    print("Targets:", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in targets.items()))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
