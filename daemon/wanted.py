"""The shards a caching loader asks for (streams opened with `wants`).

Such a loader keeps rows on its own disk (Loader(cache=...)). It names, in
plan order, each shard it needs and which of its rows it already has; the
daemon skips the shards nobody named and sends only the missing rows of the
others. The order is still the plan's, so the loader merges its rows back
into exactly the shard it would have received.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import numpy as np

from tether.wire.errors import RequestError
from tether.wire.plan import SCANNING, Cursor, ShardTask
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
    """Turns the plan's tasks into the ones wanted, with the rows wanted.

    `shard_rows(cursor)` gives a shard's dataset rows, for tasks that do not
    carry them. Not thread-safe: the stream calls it under its own lock.
    """

    def __init__(self, tasks: Iterator[ShardTask | object],
                 shard_rows: Callable[[Cursor], np.ndarray]) -> None:
        self._tasks = tasks
        self._shard_rows = shard_rows
        self._wants: deque[pb.Want] = deque()
        self._last: Cursor | None = None  # the last cursor wanted

    def add(self, want: pb.Want) -> None:
        cursor = Cursor(want.epoch, want.sequence)
        if self._last is not None and cursor <= self._last:
            raise RequestError(f"shard {cursor.sequence} of epoch {cursor.epoch} was wanted "
                               "out of the plan's order")
        if len(self._wants) >= MAX_QUEUED_WANTS:
            raise RequestError(f"more than {MAX_QUEUED_WANTS} shards wanted ahead of those sent")
        self._last = cursor
        self._wants.append(want)

    @property
    def pending(self) -> bool:
        return bool(self._wants)

    def next_task(self) -> ShardTask | None:
        """The next wanted shard, its rows cut to those the loader lacks;
        None when the loader has named none yet."""
        if not self._wants:
            return None
        want = self._wants.popleft()
        cursor = Cursor(want.epoch, want.sequence)
        task = next(self._tasks, None)
        while task is SCANNING or (task is not None and task.cursor < cursor):
            task = next(self._tasks, None)  # a shard the loader has whole
        if task is None or task.cursor != cursor:
            raise RequestError(f"shard {cursor.sequence} of epoch {cursor.epoch} was wanted, "
                               "but the plan has no such shard")
        rows = task.rows if task.rows is not None else self._shard_rows(cursor)
        have = have_mask(want.have, len(rows))
        if have.all():
            raise RequestError(f"shard {cursor.sequence} of epoch {cursor.epoch} was wanted "
                               "with every row had already")
        return task._replace(rows=rows[~have])
