from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import DaemonProcess


@pytest.fixture
def daemon_factory(db_url: str, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(start: bool = True, concurrency: int = 10, **env: Any) -> DaemonProcess:
        d = DaemonProcess(db_url, tmp_path, concurrency=concurrency, **env)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.kill()
