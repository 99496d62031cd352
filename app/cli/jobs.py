"""Operator commands on jobs: `enqueue` and `jobs list|show|retry|cancel`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

import psycopg

from app.cli import operator
from app.cli.context import CommandError, NotFound, Row, TimedOut, connect, fetch_all, fetch_one, json_arg
from app.cli.output import LiveLine, print_json, print_record, print_table

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = {"succeeded", "failed", "cancelled"}
RETRYABLE = ["failed", "cancelled"]
CANCELLABLE = ["queued", "running"]
EVENT_COLUMNS = ["at", "event", "status", "attempt", "worker_id", "actor", "reason", "error_class", "message"]
BULK_COLUMNS = ["id", "integration_id", "kind", "status", "attempts", "scheduled_for", "finished_at", "last_error"]
LIST_COLUMNS = ["id", "integration_id", "kind", "status", "attempts", "scheduled_for", "started_at",
                "drift_seconds", "last_error"]


def iso_instant(text: str) -> dt.datetime:
    """argparse type: an ISO 8601 instant; a naive one is refused rather than guessed."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r} (e.g. 2024-05-31T22:00:00Z)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset: add Z or +02:00 so the instant is unambiguous")
    return value


# -- enqueue
def cmd_enqueue(args: argparse.Namespace) -> int:
    payload = json_arg(args.payload, "--payload") or {}
    with connect(args) as conn:
        with conn.transaction():
            operator.act(conn, None)  # the 'enqueued' event names the OS user
            row = fetch_one(conn, "enqueue_job", integration_id=args.integration, kind=args.kind,
                            payload=json.dumps(payload), scheduled_for=args.scheduled_for,
                            idempotency_key=args.key, priority=args.priority, max_attempts=args.max_attempts,
                            run_after=None, source="cli")
        assert row is not None  # a function call always returns its row
        result = {"job_id": row["job_id"], "duplicate": row["duplicate"]}
        _report(args, result, f"job {row['job_id']} " + ("already existed for this key (duplicate)"
                                                         if row["duplicate"] else "enqueued"))
        return wait_and_report(conn, args, row["job_id"]) if args.wait else 0


def _report(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print_json(data)
    else:
        print(text)


# -- jobs: plain functions (the CLI and the web console call them), then the commands
def list_jobs(conn: psycopg.Connection[Row], *, status: str | None = None, integration_id: str | None = None,
              kind: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
              text: str | None = None, limit: int = 50) -> list[Row]:
    """The most recent jobs, newest first; ``since``/``until`` bound ``scheduled_for``, ``text``
    is a case-insensitive substring of ``last_error``."""
    return fetch_all(conn, "cli_jobs_list", status=status, integration_id=integration_id, kind=kind, since=since,
                     until=until, text=text or None, limit=limit)


def show_job(conn: psycopg.Connection[Row], job_id: int) -> tuple[Row, list[Row]]:
    """One job and its event timeline (oldest first); NotFound when there is no such job."""
    row = fetch_one(conn, "get_job", id=job_id)
    if row is None:
        raise NotFound(f"no job {job_id}: list jobs with `integration-dispatch jobs list`")
    return row, fetch_all(conn, "job_events", id=job_id)


def retry_job(conn: psycopg.Connection[Row], job_id: int, reason: str | None, who: str | None = None) -> Row:
    """Put one failed or cancelled job back in the queue, as ``who`` (default the OS user)."""
    with conn.transaction():
        operator.act(conn, reason, who)
        row = fetch_one(conn, "cli_jobs_retry_many", ids=[job_id])
        if row is None:
            raise _why_not(conn, job_id, "retried", "only failed or cancelled jobs can be retried")
        # Inside the transaction: the notification goes out at commit, when the row is visible.
        fetch_one(conn, "cli_notify_jobs")
    return row


def cancel_job(conn: psycopg.Connection[Row], job_id: int, reason: str | None, who: str | None = None) -> Row:
    """Cancel one queued job, or ask a running job's worker to stop it; ``was`` says which."""
    with conn.transaction():
        operator.act(conn, reason, who)
        row = fetch_one(conn, "cli_jobs_cancel_many", ids=[job_id])
        if row is None:
            raise _why_not(conn, job_id, "cancelled", "only queued or running jobs can be cancelled")
    return row


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = list_jobs(conn, status=args.status, integration_id=args.integration, kind=args.kind,
                         since=args.since, until=args.until, text=args.text, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LIST_COLUMNS, empty="no jobs match", width=50)
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        row, events = show_job(conn, args.id)
    if args.json:
        print_json({**row, "events": events})
    else:
        print_record(row)
        print("\nhistory")
        print_table(events, EVENT_COLUMNS, empty="  (none recorded)", width=70)
    return 0


# -- retry and cancel: one job, or many through filters
def cmd_jobs_retry(args: argparse.Namespace) -> int:
    if _bulk(args):
        return _bulk_action(args, "retry", RETRYABLE, "cli_jobs_retry_many", "queued again")
    with connect(args) as conn:
        row = retry_job(conn, args.ids[0], args.reason)
    _report(args, row, f"job {row['id']} queued again (attempts reset, runs now; the previous run is in "
                       "`jobs show`)")
    if args.wait:
        with connect(args) as conn:
            return wait_and_report(conn, args, row["id"])
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    if _bulk(args):
        return _bulk_action(args, "cancel", CANCELLABLE, "cli_jobs_cancel_many", "cancelled or asked to stop")
    job_id = args.ids[0]
    with connect(args) as conn:
        row = cancel_job(conn, job_id, args.reason)
        if row["was"] != "running":
            _report(args, row, f"job {job_id} cancelled (was {row['was']})")
            return 0
        # A running job: its worker stops the adapter call at the vendor boundary (or lets a
        # write already sent finish), then records what happened.
        _report(args, row, f"job {job_id} is running on worker {row['worker_id']}: cancel requested; its worker "
                           "stops it before the next vendor write (a write already sent is let finish)")
        if args.wait:
            return wait_and_report(conn, args, job_id)
    return 0


def _bulk(args: argparse.Namespace) -> bool:
    """One id and no filter is the single-job form (with --wait); anything else is a bulk action."""
    filters = [args.status, args.integration, args.kind, args.since, args.until, args.schedule]
    if not args.ids and not any(f is not None for f in filters):
        raise CommandError("say which jobs: give job ids, or filters such as --status failed --since "
                           "2024-06-01T00:00:00Z (add --dry-run to see them first)")
    bulk = len(args.ids) != 1 or any(f is not None for f in filters) or args.dry_run
    if bulk and args.wait:
        raise CommandError("--wait follows one job: give a single job id without filters")
    return bulk


def _bulk_action(args: argparse.Namespace, verb: str, allowed: list[str], query_name: str, done: str) -> int:
    params = {"statuses": [args.status] if args.status else allowed, "ids": args.ids or None,
              "integration_id": args.integration, "kind": args.kind, "since": args.since, "until": args.until,
              "schedule_id": args.schedule}
    with connect(args) as conn, conn.transaction():
        rows = fetch_all(conn, "cli_jobs_select", **params)
        if not args.dry_run:
            operator.check_cap(len(rows), args.yes, "jobs")
            operator.act(conn, args.reason)
            rows = fetch_all(conn, query_name, ids=[r["id"] for r in rows]) if rows else []
            if rows and verb == "retry":
                fetch_one(conn, "cli_notify_jobs")
    if args.json:
        print_json({"action": verb, "dry_run": args.dry_run, "count": len(rows), "jobs": rows})
        return 0
    if args.dry_run:
        print(f"dry run: {len(rows)} job(s) would be {done} (nothing changed)")
        print_table(rows, BULK_COLUMNS, empty="  (no job matches)", width=50)
    else:
        print(f"{len(rows)} job(s) {done}" + (f" by {operator.actor()}" if rows else ""))
        print_table(rows, list(rows[0]) if rows else ["id"], empty="  (no job matches)", width=50)
    return 0


def _why_not(conn: psycopg.Connection[Row], job_id: int, verb: str, rule: str) -> CommandError:
    row = fetch_one(conn, "cli_job_status", id=job_id)
    if row is None:
        return NotFound(f"no job {job_id}: list jobs with `integration-dispatch jobs list`")
    hint = " (enqueue a new job with a new --key to run it again)" if row["status"] == "succeeded" else ""
    return CommandError(f"job {job_id} is {row['status']} and cannot be {verb}: {rule}{hint}")


# -- waiting, with a live line
def wait_and_report(conn: psycopg.Connection[Row], args: argparse.Namespace, job_id: int) -> int:
    """Follow a job to a terminal state: 0 if it succeeded, 1 if it failed or was cancelled."""
    row = wait_for_job(conn, job_id, args.timeout)
    if row["status"] not in TERMINAL:
        raise TimedOut(f"job {job_id} is still {row['status']} after {args.timeout:g}s: "
                           "is a daemon running? check `integration-dispatch health`")
    # With --json, stdout holds only the JSON document.
    print(f"job {job_id} {row['status']}" + (f": {row['last_error']}" if row["last_error"] else ""),
          file=sys.stderr if args.json else sys.stdout)
    return 0 if row["status"] == "succeeded" else 1


def wait_for_job(conn: psycopg.Connection[Row], job_id: int, timeout: float, interval: float = 0.2) -> Row:
    line = LiveLine()
    started = time.monotonic()
    try:
        while True:
            row = fetch_one(conn, "cli_job_status", id=job_id)
            if row is None:
                raise NotFound(f"job {job_id} disappeared while waiting (pruned?)")
            elapsed = time.monotonic() - started
            line.update(f"job {job_id}: {row['status']} ({elapsed:.0f}s)")
            if row["status"] in TERMINAL or elapsed >= timeout:
                return row
            time.sleep(interval)
    finally:
        line.done()


# -- parser
def _wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="follow the job until it finishes (exit 0 if it succeeded)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default: 120)")


def register(sub: Any) -> None:
    p = sub.add_parser("enqueue", help="enqueue one job (through dispatch.enqueue_job, source 'cli')",
                       description="Enqueue one job. A repeated --key returns the first job (duplicate).")
    p.add_argument("integration", help="integration id, e.g. acme-xledger")
    p.add_argument("kind", help="job kind, e.g. sync or export")
    p.add_argument("--payload", help="job payload as a JSON object (default: {})")
    p.add_argument("--scheduled-for", type=iso_instant, help="the slot the job stands for, ISO 8601 with offset "
                   "(default: now); it also becomes the earliest start")
    p.add_argument("--key", help="idempotency key (default: one per job)")
    p.add_argument("--priority", type=int, default=0, help="lower runs first (default: 0)")
    p.add_argument("--max-attempts", type=int, help="attempts before the job fails (default: 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _wait_options(p)
    p.set_defaults(func=cmd_enqueue)

    jobs = sub.add_parser("jobs", help="inspect, retry and cancel jobs").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = jobs.add_parser("list", help="the most recent jobs, newest first")
    p.add_argument("--status", choices=STATUSES, help="only jobs in this state")
    p.add_argument("--integration", help="only this integration's jobs")
    p.add_argument("--kind", help="only jobs of this kind")
    p.add_argument("--since", type=iso_instant, help="only jobs scheduled for this instant or later (ISO 8601)")
    p.add_argument("--until", type=iso_instant, help="only jobs scheduled for before this instant (ISO 8601)")
    p.add_argument("--text", help="only jobs whose last error contains this text (case-insensitive)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_list)

    p = jobs.add_parser("show", help="one job: timestamps, drift, attempts, last error, result")
    p.add_argument("id", type=int, help="job id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_show)

    for verb, text, allowed in (
            ("retry", "put failed or cancelled jobs back in the queue (attempts reset, history kept)", RETRYABLE),
            ("cancel", "cancel queued jobs, ask running jobs' workers to stop them", CANCELLABLE)):
        p = jobs.add_parser(verb, help=text, description=f"{text[0].upper()}{text[1:]}. One job id (with --wait), "
                            "several ids, or filters; --dry-run lists what would change.")
        p.add_argument("ids", type=int, nargs="*", metavar="ID", help="job ids (or use the filters)")
        p.add_argument("--status", choices=allowed, help=f"only jobs in this state (default: {' and '.join(allowed)})")
        p.add_argument("--integration", help="only this integration's jobs")
        p.add_argument("--kind", help="only jobs of this kind")
        p.add_argument("--since", type=iso_instant, help="only jobs scheduled for this instant or later (ISO 8601)")
        p.add_argument("--until", type=iso_instant, help="only jobs scheduled for before this instant (ISO 8601)")
        p.add_argument("--schedule", type=int, help="only jobs of this schedule id")
        operator.bulk_options(p, "retried" if verb == "retry" else "cancelled")
        operator.reason_option(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        _wait_options(p)
        p.set_defaults(func=cmd_jobs_retry if verb == "retry" else cmd_jobs_cancel)
