-- integration-dispatch, Alembic revision 0004: pg_cron drives time: `dispatch-tick` and `dispatch-maintain` every minute, history cleanup daily.
-- Rendered by scripts/render-supabase-migrations from migrations/versions/0004_pg_cron.py
-- (sha256 fd50cc8e741ea6a5). Do not edit: change the Alembic migration, re-render.
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

-- pg_cron drives time. As in Alembic, a database where pg_cron cannot be created or used still
-- migrates: a WARNING says so, and the daemon's watchdog runs the tick meanwhile. cron.schedule(name,
-- ...) upserts by name, so running this block again re-registers the jobs.
DO $cron$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;
        PERFORM cron.schedule('dispatch-tick', '* * * * *', 'SELECT dispatch.tick()');
        PERFORM cron.schedule('dispatch-maintain', '* * * * *', 'SELECT dispatch.maintain()');
        PERFORM cron.schedule('dispatch-cleanup-cron-history', '17 3 * * *', 'DELETE FROM cron.job_run_details WHERE end_time < now() - interval ''7 days''');
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'integration-dispatch: pg_cron jobs not registered (%); the daemon''s watchdog runs '
            'the tick meanwhile', SQLERRM
            USING HINT = 'on Supabase enable pg_cron (Database > Extensions) and push again; elsewhere '
                         'preload pg_cron and use the database named by cron.database_name';
    END;
END $cron$;
