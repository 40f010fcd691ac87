"""Loopback GB/s into numpy and into jax.Array, codec none, plain and TLS, one run.

    python -m tether.bench.numpy_vs_jax [GB]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tether

from . import data


def _gbps(url: str, into_jax: bool, repeats: int = 3) -> float:
    import jax

    best = 0.0
    for _ in range(repeats):
        loader = tether.Loader(url, dataset="floats", batch_size=1024, codec="none")
        start, nbytes = time.perf_counter(), 0
        batches = loader.to_jax() if into_jax else loader
        for batch in batches:
            nbytes += sum(v.size * v.dtype.itemsize for v in jax.block_until_ready(batch).values())
        best = max(best, nbytes / (time.perf_counter() - start) / 1e9)
    return best


def main(gigabytes: float = 1.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dataset = data.write("floats", Path(tmp), int(gigabytes * 2**30))
        for label, flags in (("plain", ["--insecure"]), ("TLS", [])):
            daemon = subprocess.Popen(
                [sys.executable, "-m", "tether.daemon", str(dataset), "--port", "0",
                 "--state-dir", f"{tmp}/state-{label}", "--log-level", "error", *flags],
                stdout=subprocess.PIPE, text=True)
            url = daemon.stdout.readline().strip()
            try:
                for target, into_jax in (("numpy", False), ("jax", True)):
                    print(f"{label:5} -> {target:5}: {_gbps(url, into_jax):.2f} GB/s "
                          "(best of 3)", flush=True)
            finally:
                daemon.terminate()
                daemon.wait()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
