"""deploy/*.lock: every package hash-pinned, at constraints.txt's versions, covering pyproject.

`pip install --require-hashes` refuses a lock with a missing hash, but only at install time and
only on the machine installing; these checks fail first, offline.
"""

from __future__ import annotations

import re
import tomllib

from tests.deploy.support import DEPLOY, ROOT

ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    found: dict[str, tuple[str, int]] = {}
    current = None
    for line in text.splitlines():
        m = ENTRY.match(line)
        if m:
            current = normal(m["name"])
            found[current] = (m["version"], 0)
        elif current and HASH.search(line):
            version, n = found[current]
            found[current] = (version, n + len(HASH.findall(line)))
        elif not line.startswith((" ", "#")) and line.strip():
            current = None
    return found


def problems(text: str, constraints: dict[str, str]) -> list[str]:
    out = []
    for name, (version, hashes) in entries(text).items():
        if hashes == 0:
            out.append(f"{name}: no hash")
        if name in constraints and constraints[name] != version:
            out.append(f"{name}: {version} in the lock, {constraints[name]} in constraints.txt")
        if name not in constraints and name != "setuptools":
            out.append(f"{name}: not in constraints.txt")
    return out


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = ENTRY.match(line)
        if m:
            pins[normal(m["name"])] = m["version"]
    return pins


def requirement_names(requirements: list[str]) -> set[str]:
    return {normal(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_locks__every_entry_is_hashed_at_the_constrained_version() -> None:
    for name in ("requirements.lock", "requirements-dev.lock"):
        text = (DEPLOY / name).read_text()
        assert entries(text), name
        assert problems(text, constraints()) == [], name


def test_locks__runtime_covers_the_dependencies_and_nothing_for_development() -> None:
    runtime = set(entries((DEPLOY / "requirements.lock").read_text()))
    assert requirement_names(project()["dependencies"]) - runtime == set()
    assert "psycopg-binary" in runtime, "psycopg[binary]'s extra must be locked too"
    assert runtime & requirement_names(project()["optional-dependencies"]["dev"]) == set()


def test_locks__dev_covers_runtime_and_the_dev_extra() -> None:
    dev = set(entries((DEPLOY / "requirements-dev.lock").read_text()))
    runtime = set(entries((DEPLOY / "requirements.lock").read_text()))
    assert runtime <= dev
    assert requirement_names(project()["optional-dependencies"]["dev"]) - dev == set()


def test_locks__build_pins_a_setuptools_the_build_system_accepts() -> None:
    build = entries((DEPLOY / "build.lock").read_text())
    assert set(build) == {"setuptools"} and build["setuptools"][1] >= 1
    (spec,) = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    minimum = re.fullmatch(r"setuptools>=(\d+)", spec)
    assert minimum and int(build["setuptools"][0].split(".")[0]) >= int(minimum.group(1))


def test_problems__a_missing_hash_a_drifted_version_and_an_unlisted_package_are_named() -> None:
    text = ("alembic==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
            "httpx==0.28.1\n    # via x\n"
            "evil==6.6.6 \\\n    --hash=sha256:" + "b" * 64 + "\n")
    assert problems(text, {"alembic": "1.20.1", "httpx": "0.28.1"}) == [
        "alembic: 1.0 in the lock, 1.20.1 in constraints.txt", "httpx: no hash", "evil: not in constraints.txt"]
