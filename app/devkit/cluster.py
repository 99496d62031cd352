"""A throwaway local PostgreSQL cluster with pg_cron, from the installed server binaries.

One piece of code serves the demo, the tests and the benchmarks:

    cluster = LocalCluster.default()      # under local_dir() / "pg" / "default", outside the checkout
    url = cluster.ensure()                 # initdb once, start if stopped; idempotent
    cluster.stop()

It finds a server whose pg_cron package is installed; where none is, it installs
``postgresql-<major>-cron`` (root + apt), or the distribution's ``postgresql-N`` and
``postgresql-N-cron`` where the installed major has no pg_cron package; otherwise it says
exactly what to install. The cluster listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import ConfigError

APP_DB = "dispatch"


def local_dir() -> Path:
    """Where dev tooling keeps its clusters and logs: never inside the checkout, whose parent
    may be a 0700 home directory the ``postgres`` user cannot enter.

    ``DISPATCH_LOCAL_DIR`` when set; as root, ``/var/tmp/integration-dispatch`` (the server
    runs as ``postgres``, which must reach it); otherwise the XDG data directory
    (``$XDG_DATA_HOME`` or ``~/.local/share``), since the server then runs as the user.
    """
    explicit = os.environ.get("DISPATCH_LOCAL_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/var/tmp/integration-dispatch")
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "integration-dispatch"


@dataclass(frozen=True)
class Server:
    major: int
    bindir: Path

    def has_pg_cron(self) -> bool:
        return _sharedir(self).joinpath("extension", "pg_cron.control").exists()


def _sharedir(server: Server) -> Path:
    """The server's share directory: its own pg_config says; Debian's layout otherwise."""
    pg_config = server.bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path(f"/usr/share/postgresql/{server.major}")


def installed_servers() -> list[Server]:
    """Every server found via ``pg_config`` or ``/usr/lib/postgresql/*/bin``, newest first."""
    found: dict[int, Server] = {}
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin")):
        if (bindir / "postgres").exists() and bindir.parent.name.isdigit():
            found[int(bindir.parent.name)] = Server(int(bindir.parent.name), bindir)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir", "--version"], capture_output=True, text=True)
        lines = out.stdout.split("\n")
        m = re.search(r"(\d+)", lines[1]) if len(lines) > 1 else None
        if m and Path(lines[0], "postgres").exists():
            found.setdefault(int(m.group(1)), Server(int(m.group(1)), Path(lines[0])))
    return sorted(found.values(), key=lambda s: -s.major)


def _can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_has(package: str) -> bool:
    out = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True)
    return out.returncode == 0 and "Package:" in out.stdout


def _apt_install(*packages: str) -> None:
    print(f"installing {' '.join(packages)} with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not all(_apt_has(p) for p in packages):
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def _distribution_major() -> int | None:
    out = subprocess.run(["apt-cache", "depends", "postgresql"], capture_output=True, text=True)
    m = re.search(r"Depends: postgresql-(\d+)", out.stdout)
    return int(m.group(1)) if m else None


def find_server(install: bool = True) -> Server:
    """A server with pg_cron, installing the package when allowed."""
    servers = installed_servers()
    for server in servers:
        if server.has_pg_cron():
            return server
    if install and _can_apt():
        for server in servers:
            if _apt_has(f"postgresql-{server.major}-cron") or _refresh_and_check(server.major):
                _apt_install(f"postgresql-{server.major}-cron")
                return server
        major = _distribution_major()
        if major is not None:
            _apt_install(f"postgresql-{major}", f"postgresql-{major}-cron")
            return Server(major, Path(f"/usr/lib/postgresql/{major}/bin"))
    majors = ", ".join(str(s.major) for s in servers) or "none"
    raise ConfigError(
        f"no PostgreSQL server with pg_cron found (installed majors: {majors}). Install one, e.g. "
        f"`sudo apt-get install postgresql-{servers[0].major if servers else 15}-cron`, "
        "or set DATABASE_URL to an existing database"
    )


_refreshed = False


def _refresh_and_check(major: int) -> bool:
    global _refreshed
    if not _refreshed:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        _refreshed = True
    return _apt_has(f"postgresql-{major}-cron")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """One cluster in one folder. ``ensure()`` makes it exist and run, whatever its state."""

    def __init__(self, datadir: Path, cron_database: str = APP_DB, fast: bool = False) -> None:
        self.datadir = datadir
        self.cron_database = cron_database
        # fsync off: only for throwaway test clusters, where speed beats durability.
        self.fast = fast
        self.state_file = datadir.parent / (datadir.name + ".json")

    @classmethod
    def default(cls) -> LocalCluster:
        return cls(local_dir() / "pg" / "default")

    # -- state
    @property
    def port(self) -> int:
        return int(json.loads(self.state_file.read_text())["port"])

    @property
    def server(self) -> Server:
        data = json.loads(self.state_file.read_text())
        return Server(int(data["major"]), Path(data["bindir"]))

    def url(self, database: str = APP_DB, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle
    def ensure(self) -> str:
        if not (self.datadir / "PG_VERSION").exists():
            self._init(find_server())
        if not self.running():
            self._start()
        return self.url()

    def running(self) -> bool:
        if not self.state_file.exists() or not (self.datadir / "PG_VERSION").exists():
            return False
        res = self._run([str(self.server.bindir / "pg_ctl"), "status", "-D", str(self.datadir)], check=False)
        return res.returncode == 0

    def stop(self) -> None:
        if self.running():
            self._run([str(self.server.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w"])

    def restart(self) -> None:
        self._run([str(self.server.bindir / "pg_ctl"), "restart", "-D", str(self.datadir), "-m", "fast", "-w",
                   "-l", str(self.datadir / "server.log")])

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)

    def _init(self, server: Server) -> None:
        self._reachable(self.datadir.parent)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._own(self.datadir)
        self._run([str(server.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], quiet=True)
        self.state_file.write_text(json.dumps({"major": server.major, "bindir": str(server.bindir),
                                               "port": free_port()}))
        self._write_conf()

    def _write_conf(self) -> None:
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.datadir}'",
            "shared_preload_libraries": "'pg_cron'",
            "cron.database_name": f"'{self.cron_database}'",
            "cron.use_background_workers": "on",
            "max_worker_processes": "16",
            "max_connections": "300",
            "log_min_messages": "warning",
            # Statement text (and bound values) never reach the log: secrets pass through here.
            "log_min_error_statement": "panic",
            "log_statement": "'none'",
            "log_min_duration_statement": "-1",
            "log_parameter_max_length": "0",
            "log_parameter_max_length_on_error": "0",
            "cron.log_statement": "off",
        }
        if self.fast:
            conf.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        lines = "\n".join(f"{k} = {v}" for k, v in conf.items())
        with (self.datadir / "postgresql.conf").open("a") as fh:
            fh.write("\n# integration-dispatch local cluster\n" + lines + "\n")

    def _start(self) -> None:
        # A stale port (another process took it while we were stopped) gets a new one.
        if not _port_free(self.port):
            data = json.loads(self.state_file.read_text())
            data["port"] = free_port()
            self.state_file.write_text(json.dumps(data))
            with (self.datadir / "postgresql.conf").open("a") as fh:
                fh.write(f"port = {data['port']}\n")
        self._run([str(self.server.bindir / "pg_ctl"), "start", "-D", str(self.datadir), "-w", "-t", "60",
                   "-l", str(self.datadir / "server.log")], quiet=True)
        self._bootstrap()

    def _bootstrap(self) -> None:
        """The app database, pg_cron in the cron database, and the roles Supabase has."""
        psql = [str(self.server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.datadir), "-p", str(self.port), "-U", "postgres"]
        exists = self._run([*psql, "-d", "postgres", "-tAc",
                            f"SELECT 1 FROM pg_database WHERE datname = '{self.cron_database}'"]).stdout
        if not exists.strip():
            self._run([*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{self.cron_database}"'])
        self._run([*psql, "-d", self.cron_database, "-c", "CREATE EXTENSION IF NOT EXISTS pg_cron"])

    def _reachable(self, path: Path) -> None:
        """As root, the ``postgres`` user must be able to walk down to the data directory:
        open the folder we made, and say plainly when a parent is closed (a 0700 home)."""
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        path.chmod(path.stat().st_mode | 0o005)
        for parent in path.parents:
            if not parent.stat().st_mode & 0o001:
                raise ConfigError(f"the postgres user cannot enter {parent} (mode {parent.stat().st_mode & 0o777:o}): "
                                  "set DISPATCH_LOCAL_DIR to a directory outside it")

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def _run(self, cmd: list[str], check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if check and res.returncode != 0:
            log = self.datadir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise ConfigError(f"{' '.join(cmd[-6:])} failed: {res.stderr.strip() or res.stdout.strip()}\n{tail}")
        return res


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL binds: TIME_WAIT leftovers of our own clients don't make it busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.devkit.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "url", "destroy"])
    args = parser.parse_args(argv)
    cluster = LocalCluster.default()
    if args.action == "start":
        print(cluster.ensure())
    elif args.action == "stop":
        cluster.stop()
    elif args.action == "destroy":
        cluster.destroy()
    elif args.action == "status":
        print("running" if cluster.running() else "stopped")
        return 0 if cluster.running() else 3
    else:
        print(cluster.url())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
