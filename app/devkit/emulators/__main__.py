"""``python -m app.devkit.emulators``: serve both emulators until SIGINT/SIGTERM.

Prints one JSON line, ``{"xledger": "<url>", "dynamics_bc": "<url>"}``, once both accept
connections, so a parent process can read the URLs and start.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from app.devkit.emulators.dynamics_bc import BusinessCentralEmulator
from app.devkit.emulators.server import serve
from app.devkit.emulators.xledger import XledgerEmulator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.devkit.emulators", description=__doc__)
    parser.add_argument("--xledger-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--bc-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--bc-token-ttl", type=float, default=3599.0, help="token lifetime, s")
    parser.add_argument("--seed", type=int, default=0, help="records to seed in each emulator")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    xledger, bc = XledgerEmulator(), BusinessCentralEmulator(token_ttl=args.bc_token_ttl)
    xledger.seed(args.seed)
    bc.seed(args.seed)
    with serve(xledger, args.xledger_port) as xl, serve(bc, args.bc_port) as bcs:
        print(json.dumps({"xledger": xl.url, "dynamics_bc": bcs.url}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
