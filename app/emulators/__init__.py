"""Loopback emulators of the vendors' protocols, for tests and the demo.

``XledgerEmulator`` (GraphQL) and ``BusinessCentralEmulator`` (Entra + BC API v2.0) are ASGI
apps; :func:`app.emulators.server.serve` runs one on a free port. Both take faults from
``emulator.faults.push(...)`` or ``POST /_emulator/faults`` and log every request.
"""

from app.emulators.common import Fault, FaultQueue, LogEntry, RequestLog
from app.emulators.dynamics_bc import BusinessCentralEmulator
from app.emulators.server import ServedApp, serve
from app.emulators.xledger import XledgerEmulator

__all__ = [
    "BusinessCentralEmulator",
    "Fault",
    "FaultQueue",
    "LogEntry",
    "RequestLog",
    "ServedApp",
    "XledgerEmulator",
    "serve",
]
