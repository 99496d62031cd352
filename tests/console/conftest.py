"""A real daemon and a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) for the console's browser tests. Traffic stays on loopback: Chromium starts with
its background networking off, and selenium is given the driver and the browser, so Selenium
Manager never looks anything up."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.web.auth import mint_token
from tests.conftest import create_database, drop_database
from tests.support import DaemonProcess

SECRET = "console-test-secret-0123456789abcdef0123456789"
ACTOR = "console-tester@example.test"
ARTIFACTS = Path(os.environ.get("CONSOLE_ARTIFACTS", Path(__file__).resolve().parents[2] / ".local" / "artifacts" /
                                "console"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900"]
INSTALL = ("headless Chromium is needed for the console tests and was not found: install it with "
           "`apt-get update && apt-get install -y chromium chromium-driver` (scripts/bootstrap does this as root), "
           "and `pip install -c constraints.txt -e '.[dev]'` for selenium")


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def console_db(pg_cluster: Any, admin_url: str, template_db: str) -> Iterator[str]:
    name = create_database(admin_url, template_db, prefix="console")
    url = pg_cluster.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dispatch.integrations (id, adapter) VALUES ('acme-noop', 'noop'), "
                     "('beta-noop', 'noop')")
    yield url
    drop_database(admin_url, name)


@pytest.fixture(scope="module")
def daemon(console_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(console_db, tmp_path_factory.mktemp("console"), SUPABASE_JWT_SECRET=SECRET,
                      SUPABASE_URL="").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def token() -> str:
    return mint_token(SECRET, sub=ACTOR)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = _find("chromium", "chromium-browser"), _find("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail(INSTALL, pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(INSTALL, pytrace=False)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    drv.set_page_load_timeout(30)
    # A click that submits a form returns before the next page has loaded: element lookups wait
    # (up to 10 s) for the element to appear instead of failing on the page still in flight.
    drv.implicitly_wait(10)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)
