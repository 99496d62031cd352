"""The Supabase Vault 0.3.x contract, through its public SQL interface only.

Nothing here knows whether ``vault`` is the real extension or our stand-in: these tests are
meant to pass unchanged against a database with ``supabase_vault`` installed (connected as a
superuser, as the extension's own tests are), and they do against the stand-in.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

pytestmark = pytest.mark.integration

VIEW_COLUMNS = ["id", "name", "description", "secret", "decrypted_secret", "key_id", "nonce",
                "created_at", "updated_at"]


def _create(conn: psycopg.Connection, secret: str | None, name: str | None = None,
            description: str = "") -> uuid.UUID:
    row = conn.execute("SELECT vault.create_secret(%s, %s, %s)", [secret, name, description]).fetchone()
    assert row is not None
    return row[0]


def _read(conn: psycopg.Connection, secret_id: uuid.UUID) -> tuple[str, str, str]:
    row = conn.execute("SELECT name, description, decrypted_secret FROM vault.decrypted_secrets WHERE id = %s",
                       [secret_id]).fetchone()
    assert row is not None
    return row


def _ensure_role(conn: psycopg.Connection, name: str) -> str:
    with contextlib.suppress(errors.DuplicateObject):
        conn.execute(f'CREATE ROLE "{name}" NOLOGIN')
    return name


@pytest.fixture
def as_role(db_url: str) -> Iterator[psycopg.Connection]:
    """A second connection, for SET ROLE."""
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def test_secrets_table__has_the_0_3_columns(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'vault' AND table_name = 'secrets' ORDER BY ordinal_position").fetchall()
    assert rows == [("id", "uuid", "NO"), ("name", "text", "YES"), ("description", "text", "NO"),
                    ("secret", "text", "NO"), ("key_id", "uuid", "YES"), ("nonce", "bytea", "YES"),
                    ("created_at", "timestamp with time zone", "NO"),
                    ("updated_at", "timestamp with time zone", "NO")]


def test_decrypted_secrets__has_the_0_3_columns_in_order(conn: psycopg.Connection) -> None:
    cur = conn.execute("SELECT * FROM vault.decrypted_secrets LIMIT 0")
    assert [c.name for c in cur.description or []] == VIEW_COLUMNS


def test_functions__have_the_0_3_signatures(conn: psycopg.Connection) -> None:
    for signature in ("vault.create_secret(text, text, text, uuid)",
                      "vault.update_secret(uuid, text, text, text, uuid)",
                      "vault._crypto_aead_det_decrypt(bytea, bytea, bigint, bytea, bytea)"):
        assert conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", [signature]).fetchone() == (True,), signature


def test_create_secret__round_trips_through_the_view(conn: psycopg.Connection) -> None:
    secret_id = _create(conn, '{"token": "s3cr3t-ü"}', "acme", "Acme API token")
    assert isinstance(secret_id, uuid.UUID)
    assert _read(conn, secret_id) == ("acme", "Acme API token", '{"token": "s3cr3t-ü"}')
    stored = conn.execute("SELECT secret, key_id FROM vault.secrets WHERE id = %s", [secret_id]).fetchone()
    assert stored is not None
    assert "s3cr3t" not in stored[0]
    base64.b64decode(stored[0].replace("\n", ""), validate=True)  # base64 of the ciphertext


def test_create_secret__defaults_name_and_description(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT vault.create_secret('v')").fetchone()
    assert row is not None
    assert _read(conn, row[0]) == (None, "", "v")


def test_create_secret__accepts_an_empty_string(conn: psycopg.Connection) -> None:
    assert _read(conn, _create(conn, "", "empty"))[2] == ""


def test_create_secret__duplicate_name_is_a_unique_violation(conn: psycopg.Connection) -> None:
    _create(conn, "one", "dup")
    with pytest.raises(errors.UniqueViolation):
        _create(conn, "two", "dup")
    _create(conn, "unnamed-1")
    _create(conn, "unnamed-2")  # NULL names do not collide


def test_create_secret__null_secret_is_a_not_null_violation(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.NotNullViolation):
        _create(conn, None, "nothing")


def test_create_secret__explicit_null_description_is_a_not_null_violation(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.NotNullViolation):
        conn.execute("SELECT vault.create_secret(%s, %s, new_description => NULL)", ["v", "n"])


def test_update_secret__changes_only_what_is_given(conn: psycopg.Connection) -> None:
    secret_id = _create(conn, "first", "name-1", "desc-1")
    conn.execute("SELECT vault.update_secret(%s, new_description => %s)", [secret_id, "desc-2"])
    assert _read(conn, secret_id) == ("name-1", "desc-2", "first")
    conn.execute("SELECT vault.update_secret(%s, new_secret => %s)", [secret_id, "second"])
    assert _read(conn, secret_id) == ("name-1", "desc-2", "second")
    conn.execute("SELECT vault.update_secret(%s, new_name => %s)", [secret_id, "name-2"])
    assert _read(conn, secret_id) == ("name-2", "desc-2", "second")
    times = conn.execute("SELECT created_at <= updated_at FROM vault.secrets WHERE id = %s",
                         [secret_id]).fetchone()
    assert times == (True,)


def test_update_secret__unknown_id_is_a_silent_no_op(conn: psycopg.Connection) -> None:
    conn.execute("SELECT vault.update_secret(%s, new_secret => 'x')", [uuid.uuid4()])
    assert conn.execute("SELECT count(*) FROM vault.secrets").fetchone() == (0,)


def test_view__ciphertext_copied_to_another_row_does_not_decrypt(conn: psycopg.Connection) -> None:
    source = _create(conn, "the real one", "source")
    target = _create(conn, "decoy", "target")
    conn.execute("UPDATE vault.secrets t SET secret = s.secret, nonce = s.nonce FROM vault.secrets s "
                 "WHERE s.id = %s AND t.id = %s", [source, target])
    with pytest.raises(errors.DataException, match="invalid ciphertext"):
        _read(conn, target)
    assert _read(conn, source)[2] == "the real one"


def test_view__tampered_ciphertext_does_not_decrypt(conn: psycopg.Connection) -> None:
    secret_id = _create(conn, "value", "tampered")
    raw = bytearray(base64.b64decode(conn.execute("SELECT secret FROM vault.secrets WHERE id = %s",
                                                  [secret_id]).fetchone()[0]))  # type: ignore[index]
    raw[0] ^= 1
    conn.execute("UPDATE vault.secrets SET secret = %s WHERE id = %s",
                 [base64.b64encode(bytes(raw)).decode(), secret_id])
    with pytest.raises(errors.DataException, match="invalid ciphertext"):
        _read(conn, secret_id)


def test_view__needs_execute_on_the_decrypt_helper(conn: psycopg.Connection,
                                                   as_role: psycopg.Connection) -> None:
    _create(conn, "hidden", "probe")
    probe = _ensure_role(conn, "vault_contract_probe")
    conn.execute(f"GRANT USAGE ON SCHEMA vault TO {probe}")
    conn.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {probe}")
    as_role.execute(f"SET ROLE {probe}")
    with pytest.raises(errors.InsufficientPrivilege):
        as_role.execute("SELECT decrypted_secret FROM vault.decrypted_secrets")
    # Supabase's grant script, unchanged, is what makes it readable.
    conn.execute(f"GRANT EXECUTE ON FUNCTION vault._crypto_aead_det_decrypt TO {probe}")
    assert as_role.execute("SELECT decrypted_secret FROM vault.decrypted_secrets").fetchall() == [("hidden",)]


def test_service_role__reads_and_manages_secrets(conn: psycopg.Connection, as_role: psycopg.Connection) -> None:
    _create(conn, "for service", "svc")
    as_role.execute("SET ROLE service_role")
    assert as_role.execute("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'svc'"
                           ).fetchone() == ("for service",)
    row = as_role.execute("SELECT vault.create_secret('made by service', 'svc-2')").fetchone()
    assert row is not None
    as_role.execute("SELECT vault.update_secret(%s, new_secret => 'changed')", [row[0]])
    as_role.execute("DELETE FROM vault.secrets WHERE name = 'svc'")
    assert as_role.execute("SELECT name, decrypted_secret FROM vault.decrypted_secrets").fetchall() == [
        ("svc-2", "changed")]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles__get_nothing(conn: psycopg.Connection, as_role: psycopg.Connection, role: str) -> None:
    _create(conn, "not for you", "api")
    as_role.execute(f"SET ROLE {role}")
    for statement in ("SELECT decrypted_secret FROM vault.decrypted_secrets",
                      "SELECT secret FROM vault.secrets",
                      "SELECT vault.create_secret('x', 'y')"):
        with pytest.raises(errors.InsufficientPrivilege):
            as_role.execute(statement)


def test_functions__are_not_executable_by_public(conn: psycopg.Connection, as_role: psycopg.Connection) -> None:
    probe = _ensure_role(conn, "vault_contract_nobody")
    conn.execute(f"GRANT USAGE ON SCHEMA vault TO {probe}")
    as_role.execute(f"SET ROLE {probe}")
    for statement in ("SELECT vault.create_secret('x')",
                      "SELECT vault.update_secret(gen_random_uuid(), 'x')",
                      "SELECT vault._crypto_aead_det_decrypt('\\x00', '\\x00', 0)"):
        with pytest.raises(errors.InsufficientPrivilege):
            as_role.execute(statement)


def test_direct_insert__fails_for_non_superusers(conn: psycopg.Connection, as_role: psycopg.Connection) -> None:
    as_role.execute("SET ROLE service_role")
    with pytest.raises(errors.InsufficientPrivilege):
        as_role.execute("INSERT INTO vault.secrets (secret, name) VALUES ('plain', 'direct')")
