"""Fault-injection harness: daemons as processes, an effect-recording webhook receiver, and the
ledger check every scenario ends with.

The ledger check is the point of the suite: whatever was done to the daemons, the database or
the vendors, at the end every job that should have run did (``succeeded``), nothing is left
``running`` or ``queued``, the idempotency ledger holds one ``succeeded`` row per job key, and
the receiving side saw exactly one effect per key (repeated deliveries of a key, which
at-least-once delivery allows after a crash, are counted and deduplicated like a real receiver
deduplicates them).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.devkit.demo import put_secret
from app.devkit.emulators.server import ServedApp, serve
from tests.support import DaemonProcess, wait_for

WEBHOOK_SECRET = "chaos-webhook-signing-key"  # a test value, not a credential
FIGURES: list[tuple[str, str]] = []  # (scenario, figure) printed at the end of the session


def record_figure(scenario: str, text: str) -> None:
    FIGURES.append((scenario, text))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("chaos figures")
        for scenario, text in FIGURES:
            terminalreporter.write_line(f"{scenario}: {text}")


# -- the effect receiver --------------------------------------------------------------------
class EffectReceiver:
    """A webhook receiver that records each POST's Idempotency-Key on arrival.

    Recording on arrival (before the optional delay) is the harsh case: the effect exists
    even when the daemon is killed before it reads the answer, so the rescued rerun delivers
    the key again. Like a real receiver it treats a repeated key as a no-op.
    """

    def __init__(self, delay: Callable[[], float] = lambda: 0.0, secret: str = WEBHOOK_SECRET) -> None:
        self.delay = delay
        self.secret = secret.encode()
        self.deliveries: Counter[str] = Counter()
        self.bad_signatures = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = await request.body()
        key = request.headers.get("idempotency-key", "")
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        with self._lock:
            if not hmac.compare_digest(expected, request.headers.get("x-dispatch-signature", "")):
                self.bad_signatures += 1
            first = self.deliveries[key] == 0
            self.deliveries[key] += 1
        pause = self.delay()
        if pause > 0:
            await asyncio.sleep(pause)
        response: Response = JSONResponse({"key": key, "duplicate": not first})
        await response(scope, receive, send)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.deliveries.values())

    @property
    def distinct(self) -> int:
        with self._lock:
            return len(self.deliveries)

    def keys(self) -> set[str]:
        with self._lock:
            return set(self.deliveries)


@pytest.fixture
def receiver() -> Iterator[tuple[EffectReceiver, ServedApp]]:
    app = EffectReceiver()
    with serve(app) as served:
        yield app, served


@pytest.fixture
def webhook(conn: psycopg.Connection, receiver: tuple[EffectReceiver, ServedApp]) -> EffectReceiver:
    """Integration 'hook' (adapter webhook) posting to the receiver, signed with a vault secret."""
    app, served = receiver
    config = {"url": served.url + "/effects", "timeout_seconds": 10}
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, config, secret_name, max_concurrency) "
                 "VALUES ('hook', 'webhook', %s, 'hook-signing', 50)", [json.dumps(config)])
    put_secret(conn, "hook-signing", WEBHOOK_SECRET)
    return app


# -- daemons ---------------------------------------------------------------------------------
@pytest.fixture
def daemons(db_url: str, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons (``url=`` overrides DATABASE_URL); every one is SIGKILLed at teardown."""
    started: list[DaemonProcess] = []

    def make(start: bool = True, concurrency: int = 10, url: str | None = None, **env: Any) -> DaemonProcess:
        d = DaemonProcess(url or db_url, tmp_path, concurrency=concurrency, **env)
        started.append(d)
        if start:
            d.start(wait=False)
            d.wait_healthy(60)  # a slow, shared machine: cold start is usually < 1 s
        return d

    yield make
    for d in started:
        d.kill()


def healthy(daemon: DaemonProcess) -> bool:
    r = daemon.health()
    return r is not None and r.status_code == 200


# -- jobs --------------------------------------------------------------------------------------
def insert_jobs(conn: psycopg.Connection, integration: str, n: int, payload: dict[str, Any] | None = None,
                kind: str = "sync", max_attempts: int = 5) -> list[int]:
    rows = conn.execute(
        "INSERT INTO dispatch.jobs (integration_id, kind, payload, max_attempts) "
        "SELECT %s, %s, %s::jsonb, %s FROM generate_series(1, %s) RETURNING id",
        [integration, kind, json.dumps(payload or {}), max_attempts, n]).fetchall()
    return [r[0] for r in rows]


def counts(conn: psycopg.Connection, where: str = "true") -> dict[str, int]:
    rows = conn.execute(f"SELECT status::text, count(*) FROM dispatch.jobs WHERE {where} GROUP BY 1").fetchall()
    return {status: n for status, n in rows}


def wait_settled(conn: psycopg.Connection, timeout: float, where: str = "true") -> dict[str, int]:
    """Wait until no job (matching ``where``) is queued or running; return the final counts."""
    def settled() -> dict[str, int] | None:
        c = counts(conn, where)
        return None if c.get("queued") or c.get("running") else (c or {"none": 0})

    try:
        return wait_for(settled, timeout, interval=0.2, message="every job finished")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job states now: {counts(conn, where)}") from None


# -- the ledger check ---------------------------------------------------------------------------
@dataclass
class Ledger:
    jobs: int
    attempts_total: int
    max_attempts_seen: int
    deliveries: int = 0
    duplicates_deduplicated: int = 0
    documents: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.jobs} jobs succeeded", f"{self.attempts_total} attempts (max {self.max_attempts_seen})"]
        if self.deliveries:
            parts.append(f"{self.deliveries} deliveries, {self.duplicates_deduplicated} repeated keys deduplicated")
        if self.documents:
            parts.append(f"{self.documents} vendor documents")
        return ", ".join(parts)


def assert_ledger(conn: psycopg.Connection, expected: int, *, where: str = "true",
                  receiver: EffectReceiver | None = None,
                  documents: dict[str, Any] | None = None, doc_check: Callable[[Any], bool] | None = None,
                  ref_of: Callable[[str], str] | None = None) -> Ledger:
    """0 lost, 0 duplicated, 0 stuck — for the jobs matching ``where``.

    * every job succeeded, none queued/running/failed/cancelled, and there are ``expected``;
    * the idempotency ledger has exactly one row per job key, in state ``succeeded``;
    * ``receiver``: the set of keys it saw equals the set of job keys (one effect per key);
    * ``documents`` (a vendor emulator's documents by external reference, ``ref_of`` maps a
      job key to it): exactly one document per job, each passing ``doc_check``, no strays.
    """
    states = counts(conn, where)
    assert states == {"succeeded": expected}, f"job states {states}, expected {expected} succeeded"
    assert counts(conn).get("running", 0) == 0, "a job is stuck in running"
    rows = conn.execute(f"SELECT id, idempotency_key FROM dispatch.jobs WHERE {where}").fetchall()
    ids, keys = [r[0] for r in rows], [r[1] for r in rows]
    assert len(set(keys)) == expected, "two jobs share an idempotency key"
    ledger = conn.execute(
        "SELECT count(*), count(DISTINCT k.key), count(*) FILTER (WHERE k.state = 'succeeded'), "
        "       count(*) FILTER (WHERE k.job_id IS DISTINCT FROM j.id) "
        "FROM dispatch.jobs j JOIN dispatch.idempotency_keys k ON k.key = j.idempotency_key "
        "WHERE j.id = ANY(%s)", [ids]).fetchone()
    assert ledger == (expected, expected, expected, 0), \
        f"idempotency ledger (rows, keys, succeeded, pointing elsewhere) = {ledger}"
    attempts = conn.execute("SELECT coalesce(sum(attempts), 0), coalesce(max(attempts), 0) FROM dispatch.jobs "
                            "WHERE id = ANY(%s)", [ids]).fetchone() or (0, 0)
    result = Ledger(expected, int(attempts[0]), int(attempts[1]))
    if receiver is not None:
        seen = receiver.keys()
        assert seen == set(keys), (f"receiver effects differ from jobs: {len(set(keys) - seen)} missing, "
                                   f"{len(seen - set(keys))} unexpected")
        assert receiver.bad_signatures == 0, "a delivery carried a bad HMAC signature"
        result.deliveries = receiver.total
        result.duplicates_deduplicated = receiver.total - receiver.distinct
    if documents is not None:
        assert ref_of is not None
        refs = {ref_of(k) for k in keys}
        assert set(documents) == refs, (f"vendor documents differ from jobs: missing {sorted(refs - set(documents))}, "
                                        f"stray {sorted(set(documents) - refs)}")
        if doc_check is not None:
            wrong = {ref: doc for ref, doc in documents.items() if not doc_check(doc)}
            assert not wrong, f"documents written more than once or incompletely: {wrong}"
        result.documents = len(documents)
    return result


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
