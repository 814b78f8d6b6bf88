"""Benchmarks, run side by side with the peers (literalai SDK, OpenTelemetry SDK).

Run one with ``python -m benchmarks <name>`` (``python -m benchmarks`` lists them).
Each module ``benchmarks/bench_<name>.py`` exposes ``main(argv: list[str]) -> int`` and
prints a table of medians and ratios; results also go to ``benchmarks/results/<name>.json``.
"""
