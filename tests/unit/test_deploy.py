"""scripts/deploy: the plan a change set requires, on throwaway git repositories."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
DEPLOY = ROOT / "scripts" / "deploy"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
MIGRATE = "migrate: integration-dispatch db upgrade"
ROLLOUT = "rollout: (DEPLOY_ROLLOUT_CMD not set: print only)"
FUNCTIONS = "functions: supabase functions deploy integration-dispatch --project-ref '$SUPABASE_PROJECT_REF' --use-api"
FUNCTION_FILE = "supabase/functions/integration-dispatch/index.ts"
STEP_SECRETS = ("DATABASE_URL", "DEPLOY_ROLLOUT_CMD", "DEPLOY_BASE", "DEPLOY_DB_UPGRADE_ARGS",
                "SUPABASE_ACCESS_TOKEN", "SUPABASE_PROJECT_REF")


class Repo:
    """A throwaway repository with one base commit shaped like this project."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        for name in ("app/worker.py", "migrations/versions/0001_schema.py", "sql/queries.sql", "docs/operations.md",
                     "README.md", "pyproject.toml", "tests/unit/test_x.py", FUNCTION_FILE,
                     "supabase/functions/_shared/types.ts", "supabase/config.toml", "deploy/Containerfile",
                     "deploy/requirements.lock", "deploy/integration-dispatch.service", ".github/workflows/deploy.yml"):
            self.write(name, "base\n")
        self.base = self.commit("base")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV}).stdout.strip()

    def write(self, name: str, text: str) -> None:
        file = self.path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def change(self, *names: str) -> str:
        for name in names:
            self.write(name, f"changed {name}\n")
        return self.commit("change " + " ".join(names))


def deploy(repo: Repo, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in STEP_SECRETS}
    return subprocess.run([sys.executable, str(DEPLOY), "--repo", str(repo.path), *args],
                          capture_output=True, text=True, env={**clean, **env}, timeout=120)


def plan(repo: Repo, *args: str, **env: str) -> list[str]:
    done = deploy(repo, "--base", repo.base, "--dry-run", *args, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def plan_range(repo: Repo, text: str) -> list[str]:
    done = deploy(repo, "--dry-run", text)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


# -- dry runs: exactly the steps each change set requires
def test_dry_run__migrations_only_migrates(repo: Repo) -> None:
    repo.change("migrations/versions/0002_next.py")
    assert plan(repo) == [MIGRATE]


def test_dry_run__app_only_rolls_out(repo: Repo) -> None:
    repo.change("app/worker.py")
    assert plan(repo) == [ROLLOUT]


def test_dry_run__docs_only_does_nothing(repo: Repo) -> None:
    repo.change("docs/operations.md", "README.md", "tests/unit/test_x.py")
    assert plan(repo) == ["nothing to deploy"]


def test_dry_run__mixed_change_migrates_then_rolls_out(repo: Repo) -> None:
    repo.change("docs/operations.md")
    repo.change("app/worker.py", "migrations/versions/0002_next.py")
    assert plan(repo) == [MIGRATE, ROLLOUT]


def test_dry_run__runtime_queries_need_both(repo: Repo) -> None:
    # The daemon loads sql/queries.sql at start: a changed query needs the restart too.
    repo.change("sql/queries.sql")
    assert plan(repo) == [MIGRATE, ROLLOUT]


def test_dry_run__dependencies_roll_out(repo: Repo) -> None:
    repo.change("pyproject.toml")
    assert plan(repo) == [ROLLOUT]


def test_dry_run__shows_the_configured_commands(repo: Repo) -> None:
    repo.change("app/worker.py", "migrations/versions/0002_next.py")
    assert plan(repo, DEPLOY_ROLLOUT_CMD="systemctl restart integration-dispatch",
                DEPLOY_DB_UPGRADE_ARGS="--no-pg-cron") == [
        MIGRATE + " --no-pg-cron", "rollout: systemctl restart integration-dispatch"]


def test_dry_run__default_range_is_the_last_commit_of_origin_main(repo: Repo, tmp_path: Path) -> None:
    repo.change("migrations/versions/0002_next.py")
    repo.change("app/worker.py")
    repo.git("update-ref", "refs/remotes/origin/main", "HEAD")
    done = deploy(repo, "--dry-run")
    assert done.returncode == 0 and done.stdout.splitlines() == [ROLLOUT]


def test_dry_run__an_unknown_base_sha_deploys_everything(repo: Repo) -> None:
    repo.change("docs/operations.md")
    for base in ("0" * 40, "1" * 40):  # a branch's first push; a force-pushed, vanished `before`
        done = deploy(repo, "--base", base, "--dry-run")
        assert done.stdout.splitlines() == [MIGRATE, FUNCTIONS, ROLLOUT] and "unknown base" in done.stderr


def test_bad_revisions_are_one_line_errors(repo: Repo) -> None:
    done = deploy(repo, "--base", "no-such-branch", "--dry-run")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("deploy: error: --base 'no-such-branch' is not a commit")
    done = deploy(repo, "--head", "no-such-branch", "--dry-run")
    assert done.returncode == 2 and "--head 'no-such-branch' is not a commit" in done.stderr


def test_dry_run__changes_nothing(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "rolled-out"
    repo.change("app/worker.py", "migrations/versions/0002_next.py")
    done = deploy(repo, "--base", repo.base, "--dry-run", DEPLOY_ROLLOUT_CMD=f"touch {marker}",
                  DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 0 and not marker.exists()


# -- the Edge Function, and every area at once
def test_dry_run__function_code_deploys_only_the_function(repo: Repo) -> None:
    repo.change(FUNCTION_FILE)
    assert plan(repo) == [FUNCTIONS]


def test_dry_run__shared_function_modules_and_config_deploy_the_function(repo: Repo) -> None:
    for name in ("supabase/functions/_shared/types.ts", "supabase/config.toml",
                 "supabase/functions/integration-dispatch/deno.json"):
        base = repo.git("rev-parse", "HEAD")
        repo.change(name)
        assert plan(repo, "--base", base) == [FUNCTIONS], name


def test_dry_run__function_docs_and_tests_deploy_nothing(repo: Repo) -> None:
    repo.change("supabase/functions/README.md", "supabase/functions/.env.example",
                "supabase/functions/integration-dispatch/index_test.ts")
    assert plan(repo) == ["nothing to deploy"]


def test_dry_run__supabase_migrations_migrate(repo: Repo) -> None:
    repo.change("supabase/migrations/20260101000000_dispatch.sql")
    assert plan(repo) == [MIGRATE]


def test_dry_run__every_area_runs_in_order_migrate_functions_rollout(repo: Repo) -> None:
    repo.change(FUNCTION_FILE, "app/worker.py", "migrations/versions/0002_next.py")
    assert plan(repo) == [MIGRATE, FUNCTIONS, ROLLOUT]


def test_dry_run__the_image_and_its_lock_roll_out_the_daemon(repo: Repo) -> None:
    for name in ("deploy/Containerfile", "deploy/requirements.lock"):
        base = repo.git("rev-parse", "HEAD")
        repo.change(name)
        assert plan(repo, "--base", base) == [ROLLOUT], name


def test_dry_run__ci_and_example_units_deploy_nothing(repo: Repo) -> None:
    repo.change(".github/workflows/deploy.yml", "deploy/integration-dispatch.service")
    assert plan(repo) == ["nothing to deploy"]


def test_dry_run__shows_the_project_ref_never_the_token(repo: Repo) -> None:
    repo.change(FUNCTION_FILE)
    done = deploy(repo, "--base", repo.base, "--dry-run", SUPABASE_PROJECT_REF="abcdefghijklmnopqrst",
                  SUPABASE_ACCESS_TOKEN="sbp_not-a-real-token")
    assert done.stdout.splitlines() == [
        "functions: supabase functions deploy integration-dispatch --project-ref abcdefghijklmnopqrst --use-api"]
    assert "sbp_not-a-real-token" not in done.stdout + done.stderr


def test_dry_run__a_range_argument_equals_base_and_head(repo: Repo) -> None:
    repo.change("migrations/versions/0002_next.py")
    middle = repo.git("rev-parse", "HEAD")
    repo.change(FUNCTION_FILE)
    assert plan_range(repo, f"{repo.base}..HEAD") == [MIGRATE, FUNCTIONS]
    assert plan_range(repo, f"{repo.base}...HEAD") == [MIGRATE, FUNCTIONS]
    assert plan_range(repo, f"{middle}..") == [FUNCTIONS]  # an empty head is HEAD, as in git
    assert plan_range(repo, f"{repo.base}..{middle}") == [MIGRATE]


def test_dry_run__a_bad_range_is_a_usage_error(repo: Repo) -> None:
    for bad in ("HEAD", "..HEAD"):
        done = deploy(repo, "--dry-run", bad)
        assert done.returncode == 2 and "is not BASE..HEAD" in done.stderr, bad
    done = deploy(repo, "--dry-run", f"{repo.base}..HEAD", "--base", repo.base)
    assert done.returncode == 2 and "not both" in done.stderr


def test_outputs__one_flag_per_step_for_github(repo: Repo, tmp_path: Path) -> None:
    outputs = tmp_path / "github_output"
    outputs.write_text("earlier=kept\n")
    repo.change(FUNCTION_FILE, "docs/operations.md")
    done = deploy(repo, "--base", repo.base, "--dry-run", "--outputs", str(outputs))
    assert done.returncode == 0, done.stderr
    assert outputs.read_text().splitlines() == ["earlier=kept", "migrate=false", "functions=true", "rollout=false"]


def test_only__prints_and_runs_just_the_named_steps(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "rolled-out"
    repo.change(FUNCTION_FILE, "app/worker.py", "migrations/versions/0002_next.py")
    assert plan(repo, "--only", "functions") == [FUNCTIONS]
    assert plan(repo, "--only", "migrate,rollout") == [MIGRATE, ROLLOUT]
    # Not planned for this range: nothing runs, even when asked for.
    docs = Repo(tmp_path / "docs-only")
    docs.change("docs/operations.md")
    done = deploy(docs, "--base", docs.base, "--only", "rollout", DEPLOY_ROLLOUT_CMD=f"touch {marker}")
    assert done.returncode == 0 and done.stdout.splitlines() == ["nothing to deploy"] and not marker.exists()
    done = deploy(repo, "--base", repo.base, "--only", "everything", "--dry-run")
    assert done.returncode == 2 and "unknown step everything" in done.stderr


# -- real runs
def test_run__rollout_runs_the_configured_command(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "rolled-out"
    repo.change("app/worker.py")
    done = deploy(repo, "--base", repo.base, DEPLOY_ROLLOUT_CMD=f"echo restarted > {marker}")
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "restarted\n"


def test_run__rollout_without_a_command_only_says_what_it_would_do(repo: Repo) -> None:
    repo.change("app/worker.py")
    done = deploy(repo, "--base", repo.base)
    assert done.returncode == 0 and "DEPLOY_ROLLOUT_CMD is not set; would rebuild and restart" in done.stderr


def test_run__a_failing_rollout_exits_1(repo: Repo) -> None:
    repo.change("app/worker.py")
    done = deploy(repo, "--base", repo.base, DEPLOY_ROLLOUT_CMD="exit 3")
    assert done.returncode == 1 and "rollout failed (exit 3)" in done.stderr


def test_run__migrate_needs_database_url_and_never_rolls_out_after_it_fails(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "rolled-out"
    repo.change("app/worker.py", "migrations/versions/0002_next.py")
    done = deploy(repo, "--base", repo.base, DEPLOY_ROLLOUT_CMD=f"touch {marker}")
    assert done.returncode == 2 and "DATABASE_URL is not set" in done.stderr
    done = deploy(repo, "--base", repo.base, DEPLOY_ROLLOUT_CMD=f"touch {marker}",
                  DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert done.returncode == 1 and "migrate failed" in done.stderr and "nobody" not in done.stdout
    assert not marker.exists()


# -- the functions step, with a stand-in `supabase` that records what it was given
@pytest.fixture
def fake_supabase(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "supabase.record"
    script = bin_dir / "supabase"
    script.write_text(f"""#!/bin/sh
{{ echo "argv=$*"; echo "cwd=$(pwd)"; env | sort; }} > {record}
exit ${{FAKE_SUPABASE_EXIT:-0}}
""")
    script.chmod(0o755)
    return bin_dir


def with_path(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def test_run__functions_deploys_the_one_function_with_the_token_and_no_database_url(
        repo: Repo, fake_supabase: Path) -> None:
    repo.change(FUNCTION_FILE)
    done = deploy(repo, "--base", repo.base, PATH=with_path(fake_supabase), SUPABASE_ACCESS_TOKEN="sbp_fake",
                  SUPABASE_PROJECT_REF="abcdefghijklmnopqrst", DATABASE_URL="postgresql://u:pw@127.0.0.1:1/x")
    assert done.returncode == 0, done.stderr
    record = (fake_supabase.parent / "supabase.record").read_text().splitlines()
    assert record[0] == "argv=functions deploy integration-dispatch --project-ref abcdefghijklmnopqrst --use-api"
    assert record[1] == f"cwd={repo.path}"  # the checkout being deployed: its supabase/ directory
    assert "SUPABASE_ACCESS_TOKEN=sbp_fake" in record
    assert not [line for line in record if line.startswith("DATABASE_URL=")]


def test_run__functions_needs_the_token_the_ref_and_the_cli(repo: Repo, fake_supabase: Path) -> None:
    repo.change(FUNCTION_FILE)
    done = deploy(repo, "--base", repo.base, PATH=with_path(fake_supabase), SUPABASE_PROJECT_REF="ref")
    assert done.returncode == 2 and "SUPABASE_ACCESS_TOKEN not set" in done.stderr
    done = deploy(repo, "--base", repo.base, PATH=with_path(fake_supabase), SUPABASE_ACCESS_TOKEN="sbp_fake")
    assert done.returncode == 2 and "SUPABASE_PROJECT_REF not set" in done.stderr
    done = deploy(repo, "--base", repo.base, PATH=str(Path(sys.executable).parent) + os.pathsep + "/usr/bin",
                  SUPABASE_ACCESS_TOKEN="sbp_fake", SUPABASE_PROJECT_REF="ref")
    assert done.returncode == 2 and "supabase CLI is not on PATH" in done.stderr
    assert not (fake_supabase.parent / "supabase.record").exists()


def test_run__a_failed_function_deploy_stops_the_rollout(repo: Repo, fake_supabase: Path, tmp_path: Path) -> None:
    marker = tmp_path / "rolled-out"
    repo.change(FUNCTION_FILE, "app/worker.py")
    done = deploy(repo, "--base", repo.base, PATH=with_path(fake_supabase), SUPABASE_ACCESS_TOKEN="sbp_fake",
                  SUPABASE_PROJECT_REF="ref", FAKE_SUPABASE_EXIT="4", DEPLOY_ROLLOUT_CMD=f"touch {marker}")
    assert done.returncode == 1 and "functions deploy failed (exit 4)" in done.stderr
    assert not marker.exists()


def test_run__the_rollout_sees_neither_the_token_nor_the_database_url(repo: Repo, tmp_path: Path) -> None:
    seen = tmp_path / "rollout.env"
    repo.change("app/worker.py")
    done = deploy(repo, "--base", repo.base, DEPLOY_ROLLOUT_CMD=f"env > {seen}", SUPABASE_ACCESS_TOKEN="sbp_fake",
                  DATABASE_URL="postgresql://u:pw@127.0.0.1:1/x")
    assert done.returncode == 0, done.stderr
    names = {line.split("=", 1)[0] for line in seen.read_text().splitlines()}
    assert "PATH" in names and not names & {"SUPABASE_ACCESS_TOKEN", "DATABASE_URL"}


def test_migrate__its_process_never_sees_the_supabase_token(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = importlib.machinery.SourceFileLoader("deploy_script", str(DEPLOY))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, loader.name, module)  # dataclasses look their module up there
    loader.exec_module(module)
    monkeypatch.setenv("SUPABASE_ACCESS_TOKEN", "sbp_fake")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/x")
    monkeypatch.setenv("DEPLOY_ROLLOUT_CMD", "true")
    env = module._env("migrate")
    assert env["DATABASE_URL"] and "SUPABASE_ACCESS_TOKEN" not in env and "DEPLOY_ROLLOUT_CMD" not in env


@pytest.mark.integration
def test_run__migrations_only_upgrades_the_database(repo: Repo, db_url: str) -> None:
    from alembic.script import ScriptDirectory

    from app.db.migrate import _config, current, downgrade

    head = ScriptDirectory.from_config(_config(db_url, pg_cron=False)).get_current_head()
    previous = ScriptDirectory.from_config(_config(db_url, pg_cron=False)).get_revision(head).down_revision
    downgrade(db_url, str(previous), pg_cron=False)
    assert current(db_url) == previous
    repo.change("migrations/versions/0002_next.py")
    done = deploy(repo, "--base", repo.base, DATABASE_URL=db_url, DEPLOY_DB_UPGRADE_ARGS="--no-pg-cron")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == MIGRATE + " --no-pg-cron"
    assert current(db_url) == head
