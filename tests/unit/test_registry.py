"""The adapter registry: explicit names, eager validation, no duplicates, entry points."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from app.adapters import ENTRY_POINT_GROUP, Registry
from app.adapters.noop import NoopAdapter
from app.core.errors import DuplicateAdapter, UnknownAdapter

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mycorp_adapter"


def test_registry__refuses_a_duplicate_name() -> None:
    registry = Registry()
    with pytest.raises(DuplicateAdapter, match="'noop' is already registered"):
        registry.register("noop", NoopAdapter)


def test_registry__validates_eagerly_and_says_what_is_missing() -> None:
    class Half:
        name: ClassVar[str] = "half"
        default_health_mode: ClassVar[str] = "passive"

        async def run(self, ctx: Any) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match=r"must define `async def probe\(self, ctx\)`"):
        Registry().register("half", Half)


def test_registry__unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownAdapter, match="no adapter named 'nope' .*noop"):
        Registry().get("nope")


def test_registry__builtin_adapters_are_imported_on_first_use_only() -> None:
    sys.modules.pop("app.adapters.xledger", None)
    registry = Registry()
    assert "xledger" in registry.names()
    assert "app.adapters.xledger" not in sys.modules
    registry.get("xledger")
    assert "app.adapters.xledger" in sys.modules


def test_registry__third_party_adapters_register_through_the_entry_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed distribution, as pip would lay it out: the module and its entry point.
    dist = tmp_path / "mycorp_adapter-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mycorp-adapter\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmycorp = mycorp_adapter:MyCorpAdapter\n")
    (tmp_path / "mycorp_adapter.py").write_text((EXAMPLE / "mycorp_adapter.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    info = {i.name: i for i in registry.info()}
    assert info["mycorp"].origin == "mycorp-adapter"
    assert "base_url" in (info["mycorp"].config_schema or {}).get("properties", {})
    assert registry.get("mycorp").name == "mycorp"
