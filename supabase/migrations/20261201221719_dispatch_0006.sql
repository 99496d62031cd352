-- integration-dispatch, Alembic revision 0006: Every function and trigger of the dispatch schema runs with a fixed search_path.
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0006_search_path.py
-- (sha256 9ea7e73d7f84b0ee). Do not edit: change the Alembic migration, re-render.
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
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
             WHERE p.pronamespace = 'dispatch'::regnamespace AND p.prokind = 'f' AND NOT p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, dispatch, pg_temp', f);
    END LOOP;
END $$
;
