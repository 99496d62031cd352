"""The supabase/ project is laid out where the Supabase CLI looks, and keeps secrets out of git."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest

from tests.supabase.conftest import ROOT, SUPABASE

pytestmark = pytest.mark.supabase
FUNCTIONS = SUPABASE / "functions"


def test_config__the_function_is_declared_with_its_auth_decision_and_paths() -> None:
    config = tomllib.loads((SUPABASE / "config.toml").read_text())
    fn = config["functions"]["integration-dispatch"]
    # verify_jwt = false on purpose (the gateway refuses sb_secret_ keys); the check is in code.
    assert fn["verify_jwt"] is False
    assert "verify_jwt = false, on purpose" in (SUPABASE / "config.toml").read_text()
    for key in ("entrypoint", "import_map"):
        assert (SUPABASE / fn[key]).resolve().is_file(), \
            f"[functions.integration-dispatch] {key} = {fn[key]} is missing"
    assert config["edge_runtime"]["deno_version"] == 2
    assert config["project_id"] == "integration-dispatch"


def test_deno__one_pinned_version_on_the_edge_runtime_line() -> None:
    version = (FUNCTIONS / ".dvmrc").read_text().strip()
    assert re.fullmatch(r"2\.1\.\d+", version), f".dvmrc pins {version}; the edge runtime runs Deno 2.1"


def test_import_map__shared_alias_and_pinned_npm() -> None:
    import json

    imports = json.loads((FUNCTIONS / "integration-dispatch" / "deno.json").read_text())["imports"]
    assert imports["shared/"] == "../_shared/"
    assert re.fullmatch(r"npm:postgres@\d+\.\d+\.\d+", imports["postgres"]), "npm:postgres must be pinned exactly"
    assert (FUNCTIONS / "integration-dispatch" / "deno.lock").is_file(), "the lock file pins the npm tarball's hash"


def test_env_example__names_placeholders_and_who_injects_them() -> None:
    text = (FUNCTIONS / ".env.example").read_text()
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "VAULT_SECRET_NAME"):
        line = re.search(rf"^{name}=(.*)$", text, re.M)
        assert line, f"{name} is missing from supabase/functions/.env.example"
        assert line.group(1).startswith(("<", "https://<")), f"{name} must hold a placeholder, not a value"
    assert text.count("Injected by the platform") >= 2


@pytest.mark.parametrize("path", ["supabase/functions/.env", "supabase/.env", "supabase/.env.local",
                                  "supabase/.env.keys", "supabase/functions/integration-dispatch/.env",
                                  "supabase/.temp/cli-latest"])
def test_gitignore__local_secrets_and_cli_state_are_ignored(path: str) -> None:
    res = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert res.returncode == 0, f"{path} is not git-ignored"


def test_gitignore__the_example_is_not_ignored() -> None:
    res = subprocess.run(["git", "check-ignore", "-q", "supabase/functions/.env.example"], cwd=ROOT)
    assert res.returncode == 1
