"""The one seam where driver errors are named: which are transient, and what a refusal means."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors

#: Transient: the connection or the server went away. Reconnect, back off, try again.
DB_ERRORS = (psycopg.OperationalError, pgerrors.AdminShutdown, OSError)


@dataclass(frozen=True)
class Refusal:
    """What the database said, as a kind a caller can map to its own answer."""

    kind: str            # unavailable | unknown_reference | conflict | rejected | missing_object | forbidden | other
    message: str         # the server's primary message (never a bound value: our functions don't echo them)
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (pgerrors.ForeignKeyViolation, "unknown_reference"),
    (pgerrors.UniqueViolation, "conflict"),
    (pgerrors.UndefinedFunction, "missing_object"),
    (pgerrors.UndefinedTable, "missing_object"),
    (pgerrors.InsufficientPrivilege, "forbidden"),
    (pgerrors.DataError, "rejected"),
    (pgerrors.IntegrityError, "rejected"),
    (pgerrors.RaiseException, "rejected"),
)


def translate(exc: psycopg.Error) -> Refusal:
    if isinstance(exc, DB_ERRORS):
        return Refusal("unavailable", "the database is unavailable; try again shortly")
    diag = exc.diag
    message = diag.message_primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    kind = next((k for cls, k in _KINDS if isinstance(exc, cls)), "other")
    return Refusal(kind, message, diag.message_hint)
