"""Filter pushdown: a dataset seen through `Loader(filter="...")`.

The rows a filter selects are found once per (dataset version, filter): the
filter's columns only are read, a block at a time (a Parquet row group, an
Arrow record batch, a slice of a memory-mapped array), evaluated with
pyarrow.compute (tether.wire.filters), and the matching row numbers kept in
the daemon's cache (`CACHE/filters/`, memory-mapped). A `FilteredSource` is
then a dataset of just those rows: the plan, the global shuffle, the process
partitions, exactly-once and resume run over it as over any dataset, and
unmatched rows are never read for a shard nor sent.

A filtered Parquet dataset keeps its row groups as chunks (those with no
match dropped), and its shuffle window spans as many row groups as the whole
dataset's would, so the stream's cache holds the same bytes.

Finding the rows is bounded: a filter's operations are capped when it is
parsed (tether.wire.filters: its cost grows with the rows only), at most
FILTERS_AT_ONCE are evaluated at once (others wait a while, then are told
the daemon is busy), each stops at its time limit (TETHER_FILTER_SECONDS,
60 s), and each stops between blocks once its caller has gone.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from tether.wire import filters
from tether.wire.errors import Busy, RequestError
from tether.wire.plan import Layout
from tether.wire.ragged import TENSOR, UTF8, Ragged

from ..private import keep_newest, make_private, private_dir
from ..sources import Column, Source
from ..sources.row_blocks import BlockCache

log = logging.getLogger(__name__)

BLOCK_ROWS = 1 << 18  # rows evaluated at a time where a source has no blocks of its own
TIME_LIMIT_S = 60.0  # like a remote query's; TETHER_FILTER_SECONDS changes it
FILTERS_AT_ONCE = 2  # evaluated at once: the rest of the daemon keeps its cores
_KEPT = 8  # indexes kept open in memory (memory-mapped: pages, not copies)
# Indexes kept on disk: each distinct filter a loader sends makes one (8 bytes a
# matching row), so the oldest go; one asked for again is computed again.
KEPT_ON_DISK = 32


def column_types(source: Source) -> dict[str, str | None]:
    """The type of each column a filter may read (None: not filterable)."""
    types: dict[str, str | None] = {}
    for column in source.columns.values():
        if column.kind == UTF8:
            types[column.name] = "string"
        elif column.kind == TENSOR and column.dtype is not None and column.shape == ():
            types[column.name] = "bool" if column.dtype.kind == "b" else column.dtype.name
        else:
            types[column.name] = "list"  # compared with nothing: check_columns says so
    for name, arrow_type in source.filter_types().items():
        types[name] = str(arrow_type)  # nullable columns, which only the Arrow view has
    return types


def _arrow(column: np.ndarray | Ragged) -> pa.Array:
    if isinstance(column, Ragged):
        compact = column.compact()
        return pa.LargeStringArray.from_buffers(
            len(compact), pa.py_buffer(compact.offsets), pa.py_buffer(compact.values))
    return pa.array(column)


def _blocks(source: Source, names: Sequence[str]) -> Iterator[pa.Table]:
    """The filter's columns, a block at a time, as Arrow (nulls kept where it can)."""
    blocks = source.filter_blocks(names)
    if blocks is not None:
        yield from blocks
        return
    columns = [source.columns[name] for name in names]
    for start in range(0, source.num_rows, BLOCK_ROWS):
        data = source.read(start, min(start + BLOCK_ROWS, source.num_rows), columns)
        yield pa.table({name: _arrow(data[name]) for name in names})


def matching_parts(source: Source, expr: filters.Expr, deadline: float = math.inf,
                   wanted: Callable[[], bool] = lambda: True) -> Iterator[np.ndarray]:
    """Row numbers of `source` where `expr` is TRUE, in order (int64), a block
    at a time; stopped between blocks past `deadline` (time.monotonic) or once
    not `wanted`."""
    start = 0
    for table in _blocks(source, sorted(expr.columns)):
        if time.monotonic() > deadline:
            raise RequestError(f"filter {expr.text!r} on {source.name!r} ran past its time "
                               "limit; simplify it, or serve a narrower dataset")
        if not wanted():
            raise RequestError("the caller left: filtering stopped")
        yield np.flatnonzero(filters.evaluate(expr, table)).astype(np.int64) + start
        start += table.num_rows
    if start != source.num_rows:
        raise RuntimeError(f"filtering {source.name!r} read {start} of {source.num_rows} rows")


def _write_index(path: Path, parts: Iterator[np.ndarray]) -> int:
    """`parts` as one int64 .npy file, one part in memory at a time (a filter
    that keeps 16M rows makes 128 MB of row numbers: on disk, not in the
    daemon). Returns how many."""
    raw = path.with_name(path.name + ".raw")
    count = 0
    try:
        with open(raw, "wb") as out:
            for part in parts:
                out.write(part.tobytes())
                count += len(part)
        with open(path, "wb") as out, open(raw, "rb") as rows:
            np.lib.format.write_array_header_1_0(out, {"descr": "<i8", "fortran_order": False,
                                                      "shape": (count,)})
            shutil.copyfileobj(rows, out, 1 << 20)
    finally:
        raw.unlink(missing_ok=True)
    return count


class FilterIndex:
    """Matching rows per (dataset version, filter), computed once, kept on disk."""

    def __init__(self, cache_dir: Path, time_limit_s: float | None = None) -> None:
        self._folder = cache_dir / "filters"
        self.time_limit_s = time_limit_s or float(
            os.environ.get("TETHER_FILTER_SECONDS") or TIME_LIMIT_S)
        self._evaluating = threading.BoundedSemaphore(FILTERS_AT_ONCE)
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _forget_old(self, newest: Path) -> None:
        keep_newest(newest, "*.npy", KEPT_ON_DISK)  # (an open memory map keeps its pages)
        with self._lock:
            for key in [k for k, lock in self._locks.items()
                        if not lock.locked() and k not in self._open]:
                del self._locks[key]

    def rows(self, source: Source, expr: filters.Expr,
             wanted: Callable[[], bool] = lambda: True) -> np.ndarray:
        """The rows `expr` selects of `source`, found once and kept; `wanted`
        says whether the caller is still there."""
        key = hashlib.sha256(f"{source.fingerprint}\0{expr.text}".encode()).hexdigest()[:24]
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # two streams opening with one filter compute it once
            with self._lock:
                if key in self._open:
                    self._open.move_to_end(key)
                    return self._open[key]
            path = self._folder / f"{key}.npy"
            if not path.exists():
                started = time.monotonic()
                private_dir(self._folder)
                partial = path.with_suffix(".partial.npy")
                try:
                    found = self._evaluated(source, expr, wanted, partial)
                except BaseException:
                    partial.unlink(missing_ok=True)
                    raise
                make_private(partial)
                partial.replace(path)
                self._forget_old(path)
                log.info("filter %r on %s: %d of %d rows (%.1f s)", expr.text, source.name,
                         found, source.num_rows, time.monotonic() - started)
            rows = np.load(path, mmap_mode="r")
            with self._lock:
                self._open[key] = rows
                while len(self._open) > _KEPT:
                    self._open.popitem(last=False)
            return rows


    def _evaluated(self, source: Source, expr: filters.Expr, wanted: Callable[[], bool],
                   path: Path) -> int:
        """The rows `expr` selects, written to `path`; how many."""
        if not self._evaluating.acquire(timeout=self.time_limit_s / 2):
            raise Busy(f"{FILTERS_AT_ONCE} filters are being evaluated already; try again")
        try:
            deadline = time.monotonic() + self.time_limit_s
            return _write_index(path, matching_parts(source, expr, deadline, wanted))
        finally:
            self._evaluating.release()


class FilteredSource(Source):
    """The rows of `base` that a filter selects, numbered 0..n-1 in storage order."""

    def __init__(self, base: Source, expr: filters.Expr, rows: np.ndarray) -> None:
        super().__init__(base.name, base.paths, len(rows), base.columns)
        self.format = base.format
        self.base = base
        self.expr = expr
        self._rows = rows
        self.row_name_column = base.row_name_column

    @property
    def fingerprint(self) -> str:
        return self.base.fingerprint  # the filter is in the request, checked by the loader

    def unchanged(self, rows: np.ndarray, version: str) -> bool:
        return self.base.unchanged(self._rows[rows], version)

    def row_name(self, row: int) -> str:
        return self.base.row_name(int(self._rows[row]))

    def layout(self, window_bytes: int) -> Layout:
        whole = self.base.layout(window_bytes)
        if len(whole.chunk_rows) == 1 or not len(self._rows):
            return Layout.random_access(max(len(self._rows), 1))
        edges = np.concatenate([[0], np.cumsum(whole.chunk_rows)])
        counts = np.diff(np.searchsorted(self._rows, edges))
        chunks = tuple(int(c) for c in counts if c)  # row groups with no match drop out
        share = len(self._rows) / max(whole.num_rows, 1)
        window = max(1, round(whole.window_rows * share)) if whole.window_rows else 0
        return Layout(chunks, window)

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray | Ragged]:
        return self.base.take(np.asarray(self._rows[rows]), columns, cache)
