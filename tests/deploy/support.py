"""Readers for the files under deploy/: stdlib (and PyYAML) only, no network, no app imports."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def shutdown_grace() -> float:
    """DISPATCH_SHUTDOWN_GRACE's documented default (.env.example), in seconds."""
    m = re.search(r"^DISPATCH_SHUTDOWN_GRACE=(\d+(?:\.\d+)?)\s*$", (ROOT / ".env.example").read_text(), re.M)
    assert m, ".env.example no longer documents DISPATCH_SHUTDOWN_GRACE"
    return float(m.group(1))


# The drain after the grace: duties get at most 5 s to stop, the pool 2 s to record the stop,
# then the HTTP server and the pools close. A stop timeout must leave that room, and some.
AFTER_GRACE_S = 15


# -- Containerfile
@dataclass
class Instruction:
    keyword: str
    args: str

    def json_args(self) -> list[str] | None:
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Logical lines: comments dropped, backslash continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.strip().partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages in order."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            found.append(Stage(parts[0], name))
        elif not found:
            if ins.keyword == "ARG" and "=" in ins.args:
                key, _, value = ins.args.partition("=")
                args[key] = value
        else:
            found[-1].instructions.append(ins)
    return args, found


def env_pairs(ins: Instruction) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", ins.args))
