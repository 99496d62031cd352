"""Per-job metric labels stay bounded: a kind its adapter does not declare counts as ``other``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from app.adapters import Registry
from app.adapters.base import Capabilities
from app.core import metrics

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class Job:
    integration_id: str
    kind: str
    adapter: str
    started_at: datetime = T0 + timedelta(seconds=2)
    run_after: datetime = T0
    enqueued_at: datetime = T0
    scheduled_for: datetime = T0


class Invoicing:
    name: ClassVar[str] = "invoicing"
    default_health_mode: ClassVar[str] = "passive"
    kinds: ClassVar[frozenset[str]] = frozenset({"invoice", "credit_note"})

    async def run(self, ctx: Any) -> dict[str, Any]:
        return {}

    async def probe(self, ctx: Any) -> None:
        return None

    async def warm_up(self, ctx: Any) -> None:
        return None


@pytest.fixture
def registry() -> Iterator[Registry]:
    registry = Registry()
    registry.register("invoicing", Invoicing)
    metrics.bind_known_kinds(lambda adapter: Capabilities.of(registry.cls(adapter)).kinds)
    yield registry
    metrics.bind_known_kinds(lambda adapter: metrics.DEFAULT_KINDS)


def finished(integration: str, kind: str, outcome: str = "succeeded") -> float:
    labels = {"integration": integration, "kind": kind, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("dispatch_jobs_finished_total", labels) or 0.0


def picked_up(integration: str, kind: str) -> float:
    labels = {"integration": integration, "kind": kind}
    return metrics.REGISTRY.get_sample_value("dispatch_job_pickup_latency_seconds_count", labels) or 0.0


def test_labels__an_unknown_kind_is_counted_under_other(registry: Registry) -> None:
    for kind in ("export", "bulk-export-2026-11", "x" * 60):
        job = Job("labels-xl", kind, "xledger")
        metrics.observe_started(job)
        metrics.observe_finished(job, "succeeded", 0.01)
    assert (picked_up("labels-xl", "export"), finished("labels-xl", "export")) == (1, 1)
    assert (picked_up("labels-xl", "other"), finished("labels-xl", "other")) == (2, 2)
    assert picked_up("labels-xl", "bulk-export-2026-11") == 0 and finished("labels-xl", "x" * 60) == 0


def test_labels__an_adapter_declares_its_own_kinds(registry: Registry) -> None:
    for kind in ("invoice", "credit_note", "export"):
        metrics.observe_finished(Job("labels-inv", kind, "invoicing"), "failed", 0.5)
    assert [finished("labels-inv", k, "failed") for k in ("invoice", "credit_note", "export", "other")] == [1, 1, 0, 1]


def test_labels__an_unknown_adapter_counts_with_the_default_kinds(registry: Registry) -> None:
    metrics.observe_finished(Job("labels-gone", "sync", "no-such-adapter"), "failed", 0.1)
    metrics.observe_finished(Job("labels-gone", "invoice", "no-such-adapter"), "failed", 0.1)
    assert (finished("labels-gone", "sync", "failed"), finished("labels-gone", "other", "failed")) == (1, 1)


def test_labels__unknown_kinds_add_no_cache_entries(registry: Registry) -> None:
    for n in range(500):
        job = Job("labels-many", f"kind-{n}", "xledger")
        metrics.observe_started(job)
        metrics.observe_finished(job, "retry", 0.0)
    assert finished("labels-many", "other", "retry") == 500
    assert {key for key in metrics._started if key[0] == "labels-many"} == {("labels-many", "other")}
    assert {key for key in metrics._finished if key[0] == "labels-many"} == {("labels-many", "other", "retry")}


def test_registry__refuses_kinds_that_are_not_a_set_of_names() -> None:
    class Bad(Invoicing):
        name: ClassVar[str] = "bad"
        kinds: ClassVar[Any] = "invoice"

    with pytest.raises(TypeError, match="kinds must be a set of job kind names"):
        Registry().register("bad", Bad)
