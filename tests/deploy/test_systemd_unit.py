"""deploy/integration-dispatch.service: its directives, and systemd's own verdict where it is here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import AFTER_GRACE_S, DEPLOY, shutdown_grace

UNIT = DEPLOY / "integration-dispatch.service"
HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
    "RestrictNamespaces": "yes", "CapabilityBoundingSet": "", "SystemCallArchitectures": "native",
}
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd allows repeats)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "ms": 0.001}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(\w*)", value)
    assert m and m.group(2) in units, value
    return float(m.group(1)) * units[m.group(2)]


def one(service: dict[str, list[str]], key: str) -> str:
    assert key in service, f"{key} missing"
    return service[key][-1]


def test_unit__runs_serve_unprivileged_from_an_environment_file() -> None:
    service = parse(UNIT.read_text())["Service"]
    assert one(service, "ExecStart").split()[-1] == "serve"
    assert one(service, "ExecStart").split()[0].startswith("/"), "systemd needs an absolute path"
    assert one(service, "DynamicUser") == "yes" or "User" in service
    assert one(service, "EnvironmentFile").startswith("/etc/integration-dispatch/")
    assert one(service, "Restart") == "on-failure"


def test_unit__the_stop_timeout_outlasts_the_shutdown_grace() -> None:
    service = parse(UNIT.read_text())["Service"]
    assert one(service, "KillSignal") == "SIGTERM"
    assert one(service, "KillMode") in ("mixed", "control-group")
    assert seconds(one(service, "TimeoutStopSec")) >= shutdown_grace() + AFTER_GRACE_S


def test_unit__is_hardened() -> None:
    service = parse(UNIT.read_text())["Service"]
    for key, value in HARDENING.items():
        assert one(service, key) == value, key
    assert set(one(service, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in service["SystemCallFilter"]
    assert parse(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


def _verifiable_copy(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it)."""
    stand_in = tmp_path / "integration-dispatch"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "integration-dispatch.service"
    unit.write_text(text.replace("/opt/integration-dispatch/bin/integration-dispatch", str(stand_in)))
    return unit


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@needs_analyze
def test_unit__systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    done = _verify(_verifiable_copy(tmp_path, UNIT.read_text()))
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@needs_analyze
def test_unit__systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("TimeoutStopSec=45s", "TimeoutStopSec=soon").replace(
        "NoNewPrivileges=yes", "NoNewPrivilegez=yes")
    done = _verify(_verifiable_copy(tmp_path, broken))
    assert "soon" in done.stderr and "NoNewPrivilegez" in done.stderr


@needs_analyze
def test_unit__systemd_rates_its_exposure_ok(tmp_path: Path) -> None:
    """systemd-analyze security: 0 (locked down) to 10 (exposed); under 2.0 is systemd's "OK"."""
    unit = _verifiable_copy(tmp_path, UNIT.read_text())
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    bare = tmp_path / "bare" / "integration-dispatch.service"
    bare.parent.mkdir()
    bare.write_text(f"[Service]\nExecStart={tmp_path / 'integration-dispatch'} serve\n")
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(bare)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, "an unhardened unit must fail the same threshold"
