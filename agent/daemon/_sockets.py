"""Listening sockets for the daemon: a Unix socket created safely, and an optional TCP one."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
from pathlib import Path

import structlog

__all__ = ["SocketInUseError", "bind_tcp", "bind_unix", "parse_hostport"]

log = structlog.get_logger(__name__)


class SocketInUseError(OSError):
    """Another daemon answers on the socket path, or the path is not a socket."""


def bind_unix(path: str | os.PathLike[str], mode: int = 0o660, backlog: int = 512) -> socket.socket:
    """Bind and listen on ``path`` with permissions ``mode``.

    The parent directory is created when missing, mode 0750 (0700 inside a world-writable
    directory such as ``/tmp``); an existing one must belong to us (or root) and must not be
    writable by others, so nobody else can swap the socket. A stale socket file (one nobody
    answers on) is removed; a live one, or a path that is not a socket, is an error.
    """
    target = Path(path)
    _prepare_parent(target.parent)
    _remove_stale(target)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # no window where the socket is more open than asked
    try:
        sock.bind(str(target))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(target, mode)
    sock.listen(backlog)
    return sock


def _prepare_parent(parent: Path) -> None:
    if not parent.exists():
        grand = parent.parent
        shared = grand.exists() and bool(grand.stat().st_mode & stat.S_IWOTH)
        mode = 0o700 if shared else 0o750
        parent.mkdir(mode=mode, parents=True, exist_ok=True)
        os.chmod(parent, mode)  # mkdir's mode is subject to the umask
        return
    info = parent.stat()
    if info.st_uid not in (os.getuid(), 0):
        raise SocketInUseError(f"{parent} belongs to another user (uid {info.st_uid})")
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise SocketInUseError(f"{parent} is writable by anyone; choose a private directory")


def _remove_stale(target: Path) -> None:
    try:
        info = target.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketInUseError(f"{target} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(target))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("daemon.stale_socket_removed", path=str(target))
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return
    except OSError as exc:
        raise SocketInUseError(f"{target}: cannot probe the existing socket: {exc}") from exc
    finally:
        probe.close()
    raise SocketInUseError(f"{target}: another daemon is listening on this socket")


def parse_hostport(spec: str) -> tuple[str, int]:
    """``"127.0.0.1:8798"`` / ``"[::1]:8798"`` -> (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {spec!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind_tcp(spec: str, backlog: int = 512) -> socket.socket:
    """Bind and listen on ``HOST:PORT`` (meant for loopback; a wider address is logged)."""
    host, port = parse_hostport(spec)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(host).is_loopback:
            log.warning("daemon.tcp_not_loopback", address=spec)
    return sock
