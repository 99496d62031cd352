"""The daemon's HTTP app is built without importing the console, Jinja2 or the CLI: they load
on the first request to /console."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from app.core.settings import Settings
from app.composition import Daemon
d = Daemon(Settings(database_url="postgresql://nobody@127.0.0.1:1/none", supabase_jwt_secret="x" * 40), 0, 1)
d.duties = []
app = d.http_app()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("jinja2", "markupsafe", "selenium")
                or m.startswith(("app.web.console", "app.cli")))
print(",".join(loaded))
"""


def test_building_the_daemons_app_imports_no_console() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at start: {out.stdout.strip()}"
