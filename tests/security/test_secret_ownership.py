"""Credentials (issue 15): an integration may not read another integration's vault secret, by
pointing its secret_name at it or through the caller's default name. Enforced in
app/db/vault.py until the accessor does it in SQL (docs/security.md has the migration)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import pytest

from app.db.vault import SecretRefused, VaultCredentials, check_secret_name
from tests.security.conftest import DAEMON_ROLE, ensure_daemon_role, plant


# -- the rule
@pytest.mark.parametrize(("integration", "own", "others"), [
    ("acme", "acme", []), ("acme", "acme-creds", []), ("acme", "acme/xledger", []), ("acme", "acme:token", []),
    ("acme-prod", "acme-prod-key", ["acme"]),  # the longer id owns the name
])
def test_rule__an_integrations_own_names_pass(integration: str, own: str, others: list[str]) -> None:
    check_secret_name(integration, own, None, None, set(), others)


@pytest.mark.parametrize(("integration", "own", "others"), [
    ("evil", "acme-creds", ["acme"]),         # someone else's name
    ("evil", "stripe-live-key", []),           # a vault secret of another application
    ("acme", "acme-prod-key", ["acme-prod"]),  # claimed by a longer integration id
    ("acme", "acmeprod", []),                   # a prefix without a separator is not a claim
    ("acme", "acme-", []),
])
def test_rule__names_not_its_own_are_refused(integration: str, own: str, others: list[str]) -> None:
    with pytest.raises(SecretRefused):
        check_secret_name(integration, own, None, None, set(), others)


def test_rule__shared_names_are_listed_explicitly() -> None:
    check_secret_name("evil", "common-smtp", None, None, {"common-smtp"}, ["acme"])
    with pytest.raises(SecretRefused):
        check_secret_name("evil", "common-smtp", None, None, set(), ["acme"])


def test_rule__the_callers_default_must_be_the_setting_and_nobody_elses() -> None:
    check_secret_name("bare", None, "shared", "shared", set(), [])
    with pytest.raises(SecretRefused, match="default_secret_name"):
        check_secret_name("bare", None, "acme-creds", None, set(), ["acme"])  # caller-chosen, no setting
    with pytest.raises(SecretRefused, match='integration "acme"'):
        check_secret_name("bare", None, "acme-creds", "acme-creds", set(), ["acme"])  # the setting names acme's
    check_secret_name("bare", None, "acme-creds", "acme-creds", {"acme-creds"}, ["acme"])  # unless shared


# -- against the database, as the daemon's role
@pytest.fixture
def seeded(conn: psycopg.Connection, db_url: str, admin_url: str) -> dict[str, str]:
    ensure_daemon_role(admin_url)
    value = plant("acme-secret")
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, secret_name) VALUES "
                 "('acme', 'noop', 'acme-creds'), ('bare', 'noop', NULL), ('evil', 'noop', 'acme-creds')")
    conn.execute("SELECT vault.create_secret(%s, 'acme-creds')", [value])
    return {"value": value, "url": db_url.replace("://", f"://{DAEMON_ROLE}@", 1) if "@" not in db_url
            else db_url}


def _get(url: str, integration_id: str, default: str | None = None) -> Any:
    async def connect() -> psycopg.AsyncConnection[Any]:
        c = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await c.execute(f"SET ROLE {DAEMON_ROLE}")
        return c

    async def go() -> Any:
        return (await VaultCredentials(connect, ttl=0).get(integration_id, default)).reveal()
    return asyncio.run(go())


def test_vault__another_integrations_secret_name_is_refused(seeded: dict[str, str], db_url: str) -> None:
    with pytest.raises(SecretRefused) as info:
        _get(db_url, "evil")
    assert seeded["value"] not in str(info.value)
    assert _get(db_url, "acme") == seeded["value"]  # the owner still reads it


def test_vault__the_callers_default_does_not_hand_out_another_integrations_secret(
        seeded: dict[str, str], conn: psycopg.Connection, db_url: str) -> None:
    with pytest.raises(SecretRefused):
        _get(db_url, "bare", "acme-creds")  # VAULT_SECRET_NAME pointing at acme's secret
    conn.execute("INSERT INTO dispatch.settings (key, value) VALUES ('default_secret_name', 'acme-creds')")
    with pytest.raises(SecretRefused):
        _get(db_url, "bare", "acme-creds")  # even as the setting: it is acme's
    with contextlib.suppress(Exception):
        conn.execute("INSERT INTO dispatch.settings (key, value) VALUES ('shared_secret_names', 'acme-creds')")
    assert _get(db_url, "bare", "acme-creds") == seeded["value"]  # listed as shared: the operator's choice
