"""Secrets at the edges: the CLI never prints a vault value; `.env` is git-ignored and
`.env.example` holds placeholders only."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
from collections import Counter

import psycopg
import pytest

from app.main import main
from tests.security.conftest import plant
from tests.support import ROOT

SECRET_KEYS = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|URL", re.IGNORECASE)
# 24+ key characters with at least one digit and one letter: a token, not a hyphenated name.
KEY_RUN = re.compile(r"(?=[\w+/-]*\d)(?=[\w+/-]*[A-Za-z])[\w+/-]{24,}")
PLACEHOLDER = re.compile(r"^$|your-|change-me|example|placeholder|<[^>]+>|127\.0\.0\.1|localhost", re.IGNORECASE)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out + err


@pytest.mark.integration
def test_cli_secrets__set_and_list_never_print_the_value(db_url: str, conn: psycopg.Connection,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    conn.execute("INSERT INTO dispatch.integrations (id, adapter, secret_name) VALUES ('acme', 'noop', 'acme-creds')")
    values = [plant("cli-first"), json.dumps({"token": plant("cli-json")})]
    output = ""
    for value in values:  # created, then updated
        monkeypatch.setattr("sys.stdin", io.StringIO(value + "\n"))
        output += _cli(capsys, "--database-url", db_url, "secrets", "set", "acme-creds")
    output += _cli(capsys, "--database-url", db_url, "secrets", "list")
    output += _cli(capsys, "--database-url", db_url, "secrets", "list", "--json")
    assert "acme-creds" in output
    assert not [v for v in values if v in output or json.loads(values[1])["token"] in output]
    stored = conn.execute("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'acme-creds'").fetchone()
    assert stored == (values[1],)


@pytest.mark.unit
def test_dotenv__is_ignored_by_git_and_not_tracked() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".env must match .gitignore"
    tracked = subprocess.run(["git", "ls-files", "--", ".env", "*.env"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout.strip() == ""


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_real(value: str) -> bool:
    if value.startswith("eyJ"):
        return True  # a JWT
    password = re.match(r"^\w+://[^:/@]+:([^@]+)@", value)
    if password:
        return not PLACEHOLDER.search(password.group(1))
    if PLACEHOLDER.search(value):
        return False
    return bool(KEY_RUN.search(value)) or (len(value) >= 16 and _entropy(value) > 4.0)


@pytest.mark.unit
def test_looks_real__tells_placeholders_from_keys() -> None:
    assert not _looks_real("your-jwt-secret-at-least-32-characters")
    assert not _looks_real("postgresql://dispatch_daemon:change-me@127.0.0.1:5432/postgres")
    assert _looks_real("postgresql://dispatch_daemon:Zq8r!kd@db.example.com:5432/postgres")
    assert _looks_real("eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.x")
    assert _looks_real("c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3OA")


@pytest.mark.unit
def test_env_example__holds_placeholders_only() -> None:
    pairs = [line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#")]
    sensitive = {k.strip(): v.strip().strip("'\"") for k, v in pairs
                 if SECRET_KEYS.search(k) and not k.strip().endswith("_NAME")}  # names are not secrets
    assert {"SUPABASE_JWT_SECRET", "SUPABASE_SERVICE_ROLE_KEY", "DATABASE_URL"} <= sensitive.keys()
    assert {k: v for k, v in sensitive.items() if _looks_real(v)} == {}
