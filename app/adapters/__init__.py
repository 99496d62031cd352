"""The adapter registry: one explicit map from stable names to adapter classes.

Built-in adapters are listed by import path and imported on first use, so an adapter a
daemon never runs costs nothing at start. Third-party packages register through the
``integration_dispatch.adapters`` entry-point group::

    [project.entry-points."integration_dispatch.adapters"]
    mycorp = "mycorp_adapter:MyCorpAdapter"
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from app.adapters.base import Adapter
from app.core.errors import DuplicateAdapter, UnknownAdapter

ENTRY_POINT_GROUP = "integration_dispatch.adapters"

BUILTIN: dict[str, str] = {
    "noop": "app.adapters.noop:NoopAdapter",
    "webhook": "app.adapters.webhook:WebhookAdapter",
    "xledger": "app.adapters.xledger:XledgerAdapter",
    "dynamics_bc": "app.adapters.dynamics_bc:DynamicsBCAdapter",
}


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    origin: str          # "builtin" or the distribution that registered it
    target: str          # module:Class
    config_schema: dict[str, Any] | None


def _load(target: str) -> type[Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def validate_adapter(name: str, cls: type[Any]) -> None:
    """Refuse a class that cannot serve as an adapter, saying what is missing."""
    if getattr(cls, "name", None) != name:
        raise TypeError(f"adapter {cls.__qualname__} must set name = {name!r}")
    for method in ("run", "probe", "warm_up"):
        if not inspect.iscoroutinefunction(getattr(cls, method, None)):
            raise TypeError(f"adapter {name!r} must define `async def {method}(self, ctx)`")
    if getattr(cls, "default_health_mode", None) not in ("active", "passive"):
        raise TypeError(f"adapter {name!r} must set default_health_mode to 'active' or 'passive'")
    model = getattr(cls, "config_model", None)
    if model is not None and not hasattr(model, "model_validate"):
        raise TypeError(f"adapter {name!r}: config_model must be a pydantic model or None")
    for capability in ("uses_http", "uses_credentials", "resumes_sync"):
        if not isinstance(getattr(cls, capability, False), bool):
            raise TypeError(f"adapter {name!r}: {capability} must be True or False")
    window = getattr(cls, "write_window", 0.0)
    if isinstance(window, bool) or not isinstance(window, int | float) or window < 0:
        raise TypeError(f"adapter {name!r}: write_window must be a number of seconds >= 0")
    kinds: Any = getattr(cls, "kinds", frozenset())
    if not isinstance(kinds, set | frozenset | tuple | list) or not all(isinstance(k, str) and k for k in kinds):
        raise TypeError(f"adapter {name!r}: kinds must be a set of job kind names, e.g. {{'export', 'sync'}}")


class Registry:
    def __init__(self, builtin: dict[str, str] | None = None) -> None:
        self._targets: dict[str, tuple[str, str]] = {
            name: (target, "builtin") for name, target in (BUILTIN if builtin is None else builtin).items()
        }
        self._classes: dict[str, type[Any]] = {}
        self._instances: dict[str, Adapter] = {}
        self._entry_points_loaded = False

    def register(self, name: str, cls: type[Any], origin: str = "code") -> None:
        if name in self._targets or name in self._classes:
            raise DuplicateAdapter(f"adapter {name!r} is already registered; adapter names must be unique")
        validate_adapter(name, cls)
        self._classes[name] = cls
        self._targets[name] = (f"{cls.__module__}:{cls.__qualname__}", origin)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._targets)

    def get(self, name: str) -> Adapter:
        """The shared instance of adapter ``name``."""
        if name not in self._instances:
            self._instances[name] = self.cls(name)()
        return self._instances[name]

    def cls(self, name: str) -> type[Any]:
        if name not in self._classes:
            if name not in self._targets:
                self._load_entry_points()
            if name not in self._targets:
                known = ", ".join(sorted(self._targets))
                raise UnknownAdapter(f"no adapter named {name!r} (registered: {known}); "
                                     "fix dispatch.integrations.adapter or install the adapter package")
            cls = _load(self._targets[name][0])
            validate_adapter(name, cls)
            self._classes[name] = cls
        return self._classes[name]

    def info(self) -> list[AdapterInfo]:
        out = []
        for name in self.names():
            model = getattr(self.cls(name), "config_model", None)
            schema = model.model_json_schema() if model is not None else None
            target, origin = self._targets[name]
            out.append(AdapterInfo(name, origin, target, schema))
        return out

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._targets:
                raise DuplicateAdapter(f"adapter {ep.name!r} from {ep.value} clashes with an existing adapter")
            origin = ep.dist.name if ep.dist is not None else "entry point"
            self._targets[ep.name] = (ep.value, origin)


registry = Registry()
