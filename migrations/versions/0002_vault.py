"""Supabase Vault (or a stand-in with the same SQL interface), roles, and the secret accessor.

Where the vault comes from, in order:

1. ``supabase_vault`` is installed, or a ``vault`` schema exists (a Supabase project): use it,
   touch nothing.
2. ``supabase_vault`` is available (built and installed on this server): create it and apply
   Supabase's after-create grants.
3. Otherwise a stand-in in schema ``vault`` with the 0.3.x interface (table, view, functions,
   defaults, grants, error codes; ``reference/supabase-platform.md`` §1.2/§1.7) and real
   encryption with pgcrypto: AES-256-CBC under a 16-byte random nonce, then HMAC-SHA-256 over
   (associated data = ``id::text``, nonce, ciphertext). The 32-byte root key lives in the file
   ``vault_root.key`` in the data directory, written once by this migration and read only by a
   SECURITY DEFINER function nobody else may execute. ``docs/security.md`` has the tradeoffs.

Roles: Supabase's ``anon``, ``authenticated`` and ``service_role`` where missing, and
``dispatch_worker``, the daemon's least-privilege role. ``dispatch.integration_secret()`` is the
only way that role reaches a secret.

Revision ID: 0002
Revises: 0001
"""

import contextlib
import os

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The marker that tells the downgrade the stand-in (and, per flag, pgcrypto) is ours to drop.
STAND_IN = "integration-dispatch: Supabase Vault stand-in (pgcrypto), created by migration 0002"
ROLE_MARK = "created by integration-dispatch migration 0002"
SUPABASE_ROLES = ("anon", "authenticated", "service_role")
WORKER = "dispatch_worker"


def _scalar(sql: str, **params: object) -> object:
    return op.get_bind().execute(sa.text(sql), params).scalar()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _role_exists(name: str) -> bool:
    return bool(_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :n)", n=name))


# ------------------------------------------------------------------------------------ roles
def _create_roles() -> None:
    # Roles are per cluster: another database may have made them already, even concurrently.
    op.execute(rf"""
DO $$
DECLARE
    r text;
    v_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role', '{WORKER}'] LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = r);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
            IF r = 'service_role' AND v_super THEN
                ALTER ROLE service_role BYPASSRLS;   -- as on Supabase
            END IF;
            EXECUTE format('COMMENT ON ROLE %I IS %L', r, '{ROLE_MARK}');
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role % is missing and % may not create it; skipped', r, current_user;
        END;
    END LOOP;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WORKER}') THEN
        RAISE EXCEPTION 'role {WORKER} is missing and % may not create roles', current_user
            USING HINT = 'have an administrator run: CREATE ROLE {WORKER} NOLOGIN NOINHERIT';
    END IF;
END $$;
""")


# ------------------------------------------------------------------------------------ vault
def _vault_source() -> str:
    if _scalar("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'supabase_vault')"):
        return "existing"
    if _scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'vault')"):
        return "existing"
    if _scalar("SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'supabase_vault')"):
        op.execute("""
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS supabase_vault;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'supabase_vault is available but could not be created (%); using the stand-in', SQLERRM;
END $$""")
        if _scalar("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'supabase_vault')"):
            return "extension"
    return "stand-in"


def _supabase_grants() -> None:
    """Supabase's after-create grants (supabase/postgres .../supabase_vault/after-create.sql)."""
    if _role_exists("postgres"):
        op.execute("""
GRANT USAGE ON SCHEMA vault TO postgres WITH GRANT OPTION;
GRANT SELECT, DELETE ON vault.secrets, vault.decrypted_secrets TO postgres WITH GRANT OPTION;
GRANT EXECUTE ON FUNCTION vault.create_secret, vault.update_secret, vault._crypto_aead_det_decrypt
    TO postgres WITH GRANT OPTION""")
    if _role_exists("service_role"):
        op.execute("""
GRANT USAGE ON SCHEMA vault TO service_role;
GRANT SELECT, DELETE ON vault.secrets, vault.decrypted_secrets TO service_role;
GRANT EXECUTE ON FUNCTION vault.create_secret, vault.update_secret, vault._crypto_aead_det_decrypt
    TO service_role""")


def _pgcrypto_schema() -> tuple[str, bool, bool]:
    """Where pgcrypto lives (installing it into ``extensions`` when absent), and what we made."""
    found = _scalar("SELECT nspname FROM pg_namespace WHERE oid = "
                    "(SELECT extnamespace FROM pg_extension WHERE extname = 'pgcrypto')")
    if found:
        return str(found), False, False
    made_schema = not _scalar("SELECT to_regnamespace('extensions') IS NOT NULL")
    op.execute("CREATE SCHEMA IF NOT EXISTS extensions; "
               "CREATE EXTENSION pgcrypto WITH SCHEMA extensions")
    return "extensions", True, made_schema


def _require_file_access() -> None:
    ok = _scalar("SELECT pg_has_role(current_user, 'pg_write_server_files', 'USAGE') "
                 "AND pg_has_role(current_user, 'pg_read_server_files', 'USAGE') "
                 "AND pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')")
    if not ok:
        raise RuntimeError(
            "the Supabase Vault stand-in keeps its root key in a file in the data directory, so "
            "migration 0002 must run as a superuser (or a member of pg_write_server_files, "
            "pg_read_server_files and pg_read_all_settings) where supabase_vault is not installed; "
            "alternatively install supabase_vault (see docs/security.md)")


def _root_key_file(ext: str) -> None:
    # COPY needs an absolute path; umask 0077 of the server makes the file 0600. Never
    # overwritten: a new key would make every stored secret undecryptable.
    op.execute(f"""
DO $$
DECLARE
    v_path text := current_setting('data_directory') || '/vault_root.key';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('integration-dispatch vault root key'));
    IF (pg_stat_file(v_path, true)).size IS NULL THEN
        EXECUTE format('COPY (SELECT encode(%I.gen_random_bytes(32), ''hex'')) TO %L', '{ext}', v_path);
    END IF;
END $$""")
    # COPY creates files 0644 (inside the 0700 data directory). Where this process can reach
    # the file (same host, as postgres or root), narrow it to 0600; elsewhere the directory's
    # mode is the protection (docs/security.md).
    path = os.path.join(str(_scalar("SELECT current_setting('data_directory')")), "vault_root.key")
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


_STAND_IN_SQL = r"""
CREATE SCHEMA vault;

-- The root key: 64 hex characters in <data directory>/vault_root.key. Only this function reads
-- it, and only its owner (the superuser that ran the migration) may execute it.
CREATE FUNCTION vault._root_key() RETURNS bytea
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_hex text := pg_catalog.btrim(pg_catalog.pg_read_file('vault_root.key', 0, 256, true), E' \t\r\n');
BEGIN
    IF v_hex IS NULL OR v_hex !~ '^[0-9a-fA-F]{64}$' THEN
        RAISE EXCEPTION 'vault root key file "vault_root.key" is missing or malformed in the data directory'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'restore it from backup; without it no stored secret can be decrypted';
    END IF;
    RETURN pg_catalog.decode(v_hex, 'hex');
END $$;

-- Same names and signatures as the C helpers of supabase_vault 0.3.x, so grant scripts written
-- for Supabase apply unchanged. key_id is ignored as there; context separates the derived keys.
CREATE FUNCTION vault._crypto_aead_det_encrypt(message bytea, additional bytea, key_id bigint,
                                               context bytea = 'pgsodium', nonce bytea = NULL)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_root bytea := vault._root_key();
    v_ct bytea;
BEGIN
    IF message IS NULL THEN
        RETURN NULL;
    END IF;
    IF nonce IS NULL OR pg_catalog.length(nonce) <> 16 THEN
        RAISE EXCEPTION 'vault._crypto_aead_det_encrypt: the nonce must be 16 bytes' USING ERRCODE = 'data_exception';
    END IF;
    v_ct := @EXT@.encrypt_iv(message, @EXT@.hmac('enc:'::bytea || context, v_root, 'sha256'), nonce, 'aes-cbc/pad:pkcs');
    -- Encrypt-then-MAC; the length prefix keeps (additional, nonce, ciphertext) unambiguous.
    RETURN v_ct || @EXT@.hmac(pg_catalog.int4send(pg_catalog.length(coalesce(additional, ''::bytea)))
                              || coalesce(additional, ''::bytea) || nonce || v_ct,
                              @EXT@.hmac('mac:'::bytea || context, v_root, 'sha256'), 'sha256');
END $$;

CREATE FUNCTION vault._crypto_aead_det_decrypt(message bytea, additional bytea, key_id bigint,
                                               context bytea = 'pgsodium', nonce bytea = NULL)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_root bytea;
    v_len integer := pg_catalog.length(message);
    v_ct bytea;
BEGIN
    IF message IS NULL THEN
        RETURN NULL;
    END IF;
    IF nonce IS NULL OR pg_catalog.length(nonce) <> 16 OR v_len < 48 OR (v_len - 32) % 16 <> 0 THEN
        RAISE EXCEPTION 'vault._crypto_aead_det_decrypt: invalid ciphertext' USING ERRCODE = 'data_exception';
    END IF;
    v_root := vault._root_key();
    v_ct := pg_catalog.substr(message, 1, v_len - 32);
    IF @EXT@.hmac(pg_catalog.int4send(pg_catalog.length(coalesce(additional, ''::bytea)))
                  || coalesce(additional, ''::bytea) || nonce || v_ct,
                  @EXT@.hmac('mac:'::bytea || context, v_root, 'sha256'), 'sha256')
       IS DISTINCT FROM pg_catalog.substr(message, v_len - 31) THEN
        RAISE EXCEPTION 'vault._crypto_aead_det_decrypt: invalid ciphertext' USING ERRCODE = 'data_exception';
    END IF;
    RETURN @EXT@.decrypt_iv(v_ct, @EXT@.hmac('enc:'::bytea || context, v_root, 'sha256'), nonce, 'aes-cbc/pad:pkcs');
END $$;

-- VOLATILE, unlike upstream's IMMUTABLE C function: a random value must never be constant-folded.
CREATE FUNCTION vault._crypto_aead_det_noncegen() RETURNS bytea
LANGUAGE sql VOLATILE SET search_path = '' AS $$ SELECT @EXT@.gen_random_bytes(16) $$;

CREATE TABLE vault.secrets (
  id uuid     PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text,
  description text NOT NULL default '',
  secret      text NOT NULL,
  key_id      uuid,
  nonce       bytea DEFAULT vault._crypto_aead_det_noncegen(),
  created_at  timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at  timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);
COMMENT ON TABLE vault.secrets IS 'Table with encrypted `secret` column for storing sensitive information on disk.';
CREATE UNIQUE INDEX ON vault.secrets USING btree (name) WHERE name IS NOT NULL;

-- A plain view, as upstream: readers need SELECT here and EXECUTE on the decrypt helper.
CREATE VIEW vault.decrypted_secrets AS
SELECT s.id,
  s.name,
  s.description,
  s.secret,
  convert_from(
    vault._crypto_aead_det_decrypt(
      message := decode(s.secret, 'base64'::text),
      additional := convert_to(s.id::text, 'utf8'),
      key_id := 0,
      context := 'pgsodium'::bytea,
      nonce := s.nonce
    ),
    'utf8'::name
  ) AS decrypted_secret,
  s.key_id,
  s.nonce,
  s.created_at,
  s.updated_at
FROM vault.secrets s;

-- Unlike upstream (INSERT the plaintext, then UPDATE it to ciphertext), the plaintext never
-- reaches the table, its WAL, a dead tuple or a constraint error's "Failing row contains".
CREATE FUNCTION vault.create_secret(
  new_secret text,
  new_name text = NULL,
  new_description text = '',
  -- unused
  new_key_id uuid = NULL
)
RETURNS uuid
SECURITY DEFINER
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  v_id uuid := pg_catalog.gen_random_uuid();
  v_nonce bytea := vault._crypto_aead_det_noncegen();
BEGIN
  INSERT INTO vault.secrets (id, secret, name, description, nonce)
  VALUES (
    v_id,
    pg_catalog.encode(vault._crypto_aead_det_encrypt(
      message := pg_catalog.convert_to(new_secret, 'utf8'),
      additional := pg_catalog.convert_to(v_id::text, 'utf8'),
      key_id := 0,
      context := 'pgsodium'::bytea,
      nonce := v_nonce
    ), 'base64'),
    new_name,
    new_description,
    v_nonce
  );
  RETURN v_id;
END
$$;

-- A new secret gets a new nonce (CBC is not nonce-misuse resistant; upstream's SIV keeps it).
CREATE FUNCTION vault.update_secret(
  secret_id uuid,
  new_secret text = NULL,
  new_name text = NULL,
  new_description text = NULL,
  -- unused
  new_key_id uuid = NULL
)
RETURNS void
SECURITY DEFINER
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
  -- As upstream: a row whose ciphertext no longer verifies errors here (only DELETE helps).
  v_current text := (SELECT d.decrypted_secret FROM vault.decrypted_secrets d WHERE d.id = secret_id);
  v_nonce bytea := vault._crypto_aead_det_noncegen();
BEGIN
  UPDATE vault.secrets s
  SET
    secret = CASE WHEN new_secret IS NULL THEN s.secret
                  ELSE pg_catalog.encode(vault._crypto_aead_det_encrypt(
                    message := pg_catalog.convert_to(new_secret, 'utf8'),
                    additional := pg_catalog.convert_to(s.id::text, 'utf8'),
                    key_id := 0,
                    context := 'pgsodium'::bytea,
                    nonce := v_nonce
                  ), 'base64') END,
    nonce = CASE WHEN new_secret IS NULL THEN s.nonce ELSE v_nonce END,
    name = coalesce(new_name, s.name),
    description = coalesce(new_description, s.description),
    updated_at = pg_catalog.now()
  WHERE s.id = secret_id;
END
$$;

REVOKE ALL ON FUNCTION
  vault._root_key,
  vault._crypto_aead_det_encrypt,
  vault._crypto_aead_det_decrypt,
  vault._crypto_aead_det_noncegen,
  vault.create_secret,
  vault.update_secret
FROM PUBLIC;
"""


def _create_stand_in() -> None:
    _require_file_access()
    ext, made_pgcrypto, made_extensions = _pgcrypto_schema()
    _root_key_file(ext)
    op.execute(_STAND_IN_SQL.replace("@EXT@", _ident(ext)))
    marker = f"{STAND_IN}; pgcrypto_created={'yes' if made_pgcrypto else 'no'}; " \
             f"extensions_schema_created={'yes' if made_extensions else 'no'}"
    op.execute(f"COMMENT ON SCHEMA vault IS '{marker}'")


# ---------------------------------------------------------------------- the daemon's grants
_WORKER_GRANTS = f"""
GRANT USAGE ON SCHEMA dispatch TO {WORKER};
-- Everything in dispatch is the daemon's to read; future tables too (the role running the
-- migrations creates them). Writes are listed one by one.
GRANT SELECT ON ALL TABLES IN SCHEMA dispatch TO {WORKER};
ALTER DEFAULT PRIVILEGES IN SCHEMA dispatch GRANT SELECT ON TABLES TO {WORKER};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA dispatch TO {WORKER};
ALTER DEFAULT PRIVILEGES IN SCHEMA dispatch GRANT USAGE ON SEQUENCES TO {WORKER};
-- Claims, completions, retries; no DELETE: history leaves through retention, run by the owner.
GRANT INSERT, UPDATE ON dispatch.jobs TO {WORKER};
-- The jobs triggers and dispatch.enqueue() run as the caller and write the ledger and alerts.
GRANT INSERT, UPDATE ON dispatch.idempotency_keys, dispatch.alerts TO {WORKER};
GRANT INSERT, UPDATE ON dispatch.workers, dispatch.tick_runs TO {WORKER};
-- Health reports only: not the adapter, config, secret_name (that would redirect the accessor),
-- enabled, concurrency or health_mode.
GRANT UPDATE (health_status, circuit, health_checked_at, health_next_probe_at, health_failures,
              health_latency_ms, health_error) ON dispatch.integrations TO {WORKER};
-- SECURITY INVOKER functions give nothing beyond the table grants above, so all of them are
-- granted; SECURITY DEFINER ones are granted one by one, after review.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
             WHERE p.pronamespace = 'dispatch'::regnamespace AND p.prokind IN ('f', 'p') AND NOT p.prosecdef
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {WORKER}', f);
    END LOOP;
END $$;
"""

_ACCESSOR = r"""
CREATE FUNCTION dispatch.integration_secret(p_integration_id text, p_default_name text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_name  text;
    v_value text;
BEGIN
    SELECT i.secret_name INTO v_name FROM dispatch.integrations i WHERE i.id = p_integration_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown integration "%"', p_integration_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'add it first: `integration-dispatch integrations add` or INSERT INTO dispatch.integrations';
    END IF;
    v_name := coalesce(nullif(v_name, ''), nullif(p_default_name, ''));
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'integration "%" has no secret name', p_integration_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'set dispatch.integrations.secret_name, or VAULT_SECRET_NAME and the default_secret_name setting';
    END IF;
    -- Only names the operator has pointed at: an integration's secret_name, or the setting
    -- default_secret_name. A caller cannot name an arbitrary vault secret.
    IF NOT EXISTS (SELECT FROM dispatch.integrations i WHERE i.secret_name = v_name)
       AND v_name IS DISTINCT FROM dispatch.setting('default_secret_name', NULL) THEN
        RAISE EXCEPTION 'secret "%" is neither an integration''s secret_name nor the default_secret_name setting', v_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'set dispatch.integrations.secret_name, or INSERT INTO dispatch.settings (key, value) VALUES (''default_secret_name'', <name>)';
    END IF;
    SELECT s.decrypted_secret INTO v_value FROM vault.decrypted_secrets s WHERE s.name = v_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'secret "%" for integration "%" is not in the vault', v_name, p_integration_id
            USING ERRCODE = 'no_data_found', HINT = 'add it with integration-dispatch secrets set ' || v_name;
    END IF;
    RETURN v_value;
END $$;
COMMENT ON FUNCTION dispatch.integration_secret(text, text) IS
    'the decrypted vault secret of an integration (its secret_name, else p_default_name); only names some integration or the default_secret_name setting references';
REVOKE ALL ON FUNCTION dispatch.integration_secret(text, text) FROM PUBLIC;
"""


def _accessor() -> None:
    op.execute(_ACCESSOR)
    op.execute(f"GRANT EXECUTE ON FUNCTION dispatch.integration_secret(text, text) TO {WORKER}")
    for role in SUPABASE_ROLES:
        if not _role_exists(role):
            continue
        fn = "FUNCTION dispatch.integration_secret(text, text)"
        if role == "service_role":
            op.execute(f"GRANT USAGE ON SCHEMA dispatch TO {role}; GRANT EXECUTE ON {fn} TO {role}")
        else:
            op.execute(f"REVOKE ALL ON {fn} FROM {role}")


def upgrade() -> None:
    _create_roles()
    source = _vault_source()
    if source == "stand-in":
        _create_stand_in()
    if source in ("stand-in", "extension"):
        _supabase_grants()
    op.execute(_WORKER_GRANTS)
    _accessor()


# -------------------------------------------------------------------------------- downgrade
def downgrade() -> None:
    op.execute(f"""
DROP FUNCTION IF EXISTS dispatch.integration_secret(text, text);
ALTER DEFAULT PRIVILEGES IN SCHEMA dispatch REVOKE SELECT ON TABLES FROM {WORKER};
ALTER DEFAULT PRIVILEGES IN SCHEMA dispatch REVOKE USAGE ON SEQUENCES FROM {WORKER};
REVOKE ALL ON ALL TABLES IN SCHEMA dispatch FROM {WORKER};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA dispatch FROM {WORKER};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dispatch FROM {WORKER};
REVOKE ALL ON SCHEMA dispatch FROM {WORKER};
""")
    if _role_exists("service_role"):
        op.execute("REVOKE USAGE ON SCHEMA dispatch FROM service_role")
    # The real supabase_vault is never dropped: it holds the operator's secrets.
    comment = _scalar("SELECT obj_description('vault'::regnamespace, 'pg_namespace') "
                      "WHERE EXISTS (SELECT FROM pg_namespace WHERE nspname = 'vault')")
    if isinstance(comment, str) and comment.startswith(STAND_IN):
        op.execute("DROP SCHEMA vault CASCADE")
        if "pgcrypto_created=yes" in comment:
            op.execute("""
DO $$
BEGIN
    DROP EXTENSION IF EXISTS pgcrypto;
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'pgcrypto kept: other objects use it';
END $$""")
        if "extensions_schema_created=yes" in comment:
            op.execute("""
DO $$
BEGIN
    DROP SCHEMA IF EXISTS extensions;
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'schema extensions kept: it is not empty';
END $$""")
    # Roles are per cluster: drop the ones this migration made, unless another database of
    # the cluster still grants them something.
    op.execute(rf"""
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['{WORKER}', 'service_role', 'authenticated', 'anon'] LOOP
        CONTINUE WHEN NOT EXISTS (
            SELECT FROM pg_roles WHERE rolname = r
               AND shobj_description(oid, 'pg_authid') LIKE '{ROLE_MARK}%');
        BEGIN
            EXECUTE format('DROP ROLE %I', r);
        EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
            RAISE NOTICE 'role % kept: %', r, SQLERRM;
        END;
    END LOOP;
END $$;
""")
