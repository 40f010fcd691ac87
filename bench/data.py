"""Benchmark datasets, written to disk in the formats the daemon serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FLOATS_PER_ROW = 256  # 1 KiB rows of float32 features


def write_float32(folder: Path, nbytes: int, seed: int = 0) -> Path:
    """A dataset `floats` of about `nbytes` of float32 rows, as a folder of .npy columns."""
    dataset = folder / "floats"
    dataset.mkdir(parents=True, exist_ok=True)
    rows = max(1, nbytes // (4 * FLOATS_PER_ROW))
    out = np.lib.format.open_memmap(dataset / "x.npy", mode="w+", dtype=np.float32,
                                    shape=(rows, FLOATS_PER_ROW))
    rng = np.random.default_rng(seed)
    chunk = 1 << 14
    for start in range(0, rows, chunk):  # bounded memory whatever nbytes is
        stop = min(start + chunk, rows)
        out[start:stop] = rng.standard_normal((stop - start, FLOATS_PER_ROW), dtype=np.float32)
    out.flush()
    return dataset
