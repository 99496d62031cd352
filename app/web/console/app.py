"""The console's Starlette app: login, session, CSRF, the pages and the confirmed actions.

Authentication is the API's: the login form takes the project's token (a JWT the API
accepts), verifies it with the same :class:`~app.web.auth.Verifier`, and stores it in an
HttpOnly, SameSite=Strict cookie (Secure over https) that lives until the token expires.
Every request verifies the cookie's token again, so expiry, role and signature are checked
exactly as for ``Authorization: Bearer``. A POST needs the per-session CSRF token (an HMAC of
the session token, so any daemon can check it) and, when the browser sends one, an
``Origin`` equal to ours.

Actions go through the CLI's functions (injected by the composition root as ``ops``: the web
floor never imports the CLI floor) with the JWT's ``sub`` as the actor. Each action's first
POST shows what it will change (a dry run where there is one); only the second, with
``confirm=yes``, changes anything.
"""

from __future__ import annotations

import calendar as calendar_module
import datetime as dt
import hashlib
import hmac
import json
import re
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.core.redaction import redact
from app.web.auth import AuthFailure, Verifier

COOKIE = "dispatch_console"
MAX_FORM_BYTES = 64 * 1024
POLL_SECONDS = 5
STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]
_SECRET_KEY = re.compile(r"(?i)(secret|token|password|passwd|api[_-]?key|authorization|credential|private)")
_STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
_DONE = {"retried": "Job queued again.", "cancelled": "Job cancelled (or its worker asked to stop it).",
         "enabled": "Schedule enabled.", "disabled": "Schedule disabled.", "triggered": "Schedule triggered.",
         "backfilled": "Backfill done.", "resolved": "Alert resolved.", "already": "Nothing to do: already so."}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass(frozen=True)
class Session:
    token: str
    claims: dict[str, Any]
    csrf: str

    @property
    def actor(self) -> str:
        sub = self.claims.get("sub")
        return str(sub) if isinstance(sub, str) and sub else f"console:{self.claims.get('role', 'unknown')}"


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"integration-dispatch console csrf", hashlib.sha256).hexdigest()[:40]


def _queries() -> dict[str, str]:
    from app.db.queries import named_blocks

    return named_blocks(resources.files("app.web.console").joinpath("queries.sql").read_text(encoding="utf-8"))


def redact_payload(value: Any) -> Any:
    """Values under secret-looking keys are hidden; strings are scrubbed of Authorization values."""
    if isinstance(value, dict):
        return {k: "[redacted]" if _SECRET_KEY.search(str(k)) else redact_payload(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_payload(v) for v in value]
    if isinstance(value, str):
        return redact(value, None)
    return value


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Console:
    """``ops`` carries the CLI modules (jobs, schedules, alerts, health, drift) and ``CommandError``."""

    def __init__(self, verifier: Verifier, database_url: str, ops: Any, stall_after: float = 120.0) -> None:
        self.verifier, self.database_url, self.ops, self.stall_after = verifier, database_url, ops, stall_after
        self.queries = _queries()
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("app.web.console", "templates"),
                                      autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                                      lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        self.env.filters["when"] = _when
        self.env.filters["seconds"] = _seconds
        self.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
        self._pool: Any = None
        self.app = Starlette(routes=[
            Route("/", self.page(self.overview)),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.page(self.logout), methods=["POST"]),
            Route("/calendar", self.page(self.calendar)),
            Route("/jobs", self.page(self.jobs)),
            Route("/jobs/{job_id:int}", self.page(self.job)),
            Route("/schedules", self.page(self.schedules)),
            Route("/alerts", self.page(self.alerts)),
            Route("/act", self.page(self.act), methods=["POST"]),
            Route("/static/{name}", self.static),
        ])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == scope.get("root_path", ""):  # /console -> /console/
            await RedirectResponse(scope["path"] + "/", status_code=308)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    # -- the database: a small synchronous pool, for the CLI's synchronous functions
    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        def call() -> Any:
            with self.pool().connection() as conn:
                return fn(conn, *args, **kwargs)

        return run_in_threadpool(call)

    def pool(self) -> Any:
        if self._pool is None:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(self.database_url, min_size=1, max_size=3, open=True, name="dispatch-console",
                                        kwargs={"autocommit": True, "row_factory": dict_row,
                                                "application_name": "integration-dispatch console"})
        return self._pool

    def q(self, conn: Any, name: str, **params: Any) -> list[dict[str, Any]]:
        return list(conn.execute(self.queries[name], params).fetchall())

    # -- rendering
    def render(self, request: Request, name: str, session: Session | None, status: int = 200,
               **context: Any) -> Response:
        template = self.env.get_template(name)
        base = str(request.scope.get("root_path", "")) or "/console"
        context = {"title": "Sign in", "base": base, "session": session, "csrf": session.csrf if session else "",
                   "actor": session.actor if session else None, "poll": POLL_SECONDS, "path": request.url.path,
                   "done": _DONE.get(request.query_params.get("done", "")), **context}
        if request.headers.get("x-console-live") == "1" and "live" in template.blocks:
            body = "".join(template.blocks["live"](template.new_context(context)))
        else:
            body = template.render(context)
        return HTMLResponse(body, status_code=status, headers=_headers())

    # -- session and guard
    async def session(self, request: Request) -> Session | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            claims = await self.verifier.verify(f"Bearer {token}")
        except AuthFailure:
            return None
        return Session(token, claims, csrf_token(token))

    def page(self, handler: Callable[[Request, Session], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = await self.session(request)
            if session is None:
                if request.method != "GET":
                    return self.render(request, "error.html", None, 401, title="Not signed in",
                                       message="Your session is missing or has expired: sign in again.")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{request.scope['root_path']}/login?next={quote(target)}", status_code=303,
                                        headers=_headers())
            try:
                if request.method == "POST":
                    self.check_origin(request)
                    form = await read_form(request)
                    if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
                        raise Refused(403, "The form's CSRF token is missing or wrong: reload the page and try again.")
                    request.state.form = form
                return await handler(request, session)
            except Refused as exc:
                return self.render(request, "error.html", session, exc.status, title="Refused", message=exc.message)
            except self.ops.CommandError as exc:
                status = 404 if type(exc).__name__ == "NotFound" else 409
                return self.render(request, "error.html", session, status, title="Not done", message=str(exc))

        endpoint.__name__ = handler.__name__
        return endpoint

    @staticmethod
    def check_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is None:  # SameSite=Strict cookie and the CSRF token still apply
            return
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise Refused(403, "Cross-site request refused (the Origin is not this console's).")

    async def login(self, request: Request) -> Response:
        base = request.scope["root_path"]
        nxt = request.query_params.get("next", "")
        if not nxt.startswith(base + "/") or nxt.startswith("//") or "\\" in nxt:
            nxt = base + "/"
        if request.method == "GET":
            return self.render(request, "login.html", None, next=nxt, error=None)
        try:
            self.check_origin(request)
            form = await read_form(request)
        except Refused as exc:
            return self.render(request, "login.html", None, exc.status, next=nxt, error=exc.message)
        token = form.get("token", "").strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        try:
            claims = await self.verifier.verify(f"Bearer {token}")
        except AuthFailure as exc:
            return self.render(request, "login.html", None, exc.status, next=nxt, error=exc.message)
        response = RedirectResponse(nxt, status_code=303, headers=_headers())
        exp = claims.get("exp")
        max_age = max(1, int(exp - time.time())) if isinstance(exp, int | float) else 3600
        response.set_cookie(COOKIE, token, max_age=max_age, path=base + "/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        base = request.scope["root_path"]
        response = RedirectResponse(base + "/login", status_code=303, headers=_headers())
        response.delete_cookie(COOKIE, path=base + "/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        ext = name.rsplit(".", 1)[-1]
        if not re.fullmatch(r"[a-z]+\.(css|js)", name):
            return Response("not found", 404)
        body = resources.files("app.web.console").joinpath("static", name).read_bytes()
        return Response(body, media_type=_STATIC_TYPES[ext],
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})

    # -- pages
    async def overview(self, request: Request, session: Session) -> Response:
        data = await self._run(self._overview)
        return self.render(request, "overview.html", session, title="Overview", **data)

    def _overview(self, conn: Any) -> dict[str, Any]:
        snapshot = self.ops.health.health_snapshot(conn)
        drift: dict[str, list[dict[str, Any]]] = {}
        for row in self.ops.drift.drift_rows(conn, "24 hours"):
            drift.setdefault(row["integration_id"], []).append(row)
        last = {r["integration_id"]: r["last_success"] for r in self.q(conn, "console_last_success")}
        alerts: dict[str | None, int] = {}
        for alert in self.ops.alerts.list_alerts(conn, False, 1000):
            alerts[alert["integration_id"]] = alerts.get(alert["integration_id"], 0) + 1
        status = self.q(conn, "console_scheduler_status")
        tick = status[0] if status else None
        stalled = tick is None or tick["seconds_since_tick"] is None or tick["seconds_since_tick"] > self.stall_after
        return {"integrations": snapshot["integrations"], "workers": snapshot["workers"], "tick": tick,
                "last_tick": snapshot["last_tick"], "stalled": stalled, "drift": drift, "last_success": last,
                "alert_counts": alerts, "stall_after": self.stall_after}

    async def calendar(self, request: Request, session: Session) -> Response:
        raw_id = request.query_params.get("schedule", "")
        month = request.query_params.get("month", "")
        data = await self._run(self._calendar, int(raw_id) if raw_id.isdigit() else None, month)
        return self.render(request, "calendar.html", session, title="Periods", **data)

    def _calendar(self, conn: Any, schedule_id: int | None, month: str) -> dict[str, Any]:
        schedules = self.ops.schedules.list_schedules(conn)
        if schedule_id is None and schedules:
            schedule_id = schedules[0]["id"]
        found = self.q(conn, "console_schedule", id=schedule_id) if schedule_id is not None else []
        if not found:
            return {"schedules": schedules, "schedule": None, "weeks": [], "month": month, "prev": "", "next": "",
                    "month_name": "", "threshold": None, "counts": {}}
        schedule = found[0]
        zone = zoneinfo.ZoneInfo(schedule["timezone"])
        now = dt.datetime.now(dt.UTC)
        m = re.fullmatch(r"(\d{4})-(\d{2})", month)
        year, mon = (int(m[1]), int(m[2])) if m and 1 <= int(m[2]) <= 12 else (now.astimezone(zone).year,
                                                                                  now.astimezone(zone).month)
        start = dt.datetime(year, mon, 1, tzinfo=zone)
        after = dt.datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=zone)
        end = after - dt.timedelta(microseconds=1)
        periods = self.ops.schedules.schedule_periods(conn, schedule["id"], start, end)
        jobs = {r["id"]: r for r in self.q(conn, "console_jobs_by_ids",
                                           ids=[p["job_id"] for p in periods if p["job_id"] is not None])}
        missed = {r["key"]: r for r in self.q(conn, "console_missed_slots", id=schedule["id"],
                                              **{"from": start, "to": end})}
        threshold = float(self.q(conn, "console_drift_threshold")[0]["seconds"])
        by_day: dict[dt.date, list[dict[str, Any]]] = {}
        counts: dict[str, int] = {}
        for p in periods:
            cell = classify(p, jobs.get(p["job_id"]), missed.get(p["key"]), threshold, now, schedule["created_at"])
            cell["local"] = p["slot"].astimezone(zone)
            counts[cell["outcome"]] = counts.get(cell["outcome"], 0) + 1
            by_day.setdefault(cell["local"].date(), []).append(cell)
        weeks = []
        for week in calendar_module.Calendar(firstweekday=0).monthdatescalendar(year, mon):
            days = []
            for d in week:
                cells = by_day.get(d, [])
                # Many periods a day (hourly crons): every job and every gap stays a link or a
                # chip; periods with nothing to show yet (upcoming, before the schedule) fold into a count.
                shown = [c for c in cells if len(cells) == 1 or c["job_id"] or c["outcome"] not in ("pending", "none")]
                folded: dict[str, int] = {}
                for c in cells:
                    if c not in shown:
                        folded[c["text"]] = folded.get(c["text"], 0) + 1
                days.append({"date": d, "in_month": d.month == mon, "cells": shown, "folded": folded,
                             "many": len(cells) > 1})
            weeks.append(days)
        prev_month = f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"
        next_month = f"{year + 1}-01" if mon == 12 else f"{year}-{mon + 1:02d}"
        return {"schedules": schedules, "schedule": schedule, "weeks": weeks, "month": f"{year}-{mon:02d}",
                "month_name": start.strftime("%B %Y"), "prev": prev_month, "next": next_month,
                "threshold": threshold, "counts": counts}

    async def jobs(self, request: Request, session: Session) -> Response:
        qp = request.query_params
        filters = {k: qp.get(k, "").strip() for k in ("status", "integration", "kind", "since", "until", "text")}
        since, until = _instant(filters["since"], "since"), _instant(filters["until"], "until")
        status = filters["status"] if filters["status"] in STATUSES else None
        rows = await self._run(self.ops.jobs.list_jobs, status=status, integration_id=filters["integration"] or None,
                               kind=filters["kind"] or None, since=since, until=until, text=filters["text"] or None,
                               limit=200)
        return self.render(request, "jobs.html", session, title="Jobs", rows=rows, filters=filters,
                           statuses=STATUSES)

    async def job(self, request: Request, session: Session) -> Response:
        row, events = await self._run(self.ops.jobs.show_job, request.path_params["job_id"])
        return self.render(request, "job.html", session, title=f"Job {row['id']}", job=row, events=events,
                           payload=redact_payload(row.get("payload")), result=redact_payload(row.get("result")))

    async def schedules(self, request: Request, session: Session) -> Response:
        def load(conn: Any) -> list[dict[str, Any]]:
            rows = self.ops.schedules.list_schedules(conn)
            for row in rows:
                row["upcoming"] = self.ops.schedules.next_slots(conn, row, 3) or []
            return list(rows)

        rows = await self._run(load)
        today = dt.datetime.now(dt.UTC).date()
        return self.render(request, "schedules.html", session, title="Schedules", rows=rows,
                           default_from=(today - dt.timedelta(days=7)).isoformat(), default_to=today.isoformat())

    async def alerts(self, request: Request, session: Session) -> Response:
        def load(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return (self.ops.alerts.list_alerts(conn, False, 200),
                    [a for a in self.ops.alerts.list_alerts(conn, True, 100) if a["resolved_at"] is not None])

        open_alerts, recent = await self._run(load)
        return self.render(request, "alerts.html", session, title="Alerts", open_alerts=open_alerts, recent=recent)

    # -- actions: the first POST shows what will change, the second (confirm=yes) does it
    async def act(self, request: Request, session: Session) -> Response:
        form: dict[str, str] = request.state.form
        action = form.get("action", "")
        confirmed = form.get("confirm") == "yes"
        reason = form.get("reason", "").strip() or None
        handlers = {"job.retry": self._job_action, "job.cancel": self._job_action,
                    "schedule.enable": self._schedule_action, "schedule.disable": self._schedule_action,
                    "schedule.trigger": self._schedule_action, "schedule.backfill": self._schedule_action,
                    "alert.resolve": self._alert_action}
        if action not in handlers:
            raise Refused(400, f"Unknown action {action[:40]!r}.")
        return await handlers[action](request, session, action, form, confirmed, reason)

    def _confirm(self, request: Request, session: Session, action: str, form: dict[str, str], summary: str,
                 changes: list[str], back: str, **extra: Any) -> Response:
        hidden = {k: v for k, v in form.items() if k not in ("csrf", "confirm", "reason")}
        return self.render(request, "confirm.html", session, title="Confirm", action=action, hidden=hidden,
                           summary=summary, changes=changes, back=back, reason=form.get("reason", ""),
                           reason_required=action == "alert.resolve", **extra)

    def _done(self, request: Request, path: str, code: str) -> Response:
        return RedirectResponse(f"{request.scope['root_path']}{path}?done={code}", status_code=303, headers=_headers())

    async def _job_action(self, request: Request, session: Session, action: str, form: dict[str, str],
                          confirmed: bool, reason: str | None) -> Response:
        job_id = _int(form.get("job_id"), "job_id")
        if not confirmed:
            row, _ = await self._run(self.ops.jobs.show_job, job_id)
            verb = action.split(".")[1]
            if verb == "retry":
                changes = [f"status {row['status']} → queued, attempts {row['attempts']} → 0, runs now",
                           "the previous run stays in the timeline as a 'retried' event"]
            else:
                changes = [f"status {row['status']} → cancelled" if row["status"] == "queued" else
                           f"its worker is asked to stop it (status {row['status']})"]
            return self._confirm(request, session, action, form, f"{verb.capitalize()} job {job_id} "
                                 f"({row['integration_id']} {row['kind']}, {row['status']}) as {session.actor}",
                                 changes, f"/jobs/{job_id}")
        fn = self.ops.jobs.retry_job if action == "job.retry" else self.ops.jobs.cancel_job
        await self._run(fn, job_id, reason, session.actor)
        return self._done(request, f"/jobs/{job_id}", "retried" if action == "job.retry" else "cancelled")

    async def _schedule_action(self, request: Request, session: Session, action: str, form: dict[str, str],
                               confirmed: bool, reason: str | None) -> Response:
        schedule_id = _int(form.get("schedule_id"), "schedule_id")
        verb = action.split(".")[1]
        s = self.ops.schedules
        if verb in ("enable", "disable"):
            if not confirmed:
                rows = await self._run(self.q, "console_schedule", id=schedule_id)
                if not rows:
                    raise Refused(404, f"No schedule {schedule_id}.")
                row = rows[0]
                change = (f"enabled {row['enabled']} → {verb == 'enable'}; " +
                          ("missed slots are caught up by its catch-up policy" if verb == "enable"
                           else "the tick makes no jobs for it; queued jobs stay queued"))
                return self._confirm(request, session, action, form, f"{verb.capitalize()} schedule {schedule_id} "
                                     f"({row['integration_id']} {row['kind']} '{row['cron']}')", [change],
                                     "/schedules")
            await self._run(s.set_schedule_enabled, schedule_id, verb == "enable", reason, session.actor)
            return self._done(request, "/schedules", f"{verb}d")
        if verb == "trigger":
            start = end = await self._run(s.latest_slot, schedule_id)
        else:
            start = _day(form.get("from", ""), "from")
            end = _day(form.get("to", ""), "to") + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
            if end < start:
                raise Refused(422, "The range ends before it starts.")
        if not confirmed:
            periods, _, capped = await self._run(s.backfill, schedule_id, start, end, dry_run=True, reason=None)
            creates = sum(1 for p in periods if p["action"] == "create")
            summary = (f"{'Trigger' if verb == 'trigger' else 'Backfill'} schedule {schedule_id}: "
                       f"{len(periods)} period(s) from {start:%Y-%m-%d %H:%M%z} to {capped:%Y-%m-%d %H:%M%z}; "
                       f"{creates} job(s) would be created (dry run: nothing changed yet)")
            return self._confirm(request, session, action, form, summary,
                                 [f"{creates} new job(s); periods that have a job keep it (one job per period)"],
                                 "/schedules", periods=periods)
        await self._run(s.backfill, schedule_id, start, end, dry_run=False, reason=reason, yes=True,
                        action=action, who=session.actor)
        return self._done(request, f"/calendar?schedule={schedule_id}" if verb == "trigger" else "/schedules",
                          "triggered" if verb == "trigger" else "backfilled")

    async def _alert_action(self, request: Request, session: Session, action: str, form: dict[str, str],
                            confirmed: bool, reason: str | None) -> Response:
        alert_id = _int(form.get("alert_id"), "alert_id")
        if not confirmed or reason is None:
            rows = await self._run(self.q, "console_alert", id=alert_id)
            if not rows:
                raise Refused(404, f"No alert {alert_id}.")
            alert = rows[0]
            return self._confirm(request, session, action, form, f"Resolve alert {alert_id} ({alert['kind']} "
                                 f"{alert['subject']}): {alert['message']}",
                                 ["resolved_at is set to now; it reopens if the condition recurs",
                                  "the reason and your name are recorded in operator_actions"], "/alerts",
                                 missing_reason=confirmed and reason is None)
        row, _ = await self._run(self.ops.alerts.resolve_alert, alert_id, reason, session.actor)
        return self._done(request, "/alerts", "resolved" if row is not None else "already")


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (no multipart: the console's forms have no files), size-capped."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Refused(415, "Forms are sent as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "The form is too large.")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "The form cannot be read.") from None
    return {k: v[0] for k, v in parsed.items()}


def classify(period: dict[str, Any], job: dict[str, Any] | None, missed: dict[str, Any] | None, threshold: float,
             now: dt.datetime, created_at: dt.datetime) -> dict[str, Any]:
    """One period's outcome: exported, late, failed, pending, missed, or none (before the schedule)."""
    cell: dict[str, Any] = {"period": period, "job": job, "job_id": period["job_id"]}
    if job is not None:
        status = job["status"]
        if status == "succeeded":
            late = job["drift_seconds"] is not None and job["drift_seconds"] > threshold
            cell.update(outcome="late" if late else "exported",
                        text=f"exported late (drift {_seconds(job['drift_seconds'])})" if late else "exported once")
        elif status in ("failed", "cancelled"):
            cell.update(outcome="failed", text=status)
        else:
            cell.update(outcome="pending", text=status)
    elif missed is not None:
        cell.update(outcome="missed", text="missed (alert)")
    elif period.get("key_state") is not None:
        cell.update(outcome="exported", text=f"exported (job pruned; key {period['key_state']})")
    elif period["slot"] > now:
        cell.update(outcome="pending", text="upcoming")
    elif period["slot"] < created_at:
        cell.update(outcome="none", text="before the schedule existed")
    else:
        cell.update(outcome="missed", text="missed (no job)")
    return cell


def _headers() -> dict[str, str]:
    return {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}


def _int(raw: str | None, name: str) -> int:
    if raw is None or not raw.isdigit() or len(raw) > 18:
        raise Refused(422, f"{name} must be a positive integer.")
    return int(raw)


def _instant(raw: str, name: str) -> dt.datetime | None:
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise Refused(422, f"{name}: not an ISO 8601 date or instant: {raw[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _day(raw: str, name: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), tzinfo=dt.UTC)
    except ValueError:
        raise Refused(422, f"{name}: give a date as YYYY-MM-DD, got {raw[:40]!r}") from None


def _when(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _seconds(value: Any) -> str:
    if value is None:
        return "—"
    number = float(value)
    return f"{number:.1f} s" if abs(number) < 120 else f"{number / 60:.1f} min"


def build(verifier: Verifier, database_url: str, ops: Any, stall_after: float = 120.0) -> Console:
    return Console(verifier, database_url, ops, stall_after)
