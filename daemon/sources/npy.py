"""NumPy `.npy`: one file (one column, named by its stem), or a folder of
equal-length files (one column each). Memory-mapped: rows are paged in on read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import Column, Source, numpy_column
from .row_blocks import BlockCache, contiguous


def columns_from_arrays(arrays: dict[str, np.ndarray]) -> tuple[int, dict[str, Column]]:
    """Row count and column descriptions; every array must have the same length."""
    lengths = {name: len(a) if a.ndim else 0 for name, a in arrays.items()}
    if any(a.ndim == 0 for a in arrays.values()):
        scalar = next(n for n, a in arrays.items() if a.ndim == 0)
        raise ValueError(f"array {scalar!r} is a scalar; a column needs one row per sample")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}; a dataset's columns must match")
    columns = {n: numpy_column(n, a.dtype, a.shape[1:]) for n, a in arrays.items()}
    return next(iter(lengths.values()), 0), columns


class ArraySource(Source):
    """Rows of in-memory or memory-mapped arrays, one per column."""

    def __init__(self, name: str, paths: list[Path], arrays: dict[str, np.ndarray]) -> None:
        num_rows, columns = columns_from_arrays(arrays)
        super().__init__(name, paths, num_rows, columns)
        self._arrays = arrays

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray]:
        span = contiguous(rows)
        index = rows if span is None else span  # a slice is a view, not a gather
        return {c.name: self._arrays[c.name][index] for c in columns}


class NpySource(ArraySource):
    format = "npy"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        # Plain ndarray views of the maps: np.memmap runs Python code on every slice.
        arrays = {p.stem: np.load(p, mmap_mode="r", allow_pickle=False).view(np.ndarray)
                  for p in paths}
        super().__init__(name, paths, arrays)
