"""The scrape credential: GET /metrics also takes a token with the metrics role
(DISPATCH_METRICS_ROLE, default ``metrics``), which opens no other route."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from app.core.errors import ConfigError
from app.web.api import ROUTES
from app.web.auth import AuthConfig, AuthFailure, Verifier, mint_token
from tests.acceptance.test_api import NO_AUTH_ENV, SECRET, api_db, error  # noqa: F401 — api_db is a fixture
from tests.support import DaemonProcess

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def daemon(api_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:  # noqa: F811
    d = DaemonProcess(api_db, tmp_path_factory.mktemp("api-metrics"), **{**NO_AUTH_ENV, "SUPABASE_JWT_SECRET": SECRET})
    d.start()
    yield d
    d.stop()
    d.close()


def _get(daemon: DaemonProcess, path: str, role: str, method: str = "GET") -> httpx.Response:
    headers = {"Authorization": f"Bearer {mint_token(SECRET, role=role)}"}
    kwargs = {"json": {"integration_id": "x", "kind": "sync"}} if method == "POST" else {}
    return httpx.request(method, daemon.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_metrics_role__scrapes_metrics(daemon: DaemonProcess) -> None:
    for role in ("metrics", "service_role"):
        response = _get(daemon, "/metrics", role)
        assert response.status_code == 200, (role, response.text)
        assert "dispatch_" in response.text


@pytest.mark.parametrize(("method", "path"), [("POST", "/dispatch"), ("GET", "/jobs/1"),
                                              ("GET", "/health/details")])
def test_metrics_role__opens_no_other_route(daemon: DaemonProcess, method: str, path: str) -> None:
    response = _get(daemon, path, "metrics", method)
    assert response.status_code == 403, response.text
    body = error(response)
    assert body["code"] == "wrong_role" and "'service_role'" in body["message"]
    assert "'service_role' or" not in body["message"]  # the metrics role is not offered here


@pytest.mark.parametrize("role", ["anon", "authenticated", "metrics_extra", ""])
def test_metrics__other_roles_are_refused(daemon: DaemonProcess, role: str) -> None:
    response = _get(daemon, "/metrics", role)
    assert response.status_code == 403 and error(response)["code"] == "wrong_role"
    assert "'service_role' or 'metrics'" in error(response)["message"]


def test_metrics__no_token_is_still_401(daemon: DaemonProcess) -> None:
    assert httpx.get(daemon.url + "/metrics", timeout=10).status_code == 401


def test_route_table__only_metrics_takes_the_scrape_credential() -> None:
    assert [name for name, spec in ROUTES.items() if spec.scrape] == ["metrics"]


def test_metrics_role__is_configurable_and_can_be_switched_off() -> None:
    def verify(config: AuthConfig, role: str) -> str:
        claims = asyncio.run(Verifier(config).verify(f"Bearer {mint_token(SECRET, role=role)}",
                                                     config.roles_for(scrape=True)))
        return str(claims["role"])

    custom = AuthConfig(jwt_secret=SECRET, metrics_role="prometheus")
    assert verify(custom, "prometheus") == "prometheus"
    with pytest.raises(AuthFailure) as refused:
        verify(custom, "metrics")
    assert refused.value.status == 403
    off = AuthConfig(jwt_secret=SECRET, metrics_role=None)
    assert off.roles_for(scrape=True) == ("service_role",)
    with pytest.raises(AuthFailure):
        verify(off, "metrics")


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_metrics_role__a_role_every_client_has_is_refused_at_start(role: str) -> None:
    with pytest.raises(ConfigError, match="DISPATCH_METRICS_ROLE"):
        Verifier(AuthConfig(jwt_secret=SECRET, metrics_role=role))
