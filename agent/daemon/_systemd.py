"""systemd integration without a dependency: ``sd_notify`` and socket activation.

* :func:`notify` sends ``READY=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``STATUS=...`` as one
  datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``).
* :func:`listen_fds` returns the sockets passed by socket activation: ``$LISTEN_PID`` must
  be our pid, ``$LISTEN_FDS`` says how many, and they start at fd 3 (``SD_LISTEN_FDS_START``).
* :func:`watchdog_interval` is half of ``$WATCHDOG_USEC`` (when meant for us): how often to
  send ``WATCHDOG=1``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping
from typing import Final

__all__ = ["SD_LISTEN_FDS_START", "listen_fds", "notify", "watchdog_interval"]

SD_LISTEN_FDS_START: Final = 3


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the service manager; False when not under one."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(target)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True


def listen_fds(
    env: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> list[socket.socket]:
    """The sockets handed over by systemd socket activation (empty when there are none).

    The variables are removed from the environment (``unset``) so that child processes do
    not try to take the same descriptors.
    """
    env = os.environ if env is None else env
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(name, None)
    if not (pid.isdigit() and count.isdigit()) or int(pid) != os.getpid():
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the configured timeout), or None."""
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
