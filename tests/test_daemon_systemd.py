"""The systemd units: `systemd-analyze verify` accepts them, and they carry the hardening."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
NAMES = ("literal-agent.service", "literal-agent.socket", "literal-collector.service")


def _entry_point() -> str:
    """The installed `literal-agent` script (verify checks that ExecStart exists)."""
    script = Path(sys.executable).parent / "literal-agent"
    found = script if script.exists() else shutil.which("literal-agent")
    if not found:
        pytest.skip("the literal-agent entry point is not installed (pip install -e .)")
    return str(found)


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """No error and no warning from `systemd-analyze verify` (ExecStart pointed at our script)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    script = _entry_point()
    for name in NAMES:
        text = (UNITS / name).read_text().replace("/usr/bin/literal-agent", script)
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *(f"./{n}" for n in NAMES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ours = [line for line in result.stderr.splitlines() if any(n in line for n in NAMES)]
    assert result.returncode == 0, result.stderr
    assert ours == [], "\n".join(ours)


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.mark.parametrize("name", ["literal-agent.service", "literal-collector.service"])
def test_services_are_hardened(name: str) -> None:
    """Unprivileged user, read-only system, private tmp, no new privileges, few families."""
    service = _unit(name)["Service"]
    assert service.get("User") == "literal-agent" or service.get("DynamicUser") == "yes"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == value, key
    assert service.get("StateDirectory")


def test_daemon_unit_notifies_and_matches_its_socket() -> None:
    """Type=notify with a watchdog; the socket unit's path is the one the service uses."""
    service = _unit("literal-agent.service")["Service"]
    socket_unit = _unit("literal-agent.socket")["Socket"]
    assert service["Type"] == "notify" and service.get("WatchdogSec")
    assert service["RuntimeDirectory"] == "literal-agent"
    assert socket_unit["SocketMode"] == "0660"
    text = (UNITS / "literal-agent.service").read_text()
    assert f"Environment=LITERAL_AGENT_DAEMON_SOCKET={socket_unit['ListenStream']}\n" in text
