"""The `literal-agent` command line: one sub-command per module, registered here.

Each sub-command lives next to the code it drives and exposes two functions:
``add_parser(subparsers) -> None`` and ``run(args) -> int``. This module only
wires them together, so that ``literal-agent --help`` stays cheap (the modules
are imported when their command runs, not before).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> module providing add_parser()/run()
COMMANDS: dict[str, str] = {
    "collector": "agent.collector._command",
    "up": "agent.daemon._up",
    "run": "agent.daemon._command",
    "status": "agent.daemon._control",
    "flush": "agent.daemon._control",
    "spool": "agent.daemon._control",
    "send": "agent.daemon._control",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="literal-agent",
        description="Telemetry agent for LLM applications (Literal AI API).",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for module_name in dict.fromkeys(COMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a command whose module is not built yet is simply absent
        if module_name not in seen:
            module.add_parser(sub)
            seen.add(module_name)
    return parser


def _version() -> str:
    from agent import __version__

    return f"literal-agent {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
