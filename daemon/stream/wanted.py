"""The shards a caching loader asks for (streams opened with `wants`).

Such a loader keeps rows on its own disk (Loader(cache=...)). It names, in
plan order, each shard it needs and which of its rows it already has; the
daemon skips the shards nobody named and sends only the missing rows of the
others. The order is still the plan's, so the loader merges its rows back
into exactly the shard it would have received.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from tether.wire.errors import RequestError
from tether.wire.plan import Cursor, HostPlan, ShardTask
from tether.wire.spec import MAX_COUNT
from tether.wire.v1 import tether_pb2 as pb

# Wants a loader may queue ahead of what the daemon produced: its window is
# far smaller; more is a client flooding the daemon's memory.
MAX_QUEUED_WANTS = 4096


def have_mask(have: bytes, rows: int) -> np.ndarray:
    """The rows a Want says the loader has, as booleans (packbits, little order)."""
    if len(have) != -(-rows // 8):
        raise RequestError(f"a want's row mask has {len(have)} bytes; its shard of {rows} "
                           f"rows needs {-(-rows // 8)}")
    return np.unpackbits(np.frombuffer(have, dtype=np.uint8), count=rows,
                         bitorder="little").astype(bool)


class WantedShards:
    """The wanted shards, in order, each cut to the rows the loader lacks.

    A want is checked against the plan when it arrives, by arithmetic alone
    (a cursor far ahead costs nothing to check), and its mask against its
    shard's rows, so that nothing unchecked is queued. `shard_rows(cursor)`
    gives a shard's dataset rows. Not thread-safe: the stream calls it under
    its own lock.
    """

    def __init__(self, plan: HostPlan, start: Cursor,
                 shard_rows: Callable[[Cursor], np.ndarray]) -> None:
        self._plan = plan
        self._start = start  # the first shard this stream may send
        self._shard_rows = shard_rows
        self._wants: deque[pb.Want] = deque()
        self._last: Cursor | None = None  # the last cursor wanted

    def _rows_in(self, cursor: Cursor) -> int:
        """How many rows shard `cursor` has; a RequestError if the plan has no such shard."""
        missing = RequestError(f"shard {cursor.sequence} of epoch {cursor.epoch} was wanted, "
                               "but the plan has no such shard")
        if max(cursor) > MAX_COUNT or cursor < self._start:
            raise missing
        try:
            if self._plan.normalize(cursor) != cursor or self._plan.finished(cursor):
                raise missing
        except ValueError:
            raise missing from None
        first = cursor.sequence * self._plan.shard_rows
        return min(self._plan.shard_rows, self._plan.local_rows(cursor.epoch) - first)

    def add(self, want: pb.Want) -> None:
        cursor = Cursor(want.epoch, want.sequence)
        if self._last is not None and cursor <= self._last:
            raise RequestError(f"shard {cursor.sequence} of epoch {cursor.epoch} was wanted "
                               "out of the plan's order")
        have_mask(want.have, self._rows_in(cursor))  # checked now, not when sent
        if len(self._wants) >= MAX_QUEUED_WANTS:
            raise RequestError(f"more than {MAX_QUEUED_WANTS} shards wanted ahead of those sent")
        self._last = cursor
        self._wants.append(want)

    def next_task(self) -> ShardTask | None:
        """The next wanted shard, its rows cut to those the loader lacks;
        None when the loader has named none yet."""
        if not self._wants:
            return None
        want = self._wants.popleft()
        cursor = Cursor(want.epoch, want.sequence)
        rows = self._shard_rows(cursor)
        have = have_mask(want.have, len(rows))
        if have.all():
            raise RequestError(f"shard {cursor.sequence} of epoch {cursor.epoch} was wanted "
                               "with every row had already")
        last = cursor.sequence == self._plan.shards_in(cursor.epoch) - 1
        return ShardTask(cursor, last, rows[~have])
