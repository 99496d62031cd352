"""Connection pools and the retry loop every daemon write goes through."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from app.db.errors import DB_ERRORS

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")


class DbState:
    """What the daemon last saw of the database, for /health."""

    def __init__(self) -> None:
        self.ok = False
        self.error: str | None = "not connected yet"

    def up(self) -> None:
        self.ok, self.error = True, None

    def down(self, exc: BaseException) -> None:
        self.ok, self.error = False, f"{type(exc).__name__}: {str(exc).strip()[:200]}"


async def with_retry(db: DbState, fn: Callable[[], Awaitable[T]], give_up: Callable[[], bool] = lambda: False) -> T:
    """Run ``fn()`` (one short transaction), retrying transient database errors with backoff."""
    delay = 0.05
    while True:
        try:
            result = await fn()
            db.up()
            return result
        except DB_ERRORS as exc:
            db.down(exc)
            if give_up():
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def make_pool(url: str, name: str, min_size: int, max_size: int, *, synchronous_commit: str = "on",
              prepare: bool = True) -> AsyncConnectionPool[Any]:
    """An autocommit pool (each statement its own short transaction), opened by the caller.

    ``prepare=False`` behind a transaction pooler, which breaks prepared statements.
    ``synchronous_commit`` other than "on" is set per session, never as a startup option
    (Supavisor drops those and PgBouncer may refuse them); behind a transaction pooler a
    session setting would leak to other clients, so there it is not applied: set it on the
    daemon's role instead (``ALTER ROLE ... SET synchronous_commit = off``).
    """
    from psycopg_pool import AsyncConnectionPool

    kwargs: dict[str, Any] = {"autocommit": True, "application_name": name}
    if not prepare:
        kwargs["prepare_threshold"] = None
    configure = None
    if synchronous_commit != "on":
        if prepare:
            async def configure(conn: Any) -> None:
                # A transition lost in a database crash is recovered by lease expiry, rescue
                # and the idempotency key; write intents commit durably whatever this says.
                await conn.execute(f"SET synchronous_commit = {synchronous_commit}")
        else:
            from app.core import logs

            logs.event("pool.synchronous_commit_ignored", logging.WARNING, pool=name, wanted=synchronous_commit,
                       detail="behind a transaction pooler a session setting leaks to other clients; "
                              "set it on the daemon's role: ALTER ROLE <role> SET synchronous_commit = ...")
    return AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False, timeout=5.0,
                               kwargs=kwargs, name=name, configure=configure)
