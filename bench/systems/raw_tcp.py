"""Baseline: the dataset's bytes over one plain TCP socket: the ceiling.

Rows go in chunks of about 4 MiB, each chunk every column's bytes in turn;
the client reads straight into aligned buffers and batches are views.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tether.wire.aligned import aligned_empty

from .. import data
from .base import Address, Batch, System, rebatch

CHUNK_BYTES = 4 << 20


def _chunk_rows(columns: dict[str, np.ndarray]) -> int:
    row_bytes = sum(v[:1].nbytes for v in columns.values())
    return max(1, CHUNK_BYTES // row_bytes)


def serve(dataset: Path) -> None:
    columns = data.load(dataset)
    rows = len(next(iter(columns.values())))
    step = _chunk_rows(columns)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            for start in range(0, rows, step):
                for values in columns.values():
                    conn.sendall(memoryview(np.ascontiguousarray(values[start:start + step])))


class RawTcp(System):
    name = "raw TCP"

    def start(self, dataset: Path, workdir: Path) -> Address:
        return ("127.0.0.1", int(self._spawn("tether.bench.servers", "raw-tcp", str(dataset))))

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        columns = data.load(dataset)
        rows = len(next(iter(columns.values())))
        step = _chunk_rows(columns)

        def chunks() -> Iterator[Batch]:
            with socket.create_connection(address) as conn:
                for start in range(0, rows, step):
                    n = min(step, rows - start)
                    chunk = {}
                    for name, values in columns.items():
                        out = aligned_empty((n, *values.shape[1:]), values.dtype)
                        view = memoryview(out.reshape(-1).view(np.uint8))
                        got = 0
                        while got < len(view):
                            read = conn.recv_into(view[got:])
                            if read == 0:
                                raise ConnectionError("raw TCP server closed early")
                            got += read
                        chunk[name] = out
                    yield chunk

        return rebatch(chunks(), batch_size)

    def wire_bytes(self, dataset: Path) -> int:
        return sum(v.nbytes for v in data.load(dataset).values())
