"""What both emulators share: fault queue, request log, control endpoints, request pipeline.

A test (in-process) pushes faults on ``emulator.faults``; another process (the daemon
under test, the demo) posts the same fields to ``POST /_emulator/faults``. Every request,
faulted or not, lands in the request log so a test can count calls and measure the waits
between retries.

Late processing (``late=<seconds>``, or ``kind="late:<seconds>"``) is what real vendors do
under load: the request is accepted, the client never gets an answer (the connection is held
for ``delay`` seconds, long enough for its read to time out, then closed), and the write is
applied ``late`` seconds after it arrived, whoever asks in the meantime.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass
class Fault:
    """One injected failure, applied to the next ``times`` matching requests."""

    #: HTTP status to answer with (None: the vendor's normal status for the fault).
    status: int | None = None
    #: Retry-After header value: seconds, or an HTTP-date string.
    retry_after: float | str | None = None
    times: int = 1
    #: Seconds to wait before answering (a slow vendor; with ``after`` a lost response).
    delay: float = 0.0
    #: Close the connection instead of answering (the client sees a reset).
    reset: bool = False
    #: Apply delay/reset *after* the request was processed: the write happened,
    #: the client does not learn it (the ambiguous-outcome case).
    after: bool = False
    #: Only requests whose kind or operation equals this (None: any request).
    match: str | None = None
    #: Vendor error code (Xledger GraphQL code, BC OData error code).
    code: str | None = None
    message: str | None = None
    #: Xledger INSUFFICIENT_CREDITS: ``extensions.resetAt`` (ISO datetime).
    reset_at: str | None = None
    #: Expire every issued OAuth token before handling (BC).
    expire_token: bool = False
    #: Late processing: apply the request this many seconds after it arrived; the client
    #: gets no answer (the connection is held ``delay`` seconds, then closed).
    late: float | None = None
    #: Shorthand for the fault's shape, e.g. ``"late:5"`` (= ``late=5``).
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None:
            name, _, value = self.kind.partition(":")
            if name != "late" or not value:
                raise TypeError(f"unknown fault kind {self.kind!r} (known: 'late:<seconds>')")
            self.late = float(value)
        if self.late is not None and self.late < 0:
            raise TypeError("late must be >= 0 seconds")

    def matches(self, kind: str, operation: str) -> bool:
        return self.match is None or self.match in (kind, operation)


class FaultQueue:
    """Faults in push order; each request takes the first one that matches it."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def push(self, **fields: Any) -> Fault:
        fault = Fault(**fields)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, kind: str, operation: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(kind, operation):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]


@dataclass
class LogEntry:
    method: str
    path: str
    kind: str
    operation: str
    #: HTTP status sent; 0 when the connection was dropped (an injected reset).
    status: int = 0
    #: Wall-clock start (epoch seconds) and duration; differences give retry waits.
    time: float = field(default_factory=time.time)
    duration: float = 0.0
    fault: str | None = None
    query: str = ""


class RequestLog:
    """Thread-safe list of requests; the emulator runs in a server thread, tests read it."""

    def __init__(self) -> None:
        self._entries: list[LogEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: LogEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, kind: str | None = None, operation: str | None = None) -> list[LogEntry]:
        with self._lock:
            items = list(self._entries)
        return [
            e
            for e in items
            if (kind is None or e.kind == kind) and (operation is None or e.operation == operation)
        ]

    def count(self, kind: str | None = None, operation: str | None = None) -> int:
        return len(self.entries(kind, operation))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.entries()]


class ConnectionReset(Exception):
    """Raised after the response head is sent: the server drops the connection mid-answer."""


class _HideEmulatedResets(logging.Filter):
    """uvicorn logs an app exception with a traceback; an injected reset is not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionReset)


logging.getLogger("uvicorn.error").addFilter(_HideEmulatedResets())


async def apply_delay(fault: Fault | None, *, after: bool) -> None:
    if fault is not None and fault.after == after and fault.delay > 0:
        await asyncio.sleep(fault.delay)


def fault_label(fault: Fault | None) -> str | None:
    if fault is None:
        return None
    parts = [str(fault.status or fault.code or ""), "reset" if fault.reset else ""]
    parts.append(f"delay={fault.delay}" if fault.delay else "")
    parts.append(f"late={fault.late:g}" if fault.late is not None else "")
    return " ".join(p for p in parts if p) or "fault"


async def reset_response(send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Promise a body, then fail: uvicorn closes the socket and the client sees a reset."""
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
    )
    raise ConnectionReset("emulated connection reset")




class EmulatorApp:
    """An ASGI app: vendor routes behind the fault pipeline, control routes at /_emulator."""

    def __init__(self) -> None:
        self.faults = FaultQueue()
        self.log = RequestLog()
        self._control = Starlette(routes=self._control_routes())
        #: Late requests accepted and not yet applied, and when each applied one was applied.
        self.late_pending = 0
        self.late_applied: list[LogEntry] = []
        self._late_tasks: set[asyncio.Task[None]] = set()
        self._late_lock = threading.Lock()

    # -- what each vendor emulator provides -------------------------------------------
    def classify(self, request: Request, body: bytes) -> tuple[str, str]:
        """(kind, operation) of a vendor request, e.g. ("write", "addGLImportItems")."""
        raise NotImplementedError

    async def handle(self, request: Request, body: bytes, operation: str) -> Response:
        raise NotImplementedError

    def fault_response(self, fault: Fault) -> Response | None:
        """The vendor's answer for an injected fault (None: no answer, just delay/reset)."""
        raise NotImplementedError

    def reset_data(self) -> None:
        raise NotImplementedError

    def documents(self) -> dict[str, Any]:
        raise NotImplementedError

    def seed(self, count: int) -> None:
        raise NotImplementedError

    def expire_tokens(self) -> None:
        """Only emulators with expiring tokens do something here."""

    # -- the pipeline ----------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self._control(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        kind, operation = self.classify(request, body)
        entry = LogEntry(request.method, request.url.path, kind, operation)
        entry.query = request.url.query
        # Logged before answering, so a client that got its answer finds its entry.
        self.log.add(entry)
        await self._serve(request, body, entry, send)

    async def _serve(self, request: Request, body: bytes, entry: LogEntry, send: Send) -> None:
        fault = self.faults.take(entry.kind, entry.operation)
        entry.fault = fault_label(fault)
        if fault is not None and fault.late is not None:
            await self._serve_late(request, body, entry, fault, send)
            return
        await apply_delay(fault, after=False)
        if fault is not None and fault.expire_token:
            self.expire_tokens()
        if fault is not None and fault.reset and not fault.after:
            await self._reset(entry, send)
        response = self.fault_response(fault) if fault is not None and not fault.after else None
        if response is None:
            response = await self.handle(request, body, entry.operation)
        await apply_delay(fault, after=True)
        if fault is not None and fault.reset and fault.after:
            await self._reset(entry, send)
        entry.status, entry.duration = response.status_code, time.time() - entry.time
        await response(request.scope, request.receive, send)

    async def _serve_late(self, request: Request, body: bytes, entry: LogEntry, fault: Fault,
                          send: Send) -> None:
        """Accept, schedule the real handling ``fault.late`` s after arrival, never answer."""
        assert fault.late is not None
        with self._late_lock:
            self.late_pending += 1
        task = asyncio.get_running_loop().create_task(self._apply_late(request, body, entry, fault.late))
        self._late_tasks.add(task)
        task.add_done_callback(self._late_tasks.discard)
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        await self._reset(entry, send)

    async def _apply_late(self, request: Request, body: bytes, entry: LogEntry, late: float) -> None:
        await asyncio.sleep(max(0.0, entry.time + late - time.time()))
        try:
            await self.handle(request, body, entry.operation)  # the answer goes nowhere
        finally:
            with self._late_lock:
                self.late_pending -= 1
                self.late_applied.append(entry)

    def wait_late_applied(self, count: int = 1, timeout: float = 30.0) -> None:
        """Block (a test thread) until ``count`` late requests have been applied."""
        deadline = time.monotonic() + timeout
        while len(self.late_applied) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.late_applied)} of {count} late requests applied after {timeout} s")
            time.sleep(0.02)

    @staticmethod
    async def _reset(entry: LogEntry, send: Send) -> None:
        entry.duration = time.time() - entry.time
        await reset_response(send)

    def reset(self) -> None:
        """Back to the freshly started state: no faults, no log, seed data only."""
        self.faults.clear()
        self.log.clear()
        for task in list(self._late_tasks):  # they run on the server's loop, maybe another thread
            task.get_loop().call_soon_threadsafe(task.cancel)
        with self._late_lock:
            self.late_pending = 0
            self.late_applied = []
        self.reset_data()

    def settings(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name.startswith("_") or not hasattr(self, name):
                raise AttributeError(f"unknown setting {name!r}")
            setattr(self, name, value)

    # -- control endpoints -----------------------------------------------------------
    def _control_routes(self) -> list[Route]:
        return [
            Route("/_emulator/faults", self._post_fault, methods=["POST"]),
            Route("/_emulator/faults", self._get_faults, methods=["GET"]),
            Route("/_emulator/log", self._get_log, methods=["GET"]),
            Route("/_emulator/documents", self._get_documents, methods=["GET"]),
            Route("/_emulator/reset", self._post_reset, methods=["POST"]),
            Route("/_emulator/seed", self._post_seed, methods=["POST"]),
            Route("/_emulator/settings", self._post_settings, methods=["POST"]),
            Route("/_emulator/expire-tokens", self._post_expire, methods=["POST"]),
        ]

    async def _post_fault(self, request: Request) -> Response:
        try:
            fault = self.faults.push(**(await request.json()))
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(fault), status_code=201)

    async def _get_faults(self, request: Request) -> Response:
        return JSONResponse(self.faults.pending())

    async def _get_log(self, request: Request) -> Response:
        return JSONResponse(self.log.as_json())

    async def _get_documents(self, request: Request) -> Response:
        return JSONResponse(self.documents())

    async def _post_reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)

    async def _post_seed(self, request: Request) -> Response:
        self.seed(int((await request.json()).get("count", 0)))
        return Response(status_code=204)

    async def _post_settings(self, request: Request) -> Response:
        try:
            self.settings(await request.json())
        except (AttributeError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return Response(status_code=204)

    async def _post_expire(self, request: Request) -> Response:
        self.expire_tokens()
        return Response(status_code=204)
