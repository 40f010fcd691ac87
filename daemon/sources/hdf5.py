"""HDF5 (.h5, .hdf5; needs h5py: `pip install 'tether[hdf5]'`): each dataset of
the file whose first dimension is the row count is a column, named by its
path (`group/name` for one in a group); the others are left out and listed.

The row count is the first dimension most datasets share (the larger on a
tie). A contiguous, uncompressed dataset is memory-mapped and read row by
row anywhere, as a .npy file is; a chunked (or compressed) one is read a
block of its chunks at a time, so a file with any is shuffled by window, as
Parquet row groups are.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tether.wire.plan import Layout
from tether.wire.ragged import UTF8, Ragged

from .base import Column, Source, numpy_column
from .row_blocks import BlockCache, RowBlocks, contiguous

SUFFIXES = (".h5", ".hdf5")
BLOCK_BYTES = 32 << 20  # a chunked file's block: about this many bytes of rows


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ValueError("serving HDF5 needs h5py on the daemon's machine: "
                         "pip install 'tether[hdf5]'") from None
    return h5py


def _datasets(file) -> dict[str, object]:
    found: dict[str, object] = {}

    def visit(name: str, item) -> None:  # (a value returned would stop the walk)
        if getattr(item, "shape", None) is not None and len(item.shape) >= 1:  # (not Empty)
            found[name] = item

    file.visititems(visit)
    return found


def _describe(name: str, dataset, h5py) -> Column:
    if h5py.check_string_dtype(dataset.dtype) is not None and len(dataset.shape) == 1:
        return Column(name, np.dtype(np.uint8), (), kind=UTF8, source_type="string",
                      mean_row_bytes=16)
    column = numpy_column(name, dataset.dtype, tuple(dataset.shape[1:]))
    return Column(column.name, column.dtype, column.shape, column.unsupported,
                  source_type=str(dataset.dtype))


class Hdf5Source(Source):
    format = "hdf5"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        h5py = _h5py()
        self._file = h5py.File(paths[0], "r")
        self._lock = threading.Lock()  # h5py serializes reads anyway; one at a time here
        datasets = _datasets(self._file)
        firsts = Counter(d.shape[0] for d in datasets.values())
        rows = max(firsts, key=lambda n: (firsts[n], n)) if firsts else 0
        self._data = {n: d for n, d in datasets.items() if d.shape[0] == rows}
        columns = {n: _describe(n, d, h5py) for n, d in self._data.items()}
        super().__init__(name, paths, rows, columns)
        self.left_out = {n: f"its first dimension is {d.shape[0]}, not the row count {rows}"
                         for n, d in datasets.items() if d.shape[0] != rows}
        self._mapped = {n: m for n, d in self._data.items()
                        if (m := _memory_map(paths[0], d)) is not None}
        row_bytes = sum(c.row_bytes for c in columns.values() if c.dtype is not None) or 1
        chunked = [d.chunks[0] for n, d in self._data.items() if n not in self._mapped and
                   d.chunks]
        step = max([*chunked, 1]) * max(1, BLOCK_BYTES // (max([*chunked, 1]) * row_bytes))
        self._blocks = RowBlocks([min(step, rows - s) for s in range(0, rows, step)] or [0]) \
            if len(self._mapped) < len(self._data) else None

    def layout(self, window_bytes: int) -> Layout:
        if self._blocks is None:  # every column memory-mapped: any row, any order
            return Layout.random_access(self.num_rows)
        row_bytes = sum(c.row_bytes for c in self.columns.values() if c.dtype is not None) or 1
        return Layout(tuple(self._blocks.sizes), max(1, int(window_bytes / row_bytes)))

    def _read(self, name: str, rows: slice | np.ndarray) -> np.ndarray | Ragged:
        column = self.columns[name]
        if name in self._mapped:
            values = self._mapped[name][rows]
        else:
            with self._lock:
                values = self._data[name][rows]
        if column.kind == UTF8:
            return Ragged.from_rows([v.decode() if isinstance(v, bytes) else str(v)
                                     for v in values], kind=UTF8)
        return np.ascontiguousarray(values)

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray | Ragged]:
        names = tuple(c.name for c in columns)
        if self._blocks is None:
            index = contiguous(rows)
            return {n: self._read(n, rows if index is None else index) for n in names}
        cache = cache or BlockCache()
        starts = self._blocks.starts

        def load(block: int) -> dict[str, np.ndarray | Ragged]:
            span = slice(int(starts[block]), int(starts[block]) + self._blocks.sizes[block])
            return {n: self._read(n, span) for n in names}

        return self._blocks.gather(rows, lambda block: cache.get((block, names),
                                                                 lambda: load(block)))

    def close(self) -> None:
        self._file.close()


def _memory_map(path: Path, dataset) -> np.ndarray | None:
    """A contiguous, uncompressed numeric dataset as a read-only memory map, else None."""
    try:
        offset = dataset.id.get_offset()
    except (AttributeError, OSError, ValueError):
        return None
    if offset is None or dataset.chunks or dataset.dtype.kind not in "biuf" or \
            dataset.dtype.byteorder not in "<=|":
        return None
    return np.memmap(path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)
