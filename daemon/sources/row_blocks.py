"""Rows gathered from a sequence of blocks (row groups, record batches).

Formats that store rows in blocks share this: find the blocks the rows lie
in, read each block once as numpy columns (through the stream's cache:
consecutive shards of one shuffle window keep coming back to the same
blocks), take the rows out of it, and put them where the request wants them.
Blocks are kept as numpy, not Arrow: a shuffled shard takes a few rows from
each of many blocks, and numpy's fancy indexing does that for a fraction of
Arrow's take-then-convert.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from tether.wire.ragged import Ragged

Columns = dict[str, np.ndarray | Ragged]

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
        self._items: OrderedDict[Hashable, Columns] = OrderedDict()
        self._loading: dict[Hashable, threading.Event] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of the blocks held now."""
        return self._bytes

    def get(self, key: Hashable, load: Callable[[], Columns]) -> Columns:
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
            block = load()
            with self._lock:
                self._items[key] = block
                self._bytes += _nbytes(block)
                while self._bytes > self.limit and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= _nbytes(old)
            return block
        finally:
            with self._lock:
                self._loading.pop(key).set()


def _nbytes(block: Columns) -> int:
    return sum(array.nbytes for array in block.values())


class RowBlocks:
    """`starts[i]` is the first global row of block i; `sizes[i]` its row count."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])

    @property
    def num_rows(self) -> int:
        return int(self.starts[-1])

    def gather(self, rows: np.ndarray, load_block: Callable[[int], Columns]) -> Columns:
        """`rows`, in their order: each block is loaded once."""
        in_order = bool(np.all(np.diff(rows) >= 0))  # unshuffled: slices, no scatter
        order = np.arange(len(rows)) if in_order else np.argsort(rows, kind="stable")
        ordered = rows if in_order else rows[order]
        blocks = np.searchsorted(self.starts, ordered, side="right") - 1
        bounds = np.flatnonzero(np.diff(blocks)) + 1
        segments = list(zip(np.r_[0, bounds], np.r_[bounds, len(rows)], strict=True))
        # Encode workers gathering shards of one window start at different
        # blocks, so that they load the window's blocks in parallel instead
        # of queueing for the same one.
        turn = int(rows[0]) % len(segments)
        out: Columns = {}
        pieces: dict[str, list[tuple[np.ndarray, Ragged]]] = {}  # ragged: joined at the end
        for first, last in segments[turn:] + segments[:turn]:
            block = int(blocks[first])
            local = ordered[first:last] - self.starts[block]
            index = contiguous(local)
            index = local if index is None else index
            target = slice(first, last) if in_order else order[first:last]
            for name, values in load_block(block).items():
                if isinstance(values, Ragged):
                    where = np.arange(len(rows))[target]
                    pieces.setdefault(name, []).append((where, values[index] if isinstance(
                        index, slice) else values.take(index)))
                    continue
                if name not in out:
                    out[name] = np.empty((len(rows), *values.shape[1:]), values.dtype)
                out[name][target] = values[index]
        for name, parts in pieces.items():
            joined = Ragged.concat([part for _, part in parts])
            where = np.concatenate([w for w, _ in parts])
            out[name] = joined if np.all(np.diff(where) == 1) else \
                joined.take(np.argsort(where, kind="stable"))
        return out
