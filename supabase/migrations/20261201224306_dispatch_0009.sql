-- integration-dispatch, Alembic revision 0009: Tracing: the W3C ``traceparent`` a job was enqueued under, so its run joins the same trace.
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0009_trace.py
-- (sha256 4c0e2feeeb5760ec). Do not edit: change the Alembic migration, re-render.
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

ALTER TABLE dispatch.jobs ADD COLUMN trace_context text
;

ALTER TABLE dispatch.jobs ADD CONSTRAINT jobs_trace_context_size CHECK (length(trace_context) <= 512)
;

COMMENT ON COLUMN dispatch.jobs.trace_context IS 'W3C traceparent the job was enqueued under (POST /dispatch); its run joins that trace'
;
