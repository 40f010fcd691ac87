"""`tether bench --data transform`: the owner's preparation (`--transform`) on
the daemon's local worker pool against the same on a Dask cluster
(`--dask`, here a `distributed.LocalCluster` of one worker process a core).

Each run starts a fresh daemon on a table of about `--size` bytes (1 KB rows,
tether.bench.filter_data's) and times it until the transformed dataset is
served: the whole snapshot made. The function is CPU-heavy on purpose (a
spectrum of each row's 252 features, a few times over), so the cores, not
the disk, decide. Both outputs are checked equal, row for row.

On a real cluster the same run scales with the workers' cores: the daemon
reads and writes (one core), the workers transform (docs/scale.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import filter_data

MODULE = "tether_bench_prep"  # (a name no folder it runs in has already)
PREP = '''
import numpy as np

def spectrum(chunk):
    """Each row's features, their spectrum's magnitude, smoothed 8 times."""
    x = np.asarray(chunk["x"], dtype=np.float32)
    for _ in range(8):
        x = np.abs(np.fft.irfft(np.fft.rfft(x, axis=1) * 0.5, n=x.shape[1], axis=1))
    return {"bucket": chunk["bucket"], "power": x.sum(axis=1).astype(np.float32)}
'''


def run(size: int, repeat: int, json_path: str | None, plot_path: str | None) -> int:
    try:
        import distributed
    except ImportError:
        print("--data transform compares with Dask: pip install 'tether[dask]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tether-bench-transform-") as folder:
        root = Path(folder)
        print(f"writing {size / 1e6:.0f} MB of rows...", file=sys.stderr)
        filter_data.write(root / "data", size)
        (root / f"{MODULE}.py").write_text(PREP)
        os.environ["PYTHONPATH"] = f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        workers = os.cpu_count() or 2
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                      dashboard_address=":0", silence_logs=logging.ERROR) \
                as cluster:
            runs = {"local pool": None, f"Dask LocalCluster ({workers} workers)":
                    cluster.scheduler_address}
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            digests = set()
            for attempt in range(repeat):
                for name, address in runs.items():  # alternating: drift hits both alike
                    took, digest = _one(root, address, attempt)
                    seconds[name].append(took)
                    digests.add(digest)
                    print(f"  {name}: {took:.1f} s", file=sys.stderr)
    if len(digests) != 1:
        print("the local pool and Dask made different outputs", file=sys.stderr)
        return 1
    rows = [{"system": name, "seconds": statistics.median(times),
             "mb_per_s": size / 1e6 / statistics.median(times), "runs": times}
            for name, times in seconds.items()]
    _print(rows, size)
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2))
    if plot_path:
        _plot(rows, Path(plot_path), size)
    return 0


def _one(root: Path, dask: str | None, attempt: int) -> tuple[float, str]:
    """Seconds from a fresh daemon's start until the transformed dataset is
    served, and a digest of what it serves."""
    import tether
    from tether.daemon.spawn import DaemonProcess

    state = root / f"state-{attempt}-{'dask' if dask else 'local'}"
    args = ["--insecure", "--transform", f"{filter_data.DATASET}={MODULE}:spectrum"]
    started = time.perf_counter()
    with DaemonProcess([root / "data" / filter_data.PARQUET], state, *args,
                       *(["--dask", dask] if dask else [])) as daemon, \
            tether.connect(daemon.url) as client:
        while not _served(client):
            time.sleep(0.05)
        took = time.perf_counter() - started
        table = client.read(filter_data.DATASET)
    digest = hashlib.sha256()
    for column in table.columns:
        for chunk in column.chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(buffer)
    return took, digest.hexdigest()


def _served(client) -> bool:
    import tether

    try:
        return bool(client.describe(filter_data.DATASET).columns)
    except tether.DatasetError as exc:
        if "not ready yet" in str(exc):  # (a describe waits 20 s for it, then says so)
            return False
        raise


def _print(rows: list[dict], size: int) -> None:
    base = rows[0]["seconds"]
    print(f"transform of {size / 1e6:.0f} MB (until served), median of {len(rows[0]['runs'])}:")
    for row in rows:
        print(f"  {row['system']:<34} {row['seconds']:7.1f} s  {row['mb_per_s']:7.1f} MB/s  "
              f"{base / row['seconds']:5.2f}x")


def _plot(rows: list[dict], path: Path, size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.barh([r["system"] for r in rows], [r["mb_per_s"] for r in rows], color="#4477aa")
    ax.set_xlabel("MB/s of input transformed and served")
    ax.set_title(f"--transform over {size / 1e6:.0f} MB: local pool vs Dask")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}", file=sys.stderr)
