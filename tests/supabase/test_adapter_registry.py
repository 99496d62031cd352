"""The Edge Function's adapter names equal the Python registry's: they can never drift."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.supabase.conftest import DISPATCH, SUPABASE

pytestmark = pytest.mark.supabase
REGISTRY_TS = SUPABASE / "functions" / "_shared" / "adapter-registry.ts"


def typescript_names() -> list[str]:
    text = REGISTRY_TS.read_text()
    block = re.search(r"BUILTIN_ADAPTERS[^=]*=\s*Object\.freeze\(\[(.*?)\]\)", text, re.S)
    assert block, f"{REGISTRY_TS} no longer declares BUILTIN_ADAPTERS = Object.freeze([...])"
    return re.findall(r'"([^"]+)"', block.group(1))


def test_adapter_registry__the_function_lists_exactly_the_python_registry() -> None:
    out = subprocess.run([str(DISPATCH), "adapters", "list", "--json"], capture_output=True, text=True, check=True)
    # Built-in ones: third-party adapters (entry points) are allowed per deployment with
    # DISPATCH_EXTRA_ADAPTERS, so one installed in this venv must not break the comparison.
    python_names = sorted(entry["name"] for entry in json.loads(out.stdout) if entry.get("origin") == "builtin")
    assert python_names, "the Python registry lists no adapters"
    assert typescript_names() == python_names, (
        f"supabase/functions/_shared/adapter-registry.ts lists {typescript_names()}, the daemon registers "
        f"{python_names}: update BUILTIN_ADAPTERS (sorted)")
