"""``python -m benchmarks hook`` keeps working (a tiny run; the numbers are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_hook_smoke(tmp_path: Path) -> None:
    """One short run, as a real process, prints both markdown tables and writes the JSON."""
    out = tmp_path / "hook.json"
    argv = ["--runs", "1", "--calls", "400", "--reference-calls", "20", "--blocks", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "hook", *argv, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| hook step (ours) |" in done.stdout and "peer/ours p99" in done.stdout
    data = json.loads(out.read_text())
    assert set(data["results"]) == {
        "hook step (ours)",
        "step context manager (ours)",
        "span (ours)",
        "hook step (reference)",
        "decorated call (OpenTelemetry SDK)",
        "span (OpenTelemetry SDK)",
    }
    assert len(data["ratios"]) == 7 and data["side"]["ours_exported_steps"] > 0
