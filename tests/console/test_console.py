"""The console in a real browser against a real daemon: login, overview, periods calendar, a
retry from the job page recorded with the actor; and the refusals (no session, no CSRF)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import psycopg
import pytest
from selenium.webdriver.common.by import By

from tests.console.conftest import ACTOR, ARTIFACTS
from tests.support import DaemonProcess, wait_for

pytestmark = pytest.mark.acceptance


def shot(browser: Any, name: str) -> None:
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def login(browser: Any, daemon: DaemonProcess, token: str) -> None:
    browser.get(daemon.url + "/console/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "sign-in").click()
    wait_for(lambda: "/login" not in browser.current_url, 10, message="the login to redirect")


def test_unauthenticated_console_redirects_to_login(daemon: DaemonProcess, browser: Any) -> None:
    for path in ("/console", "/console/", "/console/jobs", "/console/calendar"):
        r = httpx.get(daemon.url + path, follow_redirects=True)
        assert r.status_code == 200 and "/console/login" in str(r.url), (path, r.url)
        assert 'name="token"' in r.text
    # Never public: no page content without a session, and a POST is refused outright.
    r = httpx.post(daemon.url + "/console/act", data={"action": "job.retry", "job_id": "1"})
    assert r.status_code == 401
    browser.get(daemon.url + "/console/")
    assert "/console/login" in browser.current_url
    shot(browser, "login")


def test_login_with_a_wrong_token_is_refused(daemon: DaemonProcess) -> None:
    r = httpx.post(daemon.url + "/console/login", data={"token": "a.b.c"})
    assert r.status_code == 401 and "set-cookie" not in r.headers


def test_login_and_overview(daemon: DaemonProcess, browser: Any, token: str) -> None:
    login(browser, daemon, token)
    cookie = browser.get_cookie("dispatch_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.current_url.rstrip("/").endswith("/console")
    table = browser.find_element(By.ID, "integrations").text
    assert "acme-noop" in table and "beta-noop" in table
    assert "Scheduler:" in browser.find_element(By.ID, "scheduler-status").text
    assert ACTOR in browser.find_element(By.CLASS_NAME, "who").text
    shot(browser, "overview")


def test_calendar_shows_a_succeeded_period_as_exported(daemon: DaemonProcess, browser: Any, token: str,
                                                       console_db: str) -> None:
    with psycopg.connect(console_db, autocommit=True) as conn:
        # The threshold the calendar colours 'late' by: a triggered period runs long after its
        # slot, so for this test only drift over a day counts as late.
        conn.execute("INSERT INTO dispatch.settings (key, value) VALUES ('drift_alert_seconds', '86400') "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        schedule_id = conn.execute("INSERT INTO dispatch.schedules (integration_id, kind, cron) "
                                   "VALUES ('acme-noop', 'export', '0 * * * *') RETURNING id").fetchone()[0]
    login(browser, daemon, token)
    # Trigger now, through the console: the confirmation shows the dry run first.
    browser.get(daemon.url + "/console/schedules")
    browser.find_element(By.ID, f"trigger-{schedule_id}").click()
    assert "would be created" in browser.find_element(By.ID, "confirm-h").text
    assert "create" in browser.find_element(By.ID, "dry-run").text
    shot(browser, "confirm-trigger")
    browser.find_element(By.ID, "confirm").click()
    with psycopg.connect(console_db, autocommit=True) as conn:
        job = wait_for(lambda: conn.execute("SELECT id, scheduled_for FROM dispatch.jobs WHERE schedule_id = %s "
                                            "AND status = 'succeeded'", (schedule_id,)).fetchone(), 20,
                       message="the triggered job to succeed")
        actor = conn.execute("SELECT actor FROM dispatch.operator_actions WHERE action = 'schedule.trigger' "
                             "AND subject = %s", (f"schedule:{schedule_id}",)).fetchone()
    assert actor == (ACTOR,)
    job_id, slot = job
    month = slot.astimezone(dt.UTC).strftime("%Y-%m")
    browser.get(f"{daemon.url}/console/calendar?schedule={schedule_id}&month={month}")
    cell = browser.find_element(By.CSS_SELECTOR, f'#calendar a[href$="/console/jobs/{job_id}"]')
    assert cell.get_attribute("data-outcome") == "exported" and "exported once" in cell.text
    shot(browser, "calendar")
    cell.click()
    assert browser.find_element(By.ID, "job-status").text == "succeeded"


def test_retry_from_the_job_page_records_an_event_with_the_actor(daemon: DaemonProcess, browser: Any, token: str,
                                                                  console_db: str) -> None:
    with psycopg.connect(console_db, autocommit=True) as conn:
        job_id = conn.execute("SELECT job_id FROM dispatch.enqueue_job(%s, 'sync', %s::jsonb, source => 'api')",
                              ("beta-noop", json.dumps({"fail": "permanent", "api_token": "hunter2-secret"}))
                              ).fetchone()[0]
        wait_for(lambda: conn.execute("SELECT status = 'failed' FROM dispatch.jobs WHERE id = %s",
                                      (job_id,)).fetchone()[0], 20, message="the job to fail")
    login(browser, daemon, token)
    browser.get(f"{daemon.url}/console/jobs?status=failed&integration=beta-noop")
    browser.find_element(By.CSS_SELECTOR, f'#jobs a[href$="/console/jobs/{job_id}"]').click()
    assert browser.find_element(By.ID, "job-status").text == "failed"
    assert "hunter2-secret" not in browser.page_source  # the payload is shown redacted
    shot(browser, "job-failed")
    browser.find_element(By.ID, "retry").click()
    assert "failed → queued" in browser.find_element(By.ID, "changes").text
    browser.find_element(By.ID, "reason").send_keys("vendor fixed")
    shot(browser, "confirm-retry")
    browser.find_element(By.ID, "confirm").click()
    assert f"/console/jobs/{job_id}" in browser.current_url
    with psycopg.connect(console_db, autocommit=True) as conn:  # the POST may still be in flight
        row = wait_for(lambda: conn.execute("SELECT actor, reason FROM dispatch.job_events WHERE job_id = %s "
                                            "AND event = 'retried'", (job_id,)).fetchone(), 10,
                       message="the retried event")
    assert row == (ACTOR, "vendor fixed")
    # The page shows the new event (and keeps polling: the job fails again, the page follows).
    events = browser.find_element(By.ID, "events")
    assert ACTOR in events.find_element(By.CSS_SELECTOR, 'tr[data-event="retried"] .actor').text
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#live[data-refreshed]"), 15,
             message="a live refresh of the job page")
    shot(browser, "job-retried")


def test_a_post_without_the_csrf_token_is_refused(daemon: DaemonProcess, token: str) -> None:
    with httpx.Client(base_url=daemon.url) as client:
        r = client.post("/console/login", data={"token": token})
        assert r.status_code == 303 and "dispatch_console" in client.cookies
        r = client.post("/console/act", data={"action": "alert.resolve", "alert_id": "1", "confirm": "yes"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = client.post("/console/act", data={"action": "alert.resolve", "alert_id": "1", "csrf": "x"},
                        headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "Cross-site" in r.text
