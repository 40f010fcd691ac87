"""One dataset from several daemons: the parts' streams merged into one order.

Each daemon sends the rows of its part, in the order they take in this
process's share of the whole dataset's plan (tether.wire.plan.part_tasks).
The merger walks that plan itself: for every shard of it, it computes which
part each row comes from and takes that many rows from each part's stream,
in order. A part that sends too few rows, too many, or rows of the wrong
epoch is a ProtocolError naming the daemon: never a silently short epoch.
Each part's shards are released (credited back) as soon as their rows are
copied, so memory stays one prefetch window per connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..wire.aligned import aligned_empty
from ..wire.errors import ProtocolError
from ..wire.plan import Cursor, HostPlan
from .decoder import Shard


class PartQueue:
    """One part's shards, consumed row by row, checked to come in order."""

    def __init__(self, name: str, shards: Iterable[Shard],
                 release: Callable[[Shard], None]) -> None:
        self.name = name
        self._shards = iter(shards)
        self._release = release
        self._held: deque[list] = deque()  # [shard, offset]
        self._expected: Cursor | None = None

    def _next_shard(self, epoch: int) -> Shard:
        shard = next(self._shards, None)
        if shard is None:
            raise ProtocolError(f"{self.name} ended its stream before epoch {epoch} was "
                                "complete; nothing after that point was delivered")
        got = Cursor(shard.epoch, shard.sequence)
        expected = self._expected
        in_order = got == expected or (
            expected is not None and expected.sequence == 0 and got.sequence == 0
            and got.epoch >= expected.epoch) or (expected is None and got.sequence == 0)
        if not in_order:
            raise ProtocolError(f"{self.name} sent shard {tuple(got)} where {expected} was due")
        self._expected = Cursor(shard.epoch + 1, 0) if shard.last_in_epoch else \
            Cursor(shard.epoch, shard.sequence + 1)
        return shard

    def take_into(self, epoch: int, out: dict[str, np.ndarray], where: np.ndarray) -> None:
        """Copy this part's next `len(where)` rows of `epoch` to rows `where` of `out`."""
        filled = 0
        while filled < len(where):
            if not self._held:
                self._held.append([self._next_shard(epoch), 0])
            shard, offset = self._held[0]
            if shard.epoch != epoch:
                raise ProtocolError(f"{self.name} sent rows of epoch {shard.epoch} while "
                                    f"epoch {epoch} still needed {len(where) - filled}")
            count = min(len(where) - filled, shard.num_rows - offset)
            for name, array in out.items():
                array[where[filled:filled + count]] = shard.columns[name][offset:offset + count]
            filled += count
            self._held[0][1] = offset + count
            if offset + count == shard.num_rows:
                self._release(self._held.popleft()[0])

    def check_epoch_done(self, epoch: int) -> None:
        if self._held and self._held[0][0].epoch == epoch:
            raise ProtocolError(f"{self.name} sent more rows of epoch {epoch} than the plan has")

    def check_finished(self) -> None:
        if self._held or next(self._shards, None) is not None:
            raise ProtocolError(f"{self.name} sent rows past the end of the plan")


class Merger:
    """Shards of the whole dataset's plan, each assembled from the parts.

    `columns` are the (dtype, row shape) of each column, the same on every
    part (the loader checked), so each shard is allocated once, aligned.
    """

    def __init__(self, plan: HostPlan, parts: Sequence[PartQueue], part_rows: Sequence[int],
                 columns: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> None:
        self._plan = plan
        self._parts = list(parts)
        self._starts = np.cumsum([0, *part_rows])
        self._columns = columns

    def __iter__(self) -> Iterator[Shard]:
        epoch, order = None, None
        for cursor in self._plan.cursors():
            if cursor.epoch != epoch:
                if epoch is not None:
                    for part in self._parts:
                        part.check_epoch_done(epoch)
                epoch, order = cursor.epoch, self._plan.order(cursor.epoch)
            rows = self._plan.shard(cursor, order)
            part_of = np.searchsorted(self._starts, rows, side="right") - 1
            out = {name: aligned_empty((len(rows), *shape), dtype)
                   for name, (dtype, shape) in self._columns.items()}
            for index in np.unique(part_of):
                self._parts[index].take_into(epoch, out, np.flatnonzero(part_of == index))
            last = cursor.sequence == self._plan.shards_in(epoch) - 1
            yield Shard(cursor.epoch, cursor.sequence, len(rows), out, last)
        for part in self._parts:
            part.check_finished()
