"""Baseline: the dataset's bytes over grpcio with raw-bytes serializers, nothing else.

No framing, checksums, decoding or batching beyond what a client needs: the
ceiling for any data path built on grpcio on this machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

from tether.wire import rpc
from tether.wire.aligned import aligned_empty

from .. import data
from .base import Address, Batch, System, rebatch
from .raw_tcp import _chunk_rows

_SERVICE, _METHOD = "tether.bench.Raw", "Read"


def serve(dataset: Path) -> None:
    columns = data.load(dataset)
    rows = len(next(iter(columns.values())))
    step = _chunk_rows(columns)

    def read(request: bytes, context) -> Iterator[bytes]:
        for start in range(0, rows, step):
            yield b"".join(memoryview(np.ascontiguousarray(v[start:start + step]))
                           for v in columns.values())

    handler = grpc.method_handlers_generic_handler(_SERVICE, {
        _METHOD: grpc.unary_stream_rpc_method_handler(read)})
    server = grpc.server(ThreadPoolExecutor(4), handlers=[handler], options=rpc.SERVER_OPTIONS)
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    server.start()
    server.wait_for_termination()


class RawGrpc(System):
    name = "raw gRPC"

    def start(self, dataset: Path, workdir: Path) -> Address:
        return ("127.0.0.1", int(self._spawn("tether.bench.servers", "raw-grpc", str(dataset))))

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        columns = data.load(dataset)

        def chunks() -> Iterator[Batch]:
            target = f"{address[0]}:{address[1]}"
            with grpc.insecure_channel(target, options=rpc.CHANNEL_OPTIONS) as channel:
                for message in channel.unary_stream(f"/{_SERVICE}/{_METHOD}")(b""):
                    view, chunk = memoryview(message), {}
                    rows = len(message) // sum(v[:1].nbytes for v in columns.values())
                    for name, values in columns.items():
                        out = aligned_empty((rows, *values.shape[1:]), values.dtype)
                        size = out.nbytes
                        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(view[:size], np.uint8)
                        view, chunk[name] = view[size:], out
                    yield chunk

        return rebatch(chunks(), batch_size)

    def wire_bytes(self, dataset: Path) -> int:
        return sum(v.nbytes for v in data.load(dataset).values())
