"""Loopback emulators of the vendors' protocols, for tests and the demo.

``XledgerEmulator`` (GraphQL) and ``BusinessCentralEmulator`` (Entra + BC API v2.0) are ASGI
apps; :func:`app.devkit.emulators.server.serve` runs one on a free port. Both take faults from
``emulator.faults.push(...)`` or ``POST /_emulator/faults`` and log every request.
"""

from app.devkit.emulators.common import Fault, FaultQueue, LogEntry, RequestLog
from app.devkit.emulators.dynamics_bc import BusinessCentralEmulator
from app.devkit.emulators.server import ServedApp, serve
from app.devkit.emulators.xledger import XledgerEmulator

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
