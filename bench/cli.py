"""`tether bench`: measure Tether against its baselines in one run, print a table."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from . import loopback


def _size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def _bench(args: argparse.Namespace) -> int:
    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = loopback.run(args.size, args.batch_size, args.repeats, log)
    print(loopback.table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), "gb_per_s": r.gbps} for r in results], f, indent=2)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench", help="measure throughput against baselines on this machine",
        description="Loopback: a local read, raw gRPC, and Tether into numpy and jax.Array, "
                    "each moving the same float32 dataset; best of --repeats runs.")
    bench.add_argument("--size", type=_size, default=_size("1GB"),
                       help="dataset size, e.g. 500MB or 1GB (default 1GB)")
    bench.add_argument("--batch-size", type=int, default=1024)
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    bench.set_defaults(run=_bench)
