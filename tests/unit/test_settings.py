"""Settings from the environment (app/core/settings.py): pydantic's rules, without its import cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.core.errors import ConfigError
from app.core.settings import SecretStr, Settings


def test_settings__defaults_environment_any_case_and_keyword_overrides() -> None:
    s = Settings(_environ={"DISPATCH_CONCURRENCY": "25", "dispatch_listen": "off", "Database_Url": "postgresql:///x",
                           "SOMETHING_ELSE": "ignored"}, dispatch_lease_seconds=7)
    assert (s.dispatch_concurrency, s.dispatch_listen, s.database_url) == (25, False, "postgresql:///x")
    assert s.dispatch_lease_seconds == 7.0 and s.dispatch_poll_interval == 5.0 and s.dispatch_http_enabled is True
    assert s.dispatch_worker_synchronous_commit == "on" and s.listen_database_url is None


@pytest.mark.parametrize(("text", "value"), [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("t", True),
                                             ("0", False), ("False", False), ("no", False), ("off", False)])
def test_settings__booleans_in_every_spelling_pydantic_accepts(text: str, value: bool) -> None:
    assert Settings(_environ={"DISPATCH_ALLOW_LOOPBACK_TARGETS": text}).dispatch_allow_loopback_targets is value


@pytest.mark.parametrize(("name", "text", "says"), [
    ("DISPATCH_CONCURRENCY", "0", "greater than or equal to 1"),
    ("DISPATCH_CONCURRENCY", "ten", "an integer"),
    ("DISPATCH_LEASE_SECONDS", "0", "greater than 0"),
    ("DISPATCH_HTTP_PORT", "70000", "less than or equal to 65535"),
    ("DISPATCH_LISTEN", "maybe", "valid boolean"),
    ("DISPATCH_WORKER_SYNCHRONOUS_COMMIT", "sometimes", "one of 'on', 'off'"),
])
def test_settings__a_bad_value_is_one_line_naming_the_variable(name: str, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings(_environ={name: text})
    message = str(info.value)
    assert message.startswith(f"setting {name} is invalid: ") and says in message and "\n" not in message


def test_settings__the_environment_wins_over_the_named_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "dispatch.env"
    env_file.write_text("DISPATCH_CONCURRENCY=3\nDISPATCH_HTTP_PORT=9000\n# a comment\nSUPABASE_JWT_SECRET='s3cret'\n")
    s = Settings(_env_file=str(env_file), _environ={"DISPATCH_HTTP_PORT": "9100"})
    assert (s.dispatch_concurrency, s.dispatch_http_port) == (3, 9100)
    assert isinstance(s.supabase_jwt_secret, SecretStr) and s.supabase_jwt_secret.get_secret_value() == "s3cret"


def test_settings__secrets_never_show() -> None:
    s = Settings(_environ={"SUPABASE_SERVICE_ROLE_KEY": "sb_secret_abc123"}, supabase_jwt_secret="")
    assert "sb_secret_abc123" not in repr(s) and "sb_secret_abc123" not in str(s.supabase_service_role_key)
    assert not s.supabase_jwt_secret  # an empty secret is no secret


def test_settings__unknown_keyword_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="dispatch_concurency"):
        Settings(_environ={}, dispatch_concurency=3)


def test_settings__reading_them_imports_no_pydantic() -> None:
    code = "import sys; from app.core.settings import get_settings; get_settings(); print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
