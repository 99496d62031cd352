-- integration-dispatch, Alembic revision 0002: Supabase Vault (or a stand-in with the same SQL interface), roles, and the secret accessor.
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0002_vault.py
-- (sha256 acec5418de257709). Do not edit: change the Alembic migration, re-render.
-- The Supabase case of its branches: Supabase Vault installed, pg_cron in this database (postgres).

-- One tool per database: refuse a database that Alembic (`integration-dispatch db upgrade`) migrates.
DO $guard$
DECLARE
    t text;
    v text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dispatch.alembic_version', 'public.alembic_version'] LOOP
        CONTINUE WHEN to_regclass(t) IS NULL OR to_regnamespace('dispatch') IS NULL;
        EXECUTE format('SELECT max(version_num) FROM %s', t) INTO v;
        IF v ~ '^[0-9]{4}$' THEN
            RAISE EXCEPTION 'integration-dispatch: this database is migrated by Alembic (% is at %); do not also apply supabase/migrations', t, v
                USING HINT = 'use one tool per database: `integration-dispatch db upgrade` here, or supabase db push on a database Alembic never migrated';
        END IF;
    END LOOP;
END $guard$;

DO $$
DECLARE
    r text;
    v_super boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role', 'dispatch_worker'] LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = r);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
            IF r = 'service_role' AND v_super THEN
                ALTER ROLE service_role BYPASSRLS;   -- as on Supabase
            END IF;
            EXECUTE format('COMMENT ON ROLE %I IS %L', r, 'created by integration-dispatch migration 0002');
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role % is missing and % may not create it; skipped', r, current_user;
        END;
    END LOOP;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dispatch_worker') THEN
        RAISE EXCEPTION 'role dispatch_worker is missing and % may not create roles', current_user
            USING HINT = 'have an administrator run: CREATE ROLE dispatch_worker NOLOGIN NOINHERIT';
    END IF;
END $$;

GRANT USAGE ON SCHEMA dispatch TO dispatch_worker;
-- Everything in dispatch is the daemon's to read; future tables too (the role running the
-- migrations creates them). Writes are listed one by one.
GRANT SELECT ON ALL TABLES IN SCHEMA dispatch TO dispatch_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA dispatch GRANT SELECT ON TABLES TO dispatch_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA dispatch TO dispatch_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA dispatch GRANT USAGE ON SEQUENCES TO dispatch_worker;
-- Claims, completions, retries; no DELETE: history leaves through retention, run by the owner.
GRANT INSERT, UPDATE ON dispatch.jobs TO dispatch_worker;
-- The jobs triggers and dispatch.enqueue() run as the caller and write the ledger and alerts.
GRANT INSERT, UPDATE ON dispatch.idempotency_keys, dispatch.alerts TO dispatch_worker;
GRANT INSERT, UPDATE ON dispatch.workers, dispatch.tick_runs TO dispatch_worker;
-- Health reports only: not the adapter, config, secret_name (that would redirect the accessor),
-- enabled, concurrency or health_mode.
GRANT UPDATE (health_status, circuit, health_checked_at, health_next_probe_at, health_failures,
              health_latency_ms, health_error) ON dispatch.integrations TO dispatch_worker;
-- SECURITY INVOKER functions give nothing beyond the table grants above, so all of them are
-- granted; SECURITY DEFINER ones are granted one by one, after review.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
             WHERE p.pronamespace = 'dispatch'::regnamespace AND p.prokind IN ('f', 'p') AND NOT p.prosecdef
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO dispatch_worker', f);
    END LOOP;
END $$;

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

GRANT EXECUTE ON FUNCTION dispatch.integration_secret(text, text) TO dispatch_worker
;

REVOKE ALL ON FUNCTION dispatch.integration_secret(text, text) FROM anon
;

REVOKE ALL ON FUNCTION dispatch.integration_secret(text, text) FROM authenticated
;

GRANT USAGE ON SCHEMA dispatch TO service_role; GRANT EXECUTE ON FUNCTION dispatch.integration_secret(text, text) TO service_role
;
