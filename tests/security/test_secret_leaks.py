"""Planted secrets never surface: real jobs through a real daemon (as its own login role),
success and failure paths, then every place a value could end up is searched for them.

Places searched: the daemon's log, every row of every dispatch table (jobs.payload/result/
last_error, alerts.message/details, ...), the HTTP API's answers, pg_stat_activity.query
(sampled while the jobs run), cron.job.command and cron.job_run_details, the server log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from app.devkit.cluster import LocalCluster
from app.devkit.demo import XLEDGER_EXPORT_PAYLOAD, export_payload, put_secret
from app.devkit.emulators import BusinessCentralEmulator, XledgerEmulator, serve
from app.devkit.emulators.dynamics_bc import DEFAULT_CLIENT_ID, DEFAULT_COMPANY_ID, DEFAULT_TENANT
from app.web.auth import mint_token
from tests.security.conftest import (
    ActivitySampler,
    EchoVendor,
    WebhookReceiver,
    cron_database,
    ensure_daemon_role,
    plant,
    role_url,
)
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.acceptance

BC_EXPORT = export_payload("60100", "20100")
# integration id -> (adapter, kind, payload, expected status)
JOBS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "sec-xl": ("xledger", "export", XLEDGER_EXPORT_PAYLOAD, "succeeded"),
    "sec-bc": ("dynamics_bc", "export", BC_EXPORT, "succeeded"),
    "sec-wh": ("webhook", "notify", {"note": "hello"}, "succeeded"),
    "sec-xl-wrong": ("xledger", "sync", {}, "failed"),        # wrong token: AuthError, twice
    "sec-bc-wrong": ("dynamics_bc", "sync", {}, "failed"),    # wrong client secret: AuthError
    "sec-xl-echo": ("xledger", "sync", {}, "failed"),         # 500 echoing headers and body
    "sec-bc-echo": ("dynamics_bc", "sync", {}, "failed"),     # 500 echoing headers and body
    "sec-bc-echo-token": ("dynamics_bc", "sync", {}, "failed"),  # Entra 401 echoing the form
    "sec-wh-echo": ("webhook", "notify", {}, "failed"),       # 400 echoing headers and body
    "sec-missing": ("xledger", "sync", {}, "failed"),         # secret_name not in the vault
}


class Stage:
    """Everything the scenario started: vendors, planted values, the daemon."""

    def __init__(self) -> None:
        self.values = {label: plant(label) for label in (
            "xl-token", "xl-wrong", "xl-echo", "bc-secret", "bc-wrong", "bc-echo", "bc-echo-token",
            "wh-secret", "wh-echo", "unreferenced", "jwt-secret", "service-key", "db-password")}
        self.urls: dict[str, str] = {}
        self.bc_emulators: list[BusinessCentralEmulator] = []
        self.api_bodies: list[str] = []

    def serve_vendors(self, stack: ExitStack) -> None:
        v = self.values
        xl = XledgerEmulator(tokens=(v["xl-token"], v["xl-echo"]))
        self.urls["xl"] = stack.enter_context(serve(EchoVendor(xl, 500, v["xl-echo"], "graphql"))).url
        for name, secret, echo in (("bc", "bc-secret", None), ("bc-wrong", "bc-secret", None),
                                   ("bc-echo", "bc-echo", ("/api/", "odata", 500)),
                                   ("bc-echo-token", "bc-echo-token", ("/oauth2/", "entra", 401))):
            emulator = BusinessCentralEmulator(client_secret=v[secret])
            self.bc_emulators.append(emulator)
            app: Any = emulator if echo is None else EchoVendor(emulator, echo[2], echo[0], echo[1])
            self.urls[name] = stack.enter_context(serve(app)).url
        self.urls["wh"] = stack.enter_context(serve(WebhookReceiver())).url
        self.urls["wh-echo"] = stack.enter_context(serve(EchoVendor(WebhookReceiver(), 400, "/", "text"))).url

    def integrations(self) -> list[tuple[str, str, dict[str, Any], str | None, str | None]]:
        """(id, adapter, config, secret name, secret value)."""
        v, u = self.values, self.urls

        def bc(url: str) -> dict[str, Any]:
            return {"base_url": url, "login_url": url, "company_id": DEFAULT_COMPANY_ID}

        def bc_creds(secret: str) -> str:
            return json.dumps({"tenant_id": DEFAULT_TENANT, "client_id": DEFAULT_CLIENT_ID, "client_secret": secret})

        return [
            ("sec-xl", "xledger", {"base_url": u["xl"]}, "sec-xl-creds", json.dumps({"token": v["xl-token"]})),
            ("sec-xl-wrong", "xledger", {"base_url": u["xl"]}, "sec-xl-wrong-creds",
             json.dumps({"token": v["xl-wrong"]})),
            ("sec-xl-echo", "xledger", {"base_url": u["xl"]}, "sec-xl-echo-creds", json.dumps({"token": v["xl-echo"]})),
            ("sec-bc", "dynamics_bc", bc(u["bc"]), "sec-bc-creds", bc_creds(v["bc-secret"])),
            ("sec-bc-wrong", "dynamics_bc", bc(u["bc-wrong"]), "sec-bc-wrong-creds", bc_creds(v["bc-wrong"])),
            ("sec-bc-echo", "dynamics_bc", bc(u["bc-echo"]), "sec-bc-echo-creds", bc_creds(v["bc-echo"])),
            ("sec-bc-echo-token", "dynamics_bc", bc(u["bc-echo-token"]), "sec-bc-echo-token-creds",
             bc_creds(v["bc-echo-token"])),
            ("sec-wh", "webhook", {"url": u["wh"] + "/hook"}, "sec-wh-creds", v["wh-secret"]),
            ("sec-wh-echo", "webhook", {"url": u["wh-echo"] + "/hook"}, "sec-wh-echo-creds", v["wh-echo"]),
            ("sec-missing", "xledger", {"base_url": u["xl"]}, "sec-missing/not-in-the-vault", None),
            ("sec-noop", "noop", {}, None, None),
        ]

    def seed(self, conn: psycopg.Connection) -> None:
        for slug, adapter, config, secret_name, value in self.integrations():
            conn.execute("INSERT INTO dispatch.integrations (id, adapter, config, secret_name) VALUES (%s, %s, %s, %s)",
                         [slug, adapter, json.dumps(config), secret_name])
            if value is not None:
                put_secret(conn, secret_name or slug, value)
        put_secret(conn, "c-unreferenced", self.values["unreferenced"])

    def access_tokens(self) -> set[str]:
        return {token for emulator in self.bc_emulators for token in emulator.tokens}


def enqueue_all(conn: psycopg.Connection) -> dict[str, int]:
    ids = {}
    for slug, (_, kind, payload, _) in JOBS.items():
        row = conn.execute("SELECT dispatch.enqueue(%s, %s, %s::jsonb, max_attempts => 1)",
                           [slug, kind, json.dumps(payload)]).fetchone()
        assert row is not None
        ids[slug] = row[0]
    return ids


def exercise_api(stage: Stage, daemon: DaemonProcess) -> None:
    """A valid token enqueues and reads; forged ones are refused. Bodies are kept for the search."""
    good = mint_token(stage.values["jwt-secret"])
    forged = [mint_token("not-the-secret-" + "x" * 32),
              jwt.encode({"role": "service_role"}, key=None, algorithm="none"),
              mint_token(stage.values["jwt-secret"], role="anon")]
    r = httpx.post(daemon.url + "/dispatch", json={"integration_id": "sec-noop", "kind": "sync"},
                   headers={"Authorization": f"Bearer {good}"}, timeout=10)
    assert r.status_code in (200, 201, 202), r.text
    stage.api_bodies.append(r.text)
    job = r.json().get("job_id") or r.json().get("id")
    stage.api_bodies.append(httpx.get(f"{daemon.url}/jobs/{job}", headers={"Authorization": f"Bearer {good}"},
                                      timeout=10).text)
    for token in forged:
        r = httpx.post(daemon.url + "/dispatch", json={"integration_id": "sec-noop", "kind": "sync"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code in (401, 403), r.text
        stage.api_bodies.append(r.text)
    stage.api_bodies.append(httpx.get(daemon.url + "/health", timeout=10).text)


def dump_dispatch(conn: psycopg.Connection) -> dict[str, str]:
    """Every row of every dispatch table, as JSON text, by table."""
    tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'dispatch'")]
    out = {}
    for table in tables:
        row = conn.execute(f"SELECT coalesce(string_agg(to_jsonb(t)::text, E'\\n'), '') FROM dispatch.{table} t"
                           ).fetchone()
        out[f"dispatch.{table}"] = row[0] if row else ""
    return out


def cron_texts(admin_url: str, database: str) -> dict[str, str]:
    with psycopg.connect(admin_url) as c:
        commands = c.execute("SELECT string_agg(command, E'\\n') FROM cron.job").fetchone()
        runs = c.execute("SELECT string_agg(concat_ws(' ', command, return_message, status), E'\\n') "
                         "FROM cron.job_run_details").fetchone()
        ours = c.execute("SELECT count(*) FROM cron.job WHERE database = %s", [database]).fetchone()
    assert ours is not None and ours[0] >= 2, "pg_cron jobs registered for the scenario's database"
    return {"cron.job.command": (commands or [""])[0] or "", "cron.job_run_details": (runs or [""])[0] or ""}


def leaks(places: dict[str, str], values: dict[str, str]) -> dict[str, list[str]]:
    return {place: found for place, text in places.items()
            if (found := [label for label, value in values.items() if value in text])}


def wait_cron_run(admin_url: str, database: str) -> None:
    def ran() -> bool:
        with psycopg.connect(admin_url) as c:
            row = c.execute("SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                            "WHERE j.database = %s AND d.status IN ('succeeded', 'failed')", [database]).fetchone()
        return bool(row and row[0])
    wait_for(ran, 150, interval=1, message="pg_cron ran a job in the scenario's database")


@pytest.fixture(scope="module")
def world(pg_cluster: LocalCluster, admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One scenario for the module: it takes a pg_cron minute, so both tests share it."""
    stage = Stage()
    with ExitStack() as stack:
        cron_db = stack.enter_context(cron_database(pg_cluster, admin_url))
        conn = stack.enter_context(psycopg.connect(cron_db, autocommit=True))
        with ActivitySampler(admin_url) as sampler:
            stage.serve_vendors(stack)
            stage.seed(conn)
            url = role_url(pg_cluster, cron_db, ensure_daemon_role(admin_url), stage.values["db-password"])
            daemon = DaemonProcess(url, tmp_path_factory.mktemp("sec"), DISPATCH_ALLOW_LOOPBACK_TARGETS="true",
                                   SUPABASE_JWT_SECRET=stage.values["jwt-secret"],
                                   SUPABASE_SERVICE_ROLE_KEY=stage.values["service-key"],
                                   DISPATCH_STALL_AFTER="100000")
            stack.callback(daemon.kill)
            daemon.start()
            ids = enqueue_all(conn)
            exercise_api(stage, daemon)
            wait_for(lambda: _all_finished(conn), 90, interval=0.2, message="every scenario job finished")
            wait_cron_run(admin_url, cron_db.rsplit("/", 1)[1])
        yield World(stage, daemon, conn, ids, sampler, cron_db.rsplit("/", 1)[1])


@dataclass
class World:
    stage: Stage
    daemon: DaemonProcess
    conn: psycopg.Connection
    ids: dict[str, int]
    sampler: ActivitySampler
    database: str


def _all_finished(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM dispatch.jobs WHERE status IN ('queued', 'running')").fetchone()
    return row is not None and row[0] == 0


def test_planted_secrets__appear_nowhere_after_real_jobs(world: World, pg_cluster: LocalCluster,
                                                         admin_url: str) -> None:
    stage, daemon, conn = world.stage, world.daemon, world.conn
    _check_outcomes(conn, world.ids)
    places = {"daemon log": daemon.logs(), "api responses": "\n".join(stage.api_bodies),
              "pg_stat_activity.query": "\n".join(world.sampler.texts),
              "server.log": (pg_cluster.datadir / "server.log").read_text(errors="replace"),
              **dump_dispatch(conn), **cron_texts(admin_url, world.database)}
    assert world.sampler.samples > 50, "pg_stat_activity was sampled while the jobs ran"
    assert any("integration_secret" in t for t in world.sampler.texts), "the sampler saw the vault reads"
    assert leaks(places, stage.values) == {}
    assert daemon.health() is not None and daemon.health().status_code == 200  # type: ignore[union-attr]


def _check_outcomes(conn: psycopg.Connection, ids: dict[str, int]) -> None:
    """The failure paths really ran: each job ended as planned, failures with a message."""
    rows = {r[0]: r[1:] for r in conn.execute("SELECT integration_id, status::text, last_error FROM dispatch.jobs "
                                              "WHERE id = ANY(%s)", [list(ids.values())])}
    for slug, (_, _, _, expected) in JOBS.items():
        status, error = rows[slug]
        assert status == expected, f"{slug}: {status} {error}"
        assert expected == "succeeded" or error, f"{slug} failed without a message"
    assert "refused" in rows["sec-xl-wrong"][1] and "Entra ID refused" in rows["sec-bc-wrong"][1]
    assert "[redacted]" in rows["sec-xl-echo"][1], "the echo reached last_error, redacted"
    assert "not in the vault" in rows["sec-missing"][1]


def test_issued_access_tokens__never_stored_when_a_vendor_echoes_them(world: World) -> None:
    tokens = world.stage.access_tokens()
    assert tokens, "the BC emulators issued tokens"
    places = {"daemon log": world.daemon.logs(), **dump_dispatch(world.conn)}
    assert leaks(places, {f"token-{i}": t for i, t in enumerate(tokens)}) == {}
