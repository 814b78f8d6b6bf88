"""Control commands: `status`, `flush`, `spool inspect|replay|purge` and `send`.

``status`` and ``flush`` ask the running daemon over its socket (the same protocol as the
producers). ``spool`` works on the spool directory itself: ``inspect`` is read-only and safe
at any time; ``purge`` and ``replay`` need the spool not to be in use (the running daemon
replays its spool by itself as soon as the backend answers). ``send`` pipes NDJSON from
stdin to the daemon and reports what was accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

import msgspec

from agent.daemon._protocol import (
    Ack,
    ErrorReply,
    Flush,
    Flushed,
    Status,
    StatusReply,
    Sync,
    decode_reply_json,
    encode_json_line,
)
from agent.daemon._transport import DaemonClient, connect

__all__ = ["add_parser", "format_table", "run_flush", "run_send", "run_spool", "run_status"]


def add_parser(subparsers: Any) -> None:
    """Register ``status``, ``flush``, ``spool`` and ``send``."""

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", help="TOML configuration file")
        parser.add_argument("--socket", help="daemon address: PATH or tcp:HOST:PORT")

    status = subparsers.add_parser("status", help="show the running daemon's state")
    common(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.set_defaults(func=run_status)

    flush = subparsers.add_parser("flush", help="make the daemon deliver (or spool) what it holds")
    common(flush)
    flush.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    flush.set_defaults(func=run_flush)

    spool = subparsers.add_parser("spool", help="inspect, replay or purge the disk spool")
    spool_sub = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    for name, text in (
        ("inspect", "summarise the spool (read-only)"),
        ("replay", "deliver the spool to the backend now (daemon stopped)"),
        ("purge", "delete every spooled record (daemon stopped)"),
    ):
        action = spool_sub.add_parser(name, help=text)
        action.add_argument("--config", help="TOML configuration file")
        action.add_argument("--dir", help="spool directory (default from config)")
        if name == "inspect":
            action.add_argument("--json", action="store_true", help="print JSON")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        if name == "replay":
            action.add_argument("--timeout", type=float, default=300.0, help="give up after")
        action.set_defaults(func=run_spool)

    send = subparsers.add_parser("send", help="send NDJSON events from stdin to the daemon")
    common(send)
    send.set_defaults(func=run_send)


def _address(args: argparse.Namespace) -> str:
    if getattr(args, "socket", None):
        return str(args.socket)
    from agent._config import load_config

    return load_config(args.config).daemon.resolved_socket


def _unreachable(address: str, exc: Exception) -> int:
    print(f"literal-agent: no daemon answers at {address}: {exc}", file=sys.stderr)
    print("start one with `literal-agent run` (or `literal-agent up`)", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- tables


def format_table(title: str, rows: Iterable[tuple[str, object]]) -> str:
    """A two-column text table."""
    pairs = [(key, _show(value)) for key, value in rows]
    width = max((len(k) for k, _ in pairs), default=0)
    lines = [title, "-" * max(len(title), width + 2 + max((len(v) for _, v in pairs), default=0))]
    lines += [f"{key.ljust(width)}  {value}" for key, value in pairs]
    return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value and len(value) > 3:
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((prefix + key, value))
    return rows


# --------------------------------------------------------------------------- status / flush


def run_status(args: argparse.Namespace) -> int:
    """`literal-agent status`."""
    address = _address(args)
    try:
        with DaemonClient(address, timeout=10.0) as client:
            reply = client.request(Status())
    except OSError as exc:
        return _unreachable(address, exc)
    if not isinstance(reply, StatusReply):
        print(f"unexpected reply: {reply}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"daemon": reply.daemon, "pipeline": reply.pipeline}, indent=2))
        return 0
    print(format_table(f"daemon ({address})", _flatten(reply.daemon)))
    print()
    print(format_table("pipeline", _flatten(reply.pipeline)))
    return 0


def run_flush(args: argparse.Namespace) -> int:
    """`literal-agent flush`."""
    address = _address(args)
    try:
        with DaemonClient(address, timeout=args.timeout + 10.0) as client:
            reply = client.request(Flush(timeout=args.timeout))
    except OSError as exc:
        return _unreachable(address, exc)
    if not isinstance(reply, Flushed):
        print(f"unexpected reply: {reply}", file=sys.stderr)
        return 1
    print(
        f"delivered {reply.delivered:,}, spooled {reply.spooled:,}, pending {reply.pending:,}"
        + (" (timed out)" if reply.timed_out else "")
    )
    return 1 if reply.timed_out else 0


# --------------------------------------------------------------------------- spool


def _spool_dir(args: argparse.Namespace) -> str:
    if args.dir:
        return str(args.dir)
    from agent._config import load_config

    return load_config(args.config).spool.resolved_directory


def run_spool(args: argparse.Namespace) -> int:
    """`literal-agent spool inspect|replay|purge`."""
    from agent._logging import configure_logging
    from agent.pipeline._spool import SpoolLockedError, inspect_spool, purge_spool

    configure_logging("auto", "warning")
    directory = _spool_dir(args)
    report = inspect_spool(directory)
    if args.spool_command == "inspect":
        if args.json:
            print(json.dumps(msgspec.to_builtins(report), indent=2))
            return 0
        print(format_table(f"spool {directory}", _report_rows(report)))
        return 0
    in_use = (
        f"literal-agent spool: {directory} is in use by a running agent; "
        "it replays its spool by itself (`literal-agent flush` to hurry it)"
    )
    if report.in_use:
        print(in_use, file=sys.stderr)
        return 1
    if args.spool_command == "purge":
        if not args.yes and sys.stdin.isatty():
            answer = input(f"delete {report.records:,} spooled records in {directory}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                return 1
        try:
            removed = purge_spool(directory)
        except SpoolLockedError:  # an agent opened it after the check above
            print(in_use, file=sys.stderr)
            return 1
        print(f"purged {removed:,} records from {directory}")
        return 0
    return _replay(args, directory, report.records)


def _report_rows(report: Any) -> list[tuple[str, object]]:
    def when(ts: float | None) -> str:
        return (
            "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(" ", "seconds")
        )

    return [
        ("exists", report.exists),
        ("in use", report.in_use),
        ("segments", len(report.segments)),
        ("records", report.records),
        ("bytes", report.bytes),
        ("corrupt records", report.corrupt_records),
        ("torn bytes", report.torn_bytes),
        ("oldest", when(report.oldest_mtime)),
        ("newest", when(report.newest_mtime)),
    ]


def _replay(args: argparse.Namespace, directory: str, total: int) -> int:
    """Start a pipeline on the spool (it replays oldest first) and wait until it is empty."""
    from agent._config import load_config
    from agent.pipeline import Pipeline
    from agent.pipeline._spool import inspect_spool

    if total == 0:
        print(f"nothing to replay in {directory}")
        return 0
    config = load_config(args.config)
    spool = msgspec.structs.replace(config.spool, directory=directory, enabled=True)
    pipeline = Pipeline(msgspec.structs.replace(config, spool=spool))
    bar = _Progress(total, sys.stderr)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            left = inspect_spool(directory).records
            bar.update(total - left)
            if left == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        pipeline.shutdown(10.0)
        bar.close()
    left = inspect_spool(directory).records
    print(f"replayed {total - left:,} of {total:,} records" + (f"; {left:,} left" if left else ""))
    return 1 if left else 0


class _Progress:
    """A one-line progress bar on a TTY; a final line otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()

    def update(self, done: int) -> None:
        if not self.tty:
            return
        frac = min(1.0, done / self.total)
        rate = done / max(time.monotonic() - self.start, 1e-6)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r[{bar:<30}] {done:,}/{self.total:,} ({rate:,.0f}/s)")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- send


def run_send(args: argparse.Namespace, stdin: IO[bytes] | None = None) -> int:
    """`literal-agent send`: NDJSON on stdin -> daemon; errors on stderr; 1 if any rejected."""
    address = _address(args)
    source = stdin if stdin is not None else sys.stdin.buffer
    try:
        sock = connect(address, timeout=30.0)
    except OSError as exc:
        return _unreachable(address, exc)
    replies: list[Ack] = []
    errors: list[ErrorReply] = []
    reader = threading.Thread(target=_read_replies, args=(sock, replies, errors), daemon=True)
    reader.start()
    with sock:
        for chunk in iter(lambda: source.read(1 << 16), b""):
            sock.sendall(chunk)
        sock.sendall(b"\n" + encode_json_line(Sync(id=1)))
        reader.join(60.0)
    for error in errors:
        print(f"line {error.line}: {error.code}: {error.reason}", file=sys.stderr)
    if not replies:
        print("literal-agent send: no acknowledgement from the daemon", file=sys.stderr)
        return 1
    ack = replies[-1]
    print(f"accepted {ack.accepted:,} events, rejected {ack.rejected:,}")
    return 1 if ack.rejected else 0


def _read_replies(sock: Any, replies: list[Ack], errors: list[ErrorReply]) -> None:
    buf = b""
    with contextlib.suppress(OSError):
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                reply = decode_reply_json(line)
                if isinstance(reply, ErrorReply):
                    errors.append(reply)
                elif isinstance(reply, Ack):
                    replies.append(reply)
                    return


def main(argv: Sequence[str]) -> int:  # pragma: no cover - convenience for `python -m`
    from agent._cli import main as cli

    return cli(argv)
