"""Tracing: the W3C ``traceparent`` a job was enqueued under, so its run joins the same trace.

``POST /dispatch`` writes it (the request's ``traceparent``, or its own enqueue span's when
tracing is on) with a separate UPDATE in the enqueue's transaction; ``dispatch.enqueue_job``
is unchanged. The daemon reads it (one query per job) only when tracing is on.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE dispatch.jobs ADD COLUMN trace_context text")
    op.execute("ALTER TABLE dispatch.jobs ADD CONSTRAINT jobs_trace_context_size CHECK (length(trace_context) <= 512)")
    op.execute("COMMENT ON COLUMN dispatch.jobs.trace_context IS "
               "'W3C traceparent the job was enqueued under (POST /dispatch); its run joins that trace'")


def downgrade() -> None:
    op.execute("ALTER TABLE dispatch.jobs DROP COLUMN trace_context")
