"""`literal-agent up`: the embedded default in one command: collector on SQLite plus daemon.

The collector runs as a child process (``literal-agent collector``, its data directory and
generated API key under ``[collector] data_dir``); the daemon runs in this process and
delivers to it. Prints where everything is, then serves until Ctrl-C / SIGTERM, which
drains the daemon into the collector and then stops the collector.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["add_parser", "run", "start_collector"]

_READY = re.compile(r"listening on (?P<url>\S+) \(api key file: (?P<key_file>.+)\)")


def add_parser(subparsers: Any) -> None:
    """Register ``up``."""
    parser = subparsers.add_parser(
        "up",
        help="collector on SQLite + daemon in one command (the embedded default)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--socket", help="daemon Unix socket path (default from config)")
    parser.add_argument("--port", type=int, help="collector port (default from config: 8799)")
    parser.add_argument("--data-dir", help="collector data directory (default from config)")
    parser.add_argument("--durability", choices=("memory", "disk"), help="daemon ack policy")
    parser.set_defaults(func=run)


def start_collector(
    argv: list[str], env: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``literal-agent collector``; return (process, url, api key file) once ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "collector", *argv],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        # Its own process group: a terminal's Ctrl-C reaches `up` only, which stops the
        # collector (SIGTERM) after the daemon has drained into it.
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        found = _READY.search(line)
        if found:
            return proc, found.group("url"), found.group("key_file")
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"the collector did not start (exit status {proc.returncode})")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``literal-agent up``."""
    from agent._config import ConfigError
    from agent._logging import configure_logging
    from agent.daemon._command import Daemon, load

    try:
        config = load(args)
    except ConfigError as exc:
        print(f"literal-agent up: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging.format, config.logging.level)
    collector_argv = []
    if args.config:
        collector_argv += ["--config", args.config]
    if args.port is not None:
        collector_argv += ["--port", str(args.port)]
    if args.data_dir:
        collector_argv += ["--data-dir", args.data_dir]
    try:
        collector, url, key_file = start_collector(collector_argv)
    except RuntimeError as exc:
        print(f"literal-agent up: {exc}", file=sys.stderr)
        return 1
    try:
        key = (
            config.collector.api_keys[0]
            if key_file == "-" and config.collector.api_keys
            else Path(key_file).read_text().strip()
        )
        client = msgspec.structs.replace(config.client, url=url, api_key=key)
        config = msgspec.structs.replace(config, client=client)
        daemon = Daemon(config, config_path=args.config, ready_stream=sys.stderr)
        try:
            daemon.open_sockets()
        except OSError as exc:
            print(f"literal-agent up: cannot listen: {exc}", file=sys.stderr)
            return 1
        print(
            "literal-agent is up\n"
            f"  daemon socket:    {config.daemon.resolved_socket}\n"
            f"  collector URL:    {url}\n"
            f"  API key file:     {key_file}\n"
            "Ctrl-C stops both.",
            flush=True,
        )
        asyncio.run(daemon.serve())
        return 0
    finally:
        if collector.poll() is None:
            os.kill(collector.pid, signal.SIGTERM)
        try:
            collector.wait(20)
        except subprocess.TimeoutExpired:
            collector.kill()
            collector.wait()
