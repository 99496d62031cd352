"""``adapters list``: what the registry knows, built-in and from entry points."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_adapters(args: argparse.Namespace) -> int:
    from app.adapters import registry

    infos = registry.info()
    if args.json:
        print(json.dumps([i.__dict__ for i in infos], indent=2))
        return 0
    for info in infos:
        fields = ", ".join((info.config_schema or {}).get("properties", {})) or "-"
        print(f"{info.name:<14} {info.origin:<10} {info.target:<45} config: {fields}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("adapters", help="list the registered adapters")
    p.add_argument("action", nargs="?", choices=["list"], default="list")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_adapters)
