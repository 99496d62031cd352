"""The operator commands' exit codes, defined once (docs/operations.md lists them).

64, 69 and 75 are sysexits.h's EX_USAGE, EX_UNAVAILABLE and EX_TEMPFAIL. This module imports
nothing, so the entry point can map argparse's usage errors without loading the commands.
"""

from __future__ import annotations

OK = 0
FAILED = 1        # the command ran; what it followed failed (e.g. `jobs enqueue --wait`: the job failed)
ERROR = 2         # any other error: the message says what to fix
NOT_FOUND = 3     # no such job, integration, schedule or alert
USAGE = 64        # bad arguments or options (argparse's errors)
UNAVAILABLE = 69  # the database cannot be reached
TIMEOUT = 75      # a wait ran out of time: try again, or give a longer --timeout
INTERRUPTED = 130  # Ctrl-C


def of(exc: BaseException) -> int:
    """The code an error ends a command with: its own ``exit_code`` (app.cli.context's errors
    carry one), else ERROR."""
    code = getattr(exc, "exit_code", ERROR)
    return code if isinstance(code, int) else ERROR
