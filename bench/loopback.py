"""The loopback scenario: one float32 dataset, every path measured in the same run.

Systems, each moving the same bytes on this machine:
  local read        numpy memory-map, copied into batches: no network at all
  raw gRPC          grpcio streaming the file's bytes: the transport's ceiling
  tether -> numpy   the real daemon (subprocess) and loader, codec none
  tether -> jax     the same, each batch a ready jax.Array (block_until_ready)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tether
from tether.aligned import aligned_empty

from .data import write_float32
from .raw_grpc import RawGrpcServer


@dataclass
class Result:
    system: str
    nbytes: int
    seconds: float

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9


def _best(system: str, run: Callable[[], int], repeats: int, log: Callable[[str], None]) -> Result:
    best = None
    for attempt in range(repeats):
        start = time.perf_counter()
        nbytes = run()
        result = Result(system, nbytes, time.perf_counter() - start)
        log(f"  {system} run {attempt + 1}/{repeats}: {result.gbps:.2f} GB/s")
        if best is None or result.seconds < best.seconds:
            best = result
    return best


def _local_read(path: Path, batch_size: int) -> int:
    x = np.load(path, mmap_mode="r")
    total = 0
    for start in range(0, len(x), batch_size):
        rows = x[start:start + batch_size]
        batch = aligned_empty(rows.shape, rows.dtype)
        batch[:] = rows
        total += batch.nbytes
    return total


def _tether_numpy(url: str, batch_size: int) -> int:
    loader = tether.Loader(url, dataset="floats", batch_size=batch_size, codec="none")
    return sum(batch["x"].nbytes for batch in loader)


def _tether_jax(url: str, batch_size: int) -> int:
    import jax

    loader = tether.Loader(url, dataset="floats", batch_size=batch_size, codec="none")
    total = 0
    for batch in loader.to_jax():
        total += jax.block_until_ready(batch["x"]).nbytes
    return total


def run(size_bytes: int, batch_size: int, repeats: int,
        log: Callable[[str], None]) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        log(f"writing {size_bytes / 1e9:.2f} GB of float32 rows")
        dataset = write_float32(Path(tmp), size_bytes)
        path = dataset / "x.npy"
        results = [_best("local read (mmap)", lambda: _local_read(path, batch_size), repeats, log)]
        raw = RawGrpcServer(path)
        try:
            results.append(_best("raw gRPC bytes", raw.read_all, repeats, log))
        finally:
            raw.close()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tether.daemon", str(dataset), "--port", "0",
             "--state-dir", str(Path(tmp) / "state"), "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True)
        try:
            url = daemon.stdout.readline().strip()
            results.append(_best("tether -> numpy", lambda: _tether_numpy(url, batch_size),
                                 repeats, log))
            results.append(_best("tether -> jax.Array", lambda: _tether_jax(url, batch_size),
                                 repeats, log))
        finally:
            daemon.terminate()
            daemon.wait(10)
    return results


def table(results: list[Result], baseline: str = "raw gRPC bytes") -> str:
    base = next(r for r in results if r.system == baseline)
    lines = [f"{'system':<22} {'GB/s':>6} {'vs ' + baseline:>20}"]
    for r in results:
        lines.append(f"{r.system:<22} {r.gbps:>6.2f} {r.gbps / base.gbps:>19.2f}x")
    return "\n".join(lines)
