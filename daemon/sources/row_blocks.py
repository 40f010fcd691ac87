"""Rows gathered from a sequence of blocks (row groups, record batches).

Formats that store rows in blocks share this: find the blocks the rows lie
in, read each block once (through the stream's cache: consecutive shards of
one shuffle window keep coming back to the same blocks), take the rows out
of it, and put them where the request wants them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pyarrow as pa

# Decoded blocks kept per stream when the plan does not say more (unshuffled
# reads need only the few blocks a shard spans).
CACHE_BYTES = 256 << 20


def contiguous(rows: np.ndarray) -> slice | None:
    """`rows` as a slice when they are consecutive and increasing, else None."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return None


class BlockCache:
    """Least-recently-used decoded blocks, up to `limit` bytes. A block asked for
    by several encode workers at once is read once."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self._items: OrderedDict[Hashable, pa.Table] = OrderedDict()
        self._loading: dict[Hashable, threading.Event] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], pa.Table]) -> pa.Table:
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
                pending = self._loading.get(key)
                if pending is None:
                    self._loading[key] = threading.Event()
                    break
            pending.wait()  # another worker is reading it; then look again
        try:
            table = load()
            with self._lock:
                self._items[key] = table
                self._bytes += table.nbytes
                while self._bytes > self.limit and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
            return table
        finally:
            with self._lock:
                self._loading.pop(key).set()


class RowBlocks:
    """`starts[i]` is the first global row of block i; `sizes[i]` its row count."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])

    @property
    def num_rows(self) -> int:
        return int(self.starts[-1])

    def gather(self, rows: np.ndarray, load_block: Callable[[int], pa.Table],
               to_numpy: Callable[[pa.Table], dict[str, np.ndarray]],
               ) -> dict[str, np.ndarray]:
        """`rows`, in their order, as numpy columns: each block is read once."""
        in_order = bool(np.all(np.diff(rows) >= 0))  # unshuffled: slices, no scatter
        order = np.arange(len(rows)) if in_order else np.argsort(rows, kind="stable")
        ordered = rows if in_order else rows[order]
        blocks = np.searchsorted(self.starts, ordered, side="right") - 1
        bounds = np.flatnonzero(np.diff(blocks)) + 1
        out: dict[str, np.ndarray] = {}
        for first, last in zip(np.r_[0, bounds], np.r_[bounds, len(rows)], strict=True):
            block = int(blocks[first])
            local = ordered[first:last] - self.starts[block]
            table = load_block(block)
            span = contiguous(local)
            piece = table.slice(span.start, span.stop - span.start) if span else \
                table.take(pa.array(local))
            for name, values in to_numpy(piece).items():
                if name not in out:
                    out[name] = np.empty((len(rows), *values.shape[1:]), values.dtype)
                out[name][slice(first, last) if in_order else order[first:last]] = values
        return out
