"""Dispatch ``python -m benchmarks <name> [args...]`` to ``benchmarks/bench_<name>.py``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _names() -> list[str]:
    here = Path(__file__).parent
    modules = pkgutil.iter_modules([str(here)])
    return sorted(m.name[len("bench_") :] for m in modules if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = _names()
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m benchmarks <name> [args...]   (or 'all')")
        print("benchmarks:", ", ".join(names))
        return 0 if argv else 2
    if argv[0] == "all":
        rc = 0
        for name in names:
            print(f"\n=== {name} ===", flush=True)
            rc |= importlib.import_module(f"benchmarks.bench_{name}").main(argv[1:])
        return rc
    if argv[0] not in names:
        print(f"unknown benchmark {argv[0]!r}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.bench_{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
