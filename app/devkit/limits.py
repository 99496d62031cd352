"""Did every integration stay within its max_concurrency? One sweep line over the recorded
start and finish times, for the load runs, the benchmarks and the tests alike.

Per integration: +1 at each ``started_at``, -1 at each ``finished_at`` (finishes first on ties, so
back-to-back jobs do not count as overlapping; a job still running never finishes); the running
sum is the concurrency. A finish is stamped before its commit, and a claim can count the freed
slot only after that commit and stamps its start later still, so a limit that held is never
reported as broken.
"""

from __future__ import annotations

from typing import Any

import psycopg

SWEEP_SQL = """
WITH ev AS (
    SELECT integration_id, started_at AS t, 1 AS d FROM dispatch.jobs
     WHERE integration_id LIKE %(pattern)s AND started_at IS NOT NULL
    UNION ALL
    SELECT integration_id, finished_at, -1 FROM dispatch.jobs
     WHERE integration_id LIKE %(pattern)s AND started_at IS NOT NULL
), sweep AS (
    SELECT integration_id, sum(d) OVER (PARTITION BY integration_id ORDER BY t, d
                                        ROWS UNBOUNDED PRECEDING) AS running
    FROM ev
)
SELECT s.integration_id, max(s.running)::int AS observed, i.max_concurrency AS limit_
FROM sweep s JOIN dispatch.integrations i ON i.id = s.integration_id
GROUP BY s.integration_id, i.max_concurrency ORDER BY s.integration_id
"""


def concurrency(conn: psycopg.Connection[Any], pattern: str = "%") -> dict[str, Any]:
    """The peak concurrency of each integration whose id is LIKE ``pattern``, against its limit:
    the integrations over it, and the highest peak seen per limit (so a check that found nothing
    can show it had something to catch)."""
    rows = conn.execute(SWEEP_SQL, {"pattern": pattern}).fetchall()
    over = [{"integration": i, "observed": o, "limit": lim} for i, o, lim in rows if o > lim]
    by_limit: dict[int, int] = {}
    for _, observed, lim in rows:
        by_limit[lim] = max(by_limit.get(lim, 0), observed)
    return {"integrations_checked": len(rows), "over_limit": over,
            "max_observed_by_limit": {str(k): v for k, v in sorted(by_limit.items())}}
