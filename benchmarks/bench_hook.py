"""Hot-path cost of the in-process front doors, side by side with the peers.

Per-call latency (each call timed alone with ``perf_counter_ns``; warm-up first; GC on) of:

* ``hook step (ours)``: one call of a ``@client.step``-decorated function (input and output
  captured), enqueued on a real :class:`~agent.pipeline.Pipeline` whose worker runs and
  exports to a no-op exporter;
* ``step context manager (ours)``: ``with client.step(name="x"): pass`` written inline (a
  new manager per pass), same client and pipeline;
* ``span (ours)``: ``with tracer.start_as_current_span("x"): pass`` on :mod:`agent.trace`
  feeding that same pipeline;
* ``hook step (reference)``: the same decorated call with ``literalai.LiteralClient``'s
  ``@client.step`` (its event-processor thread runs; its API is replaced by a counting sink);
* ``span (OpenTelemetry SDK)``: the same ``with`` block on an SDK ``TracerProvider`` with a
  ``BatchSpanProcessor`` and a no-op exporter;
* ``decorated call (OpenTelemetry SDK)``: the same function decorated with that tracer's
  ``@start_as_current_span`` (OpenTelemetry's way to instrument a call; it captures no
  arguments, ours does).

Our decorated call is compared with both OpenTelemetry rows (the span is the stricter one);
our step block with the OpenTelemetry span block.

Each run alternates the variants in short blocks (so a busy spell of a shared machine hits
all of them), each block starting from drained queues; the table shows the medians over
runs of each run's p50 and p99, and ratios peer / ours (higher = ours cheaper; target
>= 5x). The tail (p99) of every variant is dominated by CPython's garbage collector and by
the GIL: queued items survive until a worker thread sends them, so young-generation
collections and the worker's own work land on some calls.

    python -m benchmarks hook [--runs 5] [--calls 20000] [--reference-calls 400]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "hook.json"
TARGET = 5.0


class NullExporter:
    """The pipeline's exporter interface, answering every batch at once."""

    def __init__(self) -> None:
        self.steps = 0

    async def send_steps(self, steps: list[dict[str, Any]]) -> dict[int, str]:
        self.steps += len(steps)
        return {}

    async def upsert_thread(self, thread: dict[str, Any]) -> None:
        return None

    async def aclose(self) -> None:
        return None


class CountingReferenceAPI:
    """Stands in for the reference event processor's ``LiteralAPI`` (no network)."""

    def __init__(self) -> None:
        self.steps = 0

    def send_steps(self, steps: list[Any]) -> dict[str, Any]:
        self.steps += len(steps)
        return {"data": {f"step{i}": {"ok": True, "message": None} for i in range(len(steps))}}


def sample(fn: Callable[[], Any], calls: int, warmup: int) -> list[int]:
    """``calls`` single-call durations (ns) of ``fn``, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    out = [0] * calls
    for i in range(calls):
        start = clock()
        fn()
        out[i] = clock() - start
    return out


def percentiles(values: list[int]) -> tuple[float, float]:
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2]), float(ordered[min(len(ordered) - 1,
                                                                  int(len(ordered) * 0.99))])


def build_variants() -> tuple[
    dict[str, Callable[[], Any]], Callable[[], dict[str, Any]], Callable[..., None]
]:
    """The four measured callables, a function returning side counters, and ``settle``
    (drain every queue and collect garbage, so each variant starts from a quiet process)."""
    from literalai import LiteralClient as ReferenceClient
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from agent import trace
    from agent._client import LiteralClient
    from agent.pipeline import Pipeline

    exporter = NullExporter()
    pipeline = Pipeline(
        api_key="bench-key", url="http://127.0.0.1:9", exporter_factory=lambda: exporter
    )
    ours = LiteralClient(sink=pipeline)

    @ours.step
    def ours_step(question: str, k: int = 3) -> str:
        return question

    def ours_step_block() -> None:
        with ours.step(name="x"):
            pass

    tracer = trace.TracerProvider(client=ours).get_tracer("bench")

    def ours_span() -> None:
        with tracer.start_as_current_span("x"):
            pass

    reference = ReferenceClient(api_key="bench-key", url="http://127.0.0.1:9")
    counting = CountingReferenceAPI()
    reference.event_processor.api = counting  # type: ignore[assignment]

    @reference.step
    def reference_step(question: str, k: int = 3) -> str:
        return question

    class NoopExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = SDKTracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    otel_tracer = provider.get_tracer("bench")

    def otel_span() -> None:
        with otel_tracer.start_as_current_span("x"):
            pass

    @otel_tracer.start_as_current_span("otel_step")
    def otel_step(question: str, k: int = 3) -> str:
        return question

    def counters() -> dict[str, Any]:
        pipeline.flush(timeout=30)
        return {
            "ours_pipeline": pipeline.stats().as_dict(),
            "ours_hook_stats": ours.hook_stats(),
            "ours_exported_steps": exporter.steps,
            "reference_sent_steps": counting.steps,
        }

    def settle(collect: bool = True) -> None:
        pipeline.flush(timeout=30)
        provider.force_flush(30_000)
        if collect:
            gc.collect()

    variants = {
        "hook step (ours)": lambda: ours_step("what is up?"),
        "step context manager (ours)": ours_step_block,
        "span (ours)": ours_span,
        "hook step (reference)": lambda: reference_step("what is up?"),
        "decorated call (OpenTelemetry SDK)": lambda: otel_step("what is up?"),
        "span (OpenTelemetry SDK)": otel_span,
    }
    return variants, counters, settle


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hook", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--reference-calls", type=int, default=400,
                        help="calls per run for the reference SDK (each sleeps >= 1 ms)")
    parser.add_argument("--blocks", type=int, default=10,
                        help="blocks per run: variants alternate block by block")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    variants, counters, settle = build_variants()
    per_run: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    gc.collect()
    for name, fn in variants.items():  # warm-up
        sample(fn, 50 if "reference" in name else 2000, warmup=0)
    loads: list[float] = []  # 1-minute load average at the end of each run
    for _ in range(args.runs):
        # Variants alternate in short blocks, so a busy spell of the machine is shared by
        # all of them instead of landing on one; queues are drained before every block.
        durations: dict[str, list[int]] = {name: [] for name in variants}
        settle()
        for _ in range(args.blocks):
            for name, fn in variants.items():
                slow = "reference" in name
                calls = (args.reference_calls if slow else args.calls) // args.blocks
                settle(collect=False)
                durations[name] += sample(fn, calls, warmup=max(calls // 20, 5))
        for name in variants:
            per_run[name].append(percentiles(durations[name]))
        loads.append(os.getloadavg()[0])
    side = counters()

    p50s = {name: statistics.median(p50 for p50, _ in runs) for name, runs in per_run.items()}
    p99s = {name: statistics.median(p99 for _, p99 in runs) for name, runs in per_run.items()}
    results: dict[str, dict[str, Any]] = {
        name: {
            "p50_ns": p50s[name],
            "p99_ns": p99s[name],
            "runs": [{"p50_ns": p50, "p99_ns": p99} for p50, p99 in runs],
        }
        for name, runs in per_run.items()
    }
    comparisons = [
        ("hook step (ours)", "hook step (reference)"),
        ("hook step (ours)", "decorated call (OpenTelemetry SDK)"),
        ("hook step (ours)", "span (OpenTelemetry SDK)"),
        ("step context manager (ours)", "span (OpenTelemetry SDK)"),
        ("step context manager (ours)", "hook step (reference)"),
        ("span (ours)", "span (OpenTelemetry SDK)"),
        ("span (ours)", "hook step (reference)"),
    ]
    ratios = []
    for ours_name, peer in comparisons:
        r50 = p50s[peer] / p50s[ours_name]
        r99 = p99s[peer] / p99s[ours_name]
        ratios.append({"ours": ours_name, "peer": peer, "p50_ratio": r50, "p99_ratio": r99,
                       "target_met": r50 >= TARGET and r99 >= TARGET})

    print(f"\nper-call cost, median over {args.runs} runs ({args.calls} calls/run; "
          f"reference {args.reference_calls}); 1-min load average after each run: "
          f"{', '.join(f'{load:.2f}' for load in loads)} on {os.cpu_count()} CPUs\n")
    print("| variant | p50 (us) | p99 (us) |")
    print("| --- | ---: | ---: |")
    for name in results:
        print(f"| {name} | {p50s[name] / 1000:.2f} | {p99s[name] / 1000:.2f} |")
    print("\n| ours | peer | peer/ours p50 | peer/ours p99 | >= 5x |")
    print("| --- | --- | ---: | ---: | :---: |")
    for r in ratios:
        print(f"| {r['ours']} | {r['peer']} | {r['p50_ratio']:.1f}x | {r['p99_ratio']:.1f}x | "
              f"{'yes' if r['target_met'] else 'no'} |")
    dropped = side["ours_pipeline"].get("dropped", {})
    print(f"\nours: {side['ours_exported_steps']} steps exported, dropped {dropped or 'none'}, "
          f"hook counters {side['ours_hook_stats'] or 'none'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "hook",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "calls": args.calls,
        "reference_calls": args.reference_calls,
        "blocks": args.blocks,
        "load_avg_1m_per_run": loads,
        "results": results,
        "ratios": ratios,
        "side": side,
    }, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0
