"""scripts/deploy: the plan a change set requires, on throwaway git repositories."""

from __future__ import annotations

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


class Repo:
    """A throwaway repository with one base commit shaped like this project."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        for name in ("app/worker.py", "migrations/versions/0001_schema.py", "sql/queries.sql", "docs/operations.md",
                     "README.md", "pyproject.toml", "tests/unit/test_x.py"):
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
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "DEPLOY_ROLLOUT_CMD", "DEPLOY_BASE", "DEPLOY_DB_UPGRADE_ARGS")}
    return subprocess.run([sys.executable, str(DEPLOY), "--repo", str(repo.path), *args],
                          capture_output=True, text=True, env={**clean, **env}, timeout=120)


def plan(repo: Repo, *args: str, **env: str) -> list[str]:
    done = deploy(repo, "--base", repo.base, "--dry-run", *args, **env)
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
        assert done.stdout.splitlines() == [MIGRATE, ROLLOUT] and "unknown base" in done.stderr


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
