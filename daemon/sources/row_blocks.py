"""Row ranges over a sequence of blocks (row groups, record batches).

Formats that store rows in blocks share this: find the blocks a range
touches, read each (cached, since consecutive shards often share a block),
and cut the range out of them.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import pyarrow as pa

# Decoded blocks kept per source; bounds the daemon's memory beyond its
# prefetch window when blocks are larger than shards.
CACHE_BYTES = 256 << 20


class BlockCache:
    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self._limit = limit
        self._items: OrderedDict[Hashable, pa.Table] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], pa.Table]) -> pa.Table:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        table = load()
        with self._lock:
            if key not in self._items:
                self._items[key] = table
                self._bytes += table.nbytes
            while self._bytes > self._limit and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return table


class RowBlocks:
    """`starts[i]` is the first global row of block i; `sizes[i]` its row count."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        self.starts = [0]
        for size in self.sizes:
            self.starts.append(self.starts[-1] + size)

    @property
    def num_rows(self) -> int:
        return self.starts[-1]

    def slices(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """(block, first row in block, row count) pieces covering [start, stop)."""
        pieces = []
        block = bisect.bisect_right(self.starts, start) - 1
        while start < stop:
            offset = start - self.starts[block]
            count = min(stop, self.starts[block + 1]) - start
            if count > 0:
                pieces.append((block, offset, count))
            start += max(count, 0)
            block += 1
        return pieces

    def read(
        self, start: int, stop: int, load_block: Callable[[int], pa.Table]
    ) -> pa.Table:
        pieces = [load_block(b).slice(offset, n) for b, offset, n in self.slices(start, stop)]
        return pa.concat_tables(pieces) if len(pieces) != 1 else pieces[0]
