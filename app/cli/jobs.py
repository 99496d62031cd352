"""Operator commands on jobs: `enqueue` and `jobs list|show|retry|cancel`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

import psycopg

from app.cli.context import CommandError, NotFound, Row, connect, fetch_all, fetch_one, json_arg
from app.cli.output import LiveLine, print_json, print_record, print_table

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = {"succeeded", "failed", "cancelled"}
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


# -- jobs
def cmd_jobs_list(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        rows = fetch_all(conn, "cli_jobs_list", status=args.status, integration_id=args.integration,
                         limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LIST_COLUMNS, empty="no jobs match", width=50)
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        row = fetch_one(conn, "get_job", id=args.id)
    if row is None:
        raise NotFound(f"no job {args.id}: list jobs with `integration-dispatch jobs list`")
    if args.json:
        print_json(row)
    else:
        print_record(row)
    return 0


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    with connect(args) as conn, conn.transaction():
        row = fetch_one(conn, "cli_job_retry", id=args.id)
        if row is None:
            raise _why_not(conn, args.id, "retried", "only failed or cancelled jobs can be retried")
        # Inside the transaction: the notification goes out at commit, when the row is visible.
        fetch_one(conn, "cli_notify_jobs")
    _report(args, row, f"job {args.id} queued again (attempts reset, runs now)")
    if args.wait:
        with connect(args) as conn:
            return wait_and_report(conn, args, args.id)
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        row = fetch_one(conn, "cli_job_cancel", id=args.id)
        if row is None:
            raise _why_not(conn, args.id, "cancelled", "only queued or running jobs can be cancelled")
    running = row["was"] == "running"
    note = f" (worker {row['worker_id']} may finish its call; its result is discarded)" if running else ""
    _report(args, row, f"job {args.id} cancelled (was {row['was']}){note}")
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
        raise CommandError(f"job {job_id} is still {row['status']} after {args.timeout:g}s: "
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
    p.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_list)

    p = jobs.add_parser("show", help="one job: timestamps, drift, attempts, last error, result")
    p.add_argument("id", type=int, help="job id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_show)

    p = jobs.add_parser("retry", help="put a failed or cancelled job back in the queue, attempts reset")
    p.add_argument("id", type=int, help="job id")
    p.add_argument("--json", action="store_true", help="print JSON")
    _wait_options(p)
    p.set_defaults(func=cmd_jobs_retry)

    p = jobs.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("id", type=int, help="job id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_cancel)
