"""deploy/kubernetes.yaml, deploy/kubernetes-migrate.yaml and deploy/compose.yaml: probes on the
right paths and port, a stop that outlasts the drain, no secret inline, migrate before roll."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.support import AFTER_GRACE_S, DEPLOY, env_pairs, shutdown_grace, stages

yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifests")
SECRETISH = re.compile(r"SECRET|TOKEN|PASSW|KEY|DATABASE_URL|DSN", re.I)


def docs(name: str) -> dict[str, Any]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / name).read_text())}


def image_env() -> dict[str, str]:
    _, found = stages((DEPLOY / "Containerfile").read_text())
    env: dict[str, str] = {}
    for ins in found[-1].all("ENV"):
        env.update(env_pairs(ins))
    env["USER"] = found[-1].all("USER")[-1].args.split(":")[0]
    return env


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    (only,) = manifest["spec"]["template"]["spec"]["containers"]
    return only


def test_kubernetes__liveness_and_readiness_on_their_own_paths_and_the_daemon_port() -> None:
    daemon = container(docs("kubernetes.yaml")["Deployment"])
    ports = {p["name"]: p["containerPort"] for p in daemon["ports"]}
    assert daemon["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert daemon["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert daemon["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    env = {e["name"]: e.get("value") for e in daemon["env"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[daemon[probe]["httpGet"]["port"]] == int(env["DISPATCH_HTTP_PORT"]) == int(
            image_env()["DISPATCH_HTTP_PORT"])
    assert env["DISPATCH_HTTP_HOST"] == "0.0.0.0"


def test_kubernetes__the_termination_grace_outlasts_the_drain() -> None:
    deployment = docs("kubernetes.yaml")["Deployment"]
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    grace = float(env.get("DISPATCH_SHUTDOWN_GRACE", shutdown_grace()))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + AFTER_GRACE_S
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_kubernetes__non_root_read_only_and_secrets_by_reference_only() -> None:
    for name, kind in (("kubernetes.yaml", "Deployment"), ("kubernetes-migrate.yaml", "Job")):
        manifest = docs(name)[kind]
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == image_env()["USER"]
        assert pod["automountServiceAccountToken"] is False
        c = container(manifest)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert [e["secretRef"]["name"] for e in c["envFrom"]] == ["integration-dispatch-env"]
        assert not [e["name"] for e in c.get("env", []) if SECRETISH.search(e["name"])]
        assert not c["image"].endswith(":latest") and ":" in c["image"].rsplit("/", 1)[-1]


def test_kubernetes__the_migration_job_runs_db_upgrade_once() -> None:
    job = docs("kubernetes-migrate.yaml")["Job"]
    assert container(job)["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container(job)["image"] == container(docs("kubernetes.yaml")["Deployment"])["image"]


def test_compose__migrates_then_starts_daemons_that_drain_on_stop() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    daemon = services["daemon"]
    assert daemon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert daemon["stop_signal"] == "SIGTERM"
    assert float(daemon["stop_grace_period"].rstrip("s")) >= shutdown_grace() + AFTER_GRACE_S
    assert daemon["environment"]["DISPATCH_HTTP_HOST"] == "0.0.0.0"
    for service in services.values():
        assert not [k for k in service.get("environment", {}) if SECRETISH.search(k)]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
