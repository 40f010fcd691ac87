"""`tether serve PATH...`: serve datasets until SIGINT or SIGTERM.

Prints exactly one line on stdout, the connect URL, once it is ready; all
else goes to stderr through `logging`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .server import Daemon, DaemonConfig, default_state_dir


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        daemon = Daemon(DaemonConfig(paths=args.paths, host=args.host, port=args.port,
                                     state_dir=args.state_dir, encode_workers=args.workers))
        url = daemon.start()
    except (OSError, ValueError) as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(url, flush=True)
    while not stop.wait(0.5):
        pass
    logging.getLogger(__name__).info("stopping")
    daemon.stop()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve datasets from this machine",
        description="Serve the datasets under PATH... and print the connect URL on stdout.",
    )
    serve.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                       help="a data file (Parquet, Arrow/Feather, CSV, .npy, .npz) or a folder")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=0, help="port (default: 0, any free port)")
    serve.add_argument("--state-dir", type=Path, default=None,
                       help=f"where caches live (default: {default_state_dir()})")
    serve.add_argument("--workers", type=int, default=0,
                       help="threads reading and encoding shards (default: one per core)")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=_serve)
