"""Errors of the pure core. Each docstring is the default message.

Adapters raise these three to tell the daemon what to do with a job:
``RetryableError`` (try again later, optionally after ``retry_after`` seconds),
``PermanentError`` (fail now; the message tells an operator what to fix) and
``AuthError`` (credentials were refused: refresh them once, then retry).
"""

from __future__ import annotations


class DispatchError(Exception):
    """integration-dispatch failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(DispatchError):
    """A setting is missing or malformed: check the environment and .env."""


class PermanentError(DispatchError):
    """The job cannot succeed as it is: fix its payload, integration or credentials."""


class RetryableError(DispatchError):
    """The vendor or network failed transiently; the job will be tried again."""

    def __init__(self, message: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(RetryableError):
    """The vendor refused the credentials; they are re-read once before the next try."""


class UnknownAdapter(PermanentError):
    """No adapter is registered under this name: check `integration-dispatch adapters list`."""


class DuplicateAdapter(DispatchError):
    """An adapter with this name is already registered: adapter names must be unique."""


class MissingSecret(PermanentError):
    """The integration's secret is not in the vault: add it with `integration-dispatch secrets set`."""


class OwnershipLost(DispatchError):
    """This worker no longer owns the job (its lease expired and it was rescued elsewhere)."""
