"""Baseline: the same bytes over grpcio with raw-bytes serializers and nothing else.

No framing, checksums, decoding or batching: the ceiling for any gRPC data
path on this machine. Runs its server as a subprocess, like the daemon.

    python -m tether.bench.raw_grpc FILE   # serves FILE in 4 MiB messages
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

from tether import rpc
from tether.allocator import tune_allocator

MESSAGE_BYTES = 4 << 20
_METHOD = "/tether.bench.Raw/Read"


def _serve(path: Path) -> None:
    tune_allocator()
    data = np.load(path, mmap_mode="r").reshape(-1).view(np.uint8)

    def read(request: bytes, context):
        for start in range(0, data.size, MESSAGE_BYTES):
            yield data[start:start + MESSAGE_BYTES].tobytes()

    handler = grpc.method_handlers_generic_handler("tether.bench.Raw", {
        "Read": grpc.unary_stream_rpc_method_handler(read),
    })
    server = grpc.server(ThreadPoolExecutor(4), handlers=[handler], options=rpc.CHANNEL_OPTIONS)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


class RawGrpcServer:
    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tether.bench.raw_grpc", str(path)],
                                     stdout=subprocess.PIPE, text=True)
        self.target = self.proc.stdout.readline().strip()

    def read_all(self) -> int:
        """Receive every byte once; returns the byte count."""
        with grpc.insecure_channel(self.target, options=rpc.CHANNEL_OPTIONS) as channel:
            read = channel.unary_stream(_METHOD)
            return sum(len(message) for message in read(b""))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
