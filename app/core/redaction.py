"""Redaction: credentials never reach a log line, a job row or an API response."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from app.core.secret import Secret

# Authorization values and OAuth fields a vendor may echo back in an error body.
_ECHOED = re.compile(r"""(?ix)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})
                       | \b(access_token|refresh_token|client_secret|password)(["']?\s*[:=]\s*["']?)([^"'&\s,}]+)""")


def redact(text: str | None, secret: Secret | None, state: dict[str, Any] | None = None) -> str | None:
    """Remove credentials from a message: the vault secret (and each string inside a JSON
    secret), every Secret an adapter derived and keeps in its state (e.g. an OAuth token),
    and anything that looks like an Authorization value a vendor echoed back."""
    if text is None:
        return text
    values: list[str] = []
    if secret is not None:
        values.append(secret.reveal())
        with contextlib.suppress(ValueError):  # a plain-text secret has no parts
            values += [v for v in secret.json().values() if isinstance(v, str)]
    values += [s.reveal() for s in _secrets_in(state or {})]
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "[redacted]")
    return _ECHOED.sub(lambda m: f"{m.group(1) or m.group(4)}{m.group(2) or m.group(5)}[redacted]", text)


def _secrets_in(value: Any, depth: int = 0) -> list[Secret]:
    if isinstance(value, Secret):
        return [value]
    if depth > 3:
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secrets_in(v, depth + 1)]
    if hasattr(value, "__dataclass_fields__"):
        return [s for name in value.__dataclass_fields__ for s in _secrets_in(getattr(value, name), depth + 1)]
    return []
