"""The composition root: wires settings, the pool, the listener, the worker, the duties and
the HTTP surface into one asyncio process, and owns its signals.

SIGTERM/SIGINT once: stop claiming, let in-flight jobs finish within the grace period,
release the rest, exit 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from app import __version__
from app.adapters import registry
from app.adapters.base import Capabilities
from app.core import logs, metrics, tracing
from app.core.retry import RetryPolicy
from app.core.settings import Settings
from app.daemon.executor import Executor, HttpClients
from app.daemon.poller import Worker, WorkerConfig
from app.db import connect
from app.db.errors import DB_ERRORS
from app.db.listener import Listener
from app.db.pool import make_pool, with_retry
from app.db.stores import JobStore, WorkerStore

FIRST_CLAIM_WAIT = 0.5  # seconds the HTTP stack waits for the first claim to answer


def process_age_ms() -> float | None:
    """Milliseconds since this process was exec'd (Linux), for the cold-start figure."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:  # btime in /proc/stat has only whole seconds
            up = float(uptime.read().split()[0])
        return round((up - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000, 1)
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Daemon:
    settings: Settings
    port: int
    concurrency: int
    # os.urandom, not uuid: importing uuid imports platform, a few ms of the cold start
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}")
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from app.db.vault import VaultCredentials

        s = self.settings
        url = connect.resolve(None, s.database_url)
        # DATABASE_URL is (or may be) a transaction pooler, which breaks prepared statements.
        prepare = s.dispatch_listen and not (s.listen_database_url and s.listen_database_url != s.database_url)
        self.pool = make_pool(url, "dispatch-worker", 2, 8, prepare=bool(prepare),
                              synchronous_commit=s.dispatch_worker_synchronous_commit)
        # Enqueues through the API answer "queued" to a caller: those commits stay durable.
        self.api_pool = make_pool(url, "dispatch-api", 1, 4, prepare=bool(prepare))
        self.jobs = JobStore(self.pool, self.worker_id)
        self.workers = WorkerStore(self.pool, self.worker_id)
        self.http = HttpClients()
        self.credentials = VaultCredentials(self.pool, ttl=s.dispatch_credential_ttl)
        retry = RetryPolicy(base=s.dispatch_retry_base, cap=s.dispatch_retry_cap)
        from app.daemon.circuit import Health, HealthPolicy

        self.health = Health(self.pool, registry, HealthPolicy(base_interval=s.dispatch_probe_interval))
        self.executor = Executor(registry, self.credentials, self.http, retry=retry,
                                 default_secret_name=s.vault_secret_name, health=self.health,
                                 last_cursor=self.jobs.last_cursor, jobs=self.jobs,
                                 trace_context=self.jobs.trace_context)
        metrics.bind_known_kinds(lambda adapter: Capabilities.of(registry.cls(adapter)).kinds)
        self.worker = Worker(self.jobs, self.executor, WorkerConfig(
            worker_id=self.worker_id, concurrency=self.concurrency, poll_interval=s.dispatch_poll_interval,
            lease_seconds=s.dispatch_lease_seconds, retry=retry))
        from app.daemon.duties.alerts import AlertForwarder

        self.alerts = AlertForwarder(self.pool, self.http, s.alert_webhook_url)
        self.listener = Listener(s.listen_database_url or url, on_jobs=self.worker.wake, enabled=s.dispatch_listen)
        self.worker.listening = lambda: self.listener.connected
        self.listener.on_alerts = self.alerts.wake.set
        self.stop_requested = asyncio.Event()
        self._signals = 0

    def services(self) -> list[Any]:
        from app.daemon.duties.heartbeat import Heartbeat
        from app.daemon.duties.leases import LeaseKeeper
        from app.daemon.duties.probes import HealthMonitor
        from app.daemon.duties.rescuer import Rescuer
        from app.daemon.duties.warm_up import WarmUp
        from app.daemon.duties.watchdog import Watchdog

        self.heartbeat = Heartbeat(self.workers, self.worker.db)
        s = self.settings
        return [self.alerts, Watchdog(self.pool, s.dispatch_stall_after, s.dispatch_watchdog_interval),
                LeaseKeeper(self.worker), Rescuer(self.jobs, self.worker.wake, s.dispatch_rescue_interval),
                self.heartbeat, HealthMonitor(self.health, self.executor, s.dispatch_health_interval),
                WarmUp(self.pool, self.executor)]

    def http_app(self) -> Any:
        from app.web.api import Api
        from app.web.health import HealthView
        from app.web.server import build_app

        api = Api(self.settings, self.api_pool, self.worker)
        self.health_view = HealthView(self.worker, self.listener, self.duties)
        app = build_app(self.health_view, [*api.routes(), lazy_console(self.settings, api.verifier)])
        api.check(app)
        return app

    async def run(self) -> int:
        self._install_signals()
        # Claim first: queued work starts while the duties and the HTTP stack are still to be
        # imported. The first claim gets FIRST_CLAIM_WAIT at most: a database that is down must
        # not keep the health endpoints from answering. (Connecting the listener and the API's
        # pool before it made the first claim later: their connections compete with its own.)
        await self.pool.open(wait=False)
        self.tasks = [asyncio.create_task(self.worker.run(), name="worker")]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.worker.first_claim.wait(), FIRST_CLAIM_WAIT)
        self.duties = self.services()
        server: Any = None
        http_task: asyncio.Task[Any] | None = None
        if self.settings.dispatch_http_enabled:
            from app.web.server import ServerLimits, make_server

            server = make_server(self.http_app(), self.settings.dispatch_http_host, self.port,
                                 ServerLimits.from_settings(self.settings))
            http_task = asyncio.create_task(server.serve(), name="http")
        else:  # callers enqueue through SQL or the Edge Function; no port is opened
            from app.web.health import HealthView

            self.health_view = HealthView(self.worker, self.listener, self.duties)
        await self.api_pool.open(wait=False)
        self.tasks.append(asyncio.create_task(self.listener.run(), name="listener"))
        await self._register()
        self.tasks += [asyncio.create_task(svc.run(), name=svc.name) for svc in self.duties]
        logs.event("daemon.started", worker_id=self.worker_id, port=self.port, concurrency=self.concurrency,
                   version=__version__, listen=self.settings.dispatch_listen)
        asyncio.create_task(self._record_cold_start(server), name="cold-start")
        await self.stop_requested.wait()
        await self._shutdown(server, http_task)
        return 0

    async def _register(self) -> None:
        def write() -> Any:
            return self.workers.register(socket.gethostname(), os.getpid(), __version__, self.concurrency)

        try:
            await asyncio.wait_for(with_retry(self.worker.db, write), 10)
        except (TimeoutError, *DB_ERRORS):
            logs.event("daemon.register_deferred", logging.WARNING, error=self.worker.db.error)

    async def _record_cold_start(self, server: Any) -> None:
        """Cold start = exec until /health would answer 200 (HTTP bound, DB and listener up)."""
        health = self.health_view  # the one /health answers with
        while not ((server is None or server.started) and health.report()[0] == 200):  # noqa: ASYNC110 — polls three flags, no event to await
            await asyncio.sleep(0.002)
        self.heartbeat.cold_start_ms = process_age_ms()
        logs.event("daemon.ready", cold_start_ms=self.heartbeat.cold_start_ms)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            logs.event("daemon.killed", logging.WARNING, signal=signal.Signals(sig).name,
                       detail="second signal: exiting at once; running jobs' leases will expire")
            os._exit(1)
        logs.event("daemon.stopping", signal=signal.Signals(sig).name,
                   grace_s=self.settings.dispatch_shutdown_grace, in_flight=len(self.worker.inflight))
        self.stop_requested.set()

    async def _shutdown(self, server: Any, http_task: asyncio.Task[Any] | None) -> None:
        await self.worker.drain(self.settings.dispatch_shutdown_grace)
        logs.event("daemon.drained", logging.DEBUG)
        for task in self.tasks:
            task.cancel()
        # Bounded: a duty stuck in a driver call must not keep the process from exiting.
        _, stuck = await asyncio.wait(self.tasks, timeout=5)
        if stuck:
            logs.event("daemon.duties_stuck", logging.WARNING, duties=sorted(t.get_name() for t in stuck))
        logs.event("daemon.duties_stopped", logging.DEBUG)
        with contextlib.suppress(*DB_ERRORS):
            await self.workers.stopped()
        if server is not None and http_task is not None:
            server.should_exit = True
            await http_task
        logs.event("daemon.http_stopped", logging.DEBUG)
        await self.http.aclose()
        await self.pool.close()
        await self.api_pool.close()
        logs.event("daemon.stopped", worker_id=self.worker_id)


def lazy_console(settings: Settings, verifier: Any, prefix: str = "/console") -> Any:
    """The web console's route, built on its first request: the daemon's cold start imports
    neither the console nor Jinja2. The console calls the CLI's functions, handed over here
    (the composition root is the one place that may join the web and CLI floors)."""
    from starlette.routing import Match, Mount

    state: dict[str, Any] = {}

    def build() -> Any:
        from types import SimpleNamespace

        from app.cli import alerts, drift, health, jobs, schedules
        from app.cli.context import CommandError
        from app.web.console.app import build as build_console

        ops = SimpleNamespace(jobs=jobs, schedules=schedules, alerts=alerts, health=health, drift=drift,
                              CommandError=CommandError)
        url = connect.resolve(None, settings.database_url)
        return build_console(verifier, url, ops, stall_after=settings.dispatch_stall_after)

    async def console(scope: Any, receive: Any, send: Any) -> None:
        if "app" not in state:
            state["app"] = build()
        await state["app"](scope, receive, send)

    class ConsoleMount(Mount):
        def matches(self, scope: Any) -> tuple[Match, Any]:
            match, child = super().matches(scope)
            root, path = scope.get("root_path", ""), scope.get("path", "")
            if match is Match.NONE and scope["type"] == "http" and path == root + self.path:
                # /console itself: the console redirects to /console/
                child = {"path_params": dict(scope.get("path_params", {})),
                         "app_root_path": scope.get("app_root_path", root), "root_path": root + self.path,
                         "endpoint": self.app}
                return Match.FULL, child
            return match, child

    return ConsoleMount(prefix, app=console)


def serve(settings: Settings, port: int | None = None, concurrency: int | None = None) -> int:
    logs.setup(settings.dispatch_log_level)
    tracing.setup()  # imports OpenTelemetry only when an OTEL_ variable is set
    daemon_port = settings.dispatch_http_port if port is None else port
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(Daemon(settings, daemon_port, concurrency or settings.dispatch_concurrency).run())
    finally:
        tracing.shutdown()  # flush the last spans


def _loop_factory() -> Any:
    """uvloop where installed (about twice asyncio's speed on the job path), asyncio's own otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
