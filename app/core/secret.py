"""A value that never shows itself in repr, str, logs or tracebacks."""

from __future__ import annotations

import json
from typing import Any


class Secret:
    """Holds a credential. Call :meth:`reveal` at the point of use, nowhere else."""

    __slots__ = ("_value", "_parsed")

    def __init__(self, value: str) -> None:
        self._value = value
        self._parsed: dict[str, Any] | None = None

    def reveal(self) -> str:
        return self._value

    def json(self) -> dict[str, Any]:
        """The secret parsed as a JSON object (vendor credentials are stored that way); parsed
        once per Secret, i.e. once per vault read, however many requests use it."""
        if self._parsed is not None:
            return self._parsed
        try:
            data = json.loads(self._value)
        except ValueError:
            raise ValueError("secret is not a JSON object") from None
        if not isinstance(data, dict):
            raise ValueError("secret is not a JSON object")
        self._parsed = data
        return data

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secret values cannot be pickled")
