"""Every function and trigger of the dispatch schema runs with a fixed search_path.

pg_cron runs the tick and the maintenance duty as the role that scheduled them (often a
superuser); a SECURITY INVOKER function that resolves a name through the caller's
search_path could be handed a function or table that a role with CREATE on ``public``
planted there (the CVE-2018-1058 class). With ``search_path = pg_catalog, dispatch, pg_temp``
(``pg_temp`` last, so temporary objects never shadow either) no unqualified name can be
redirected. SECURITY DEFINER functions already set their own.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_EACH = """DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
             WHERE p.pronamespace = 'dispatch'::regnamespace AND p.prokind = 'f' AND NOT p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s {action}', f);
    END LOOP;
END $$"""


def upgrade() -> None:
    op.execute(_EACH.format(action="SET search_path = pg_catalog, dispatch, pg_temp"))


def downgrade() -> None:
    op.execute(_EACH.format(action="RESET search_path"))
