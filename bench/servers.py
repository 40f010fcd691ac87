"""Baseline servers, each run as its own process by the bench.

    python -m tether.bench.servers flight DATASET_DIR none|lz4|zstd [TLS_DIR]
    python -m tether.bench.servers raw-grpc DATASET_DIR
    python -m tether.bench.servers raw-tcp DATASET_DIR
    python -m tether.bench.servers tar IMAGE_FOLDER

Each prints the port it listens on, then serves until terminated.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tether.wire.allocator import tune_allocator


def main(argv: list[str]) -> None:
    kind, dataset = argv[0], Path(argv[1])
    tune_allocator()  # the same allocator tuning Tether's daemon gets
    if kind == "flight":
        from . import data
        from .systems.flight import FlightServer, to_table

        tls_dir = Path(argv[3]) if len(argv) > 3 else None  # flight-tls
        server = FlightServer(to_table(data.load(dataset)), argv[2], tls_dir)
        print(server.port, flush=True)
        server.serve()
    elif kind == "raw-grpc":
        from .systems.raw_grpc import serve

        serve(dataset)
    elif kind == "raw-tcp":
        from .systems.raw_tcp import serve

        serve(dataset)
    elif kind == "tar":
        from .systems.upload_first_tar import serve

        serve(dataset)
    else:
        raise SystemExit(f"unknown server {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
