"""Cuts the plan's shards into batches of exactly `batch_size` rows, and
keeps the position: where in the epoch's global order the next batch starts.

A batch that lies inside one shard is a view of it (no copy; the daemon
sizes shards in whole batches so that this is the common case). A batch
that spans shards is copied into one new aligned buffer. Batches never span
epochs. The daemon sends only rows that make batches (the plan drops the
rest), so the only short batch is a single process's last of an epoch.

Columns of varying length (Ragged) are sliced and joined the same way. A
shard may leave out rows of the plan (corrupt images skipped, one process
only): batches still have `batch_size` rows, and the position counts the
plan rows they used, skipped ones included, so a resume is exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..wire.aligned import aligned_empty
from ..wire.plan import Position
from ..wire.ragged import Ragged
from .decoder import Shard

Batch = dict[str, np.ndarray | Ragged]


@dataclass
class _Held:
    shard: Shard
    offset: int = 0
    counted: int = 0  # plan rows of the shard already counted in the position

    @property
    def remaining(self) -> int:
        return self.shard.num_rows - self.offset

    def plan_index(self, row: int) -> int:
        """Plan rows of the shard before delivered row `row` (skipped ones counted;
        those after the last row belong to the end)."""
        shard = self.shard
        if row >= shard.num_rows:
            return shard.plan_rows
        if not shard.skipped or row == 0:
            return row
        return int(np.delete(np.arange(shard.plan_rows), list(shard.skipped))[row])


class Batcher:
    """`start` is the global position of the first batch; each batch moves it
    by one global batch (`global_batch` rows: every process's share)."""

    def __init__(self, shards: Iterable[Shard], batch_size: int, global_batch: int,
                 start: Position, release: Callable[[Shard], None],
                 drop_short: bool = False) -> None:
        self._shards = shards
        # drop_last: a batch left short by skipped rows is dropped like the rest
        self._drop_short = drop_short
        self._batch_size = batch_size
        self._global_batch = global_batch
        self._release = release
        self._held: deque[_Held] = deque()
        self._rows = 0
        self._skipped = 0  # plan rows the batch being cut skips (corrupt images)
        self._position = Position(*start)
        self.epoch = start[0]  # epoch of the batch last handed out

    def get_state(self) -> dict[str, Any]:
        """Where the next batch starts, the same on every process of a run."""
        return self._position._asdict()

    def __iter__(self) -> Iterator[Batch]:
        epoch = None
        for shard in self._shards:
            if epoch is not None and shard.epoch != epoch:
                yield from self._end_of_epoch()
                self._skipped = 0  # the next epoch's position starts at its row 0
            epoch = shard.epoch
            if shard.num_rows == 0:  # every row skipped: they count, in their place
                self._skipped += shard.plan_rows
                self._release(shard)
                continue
            self._held.append(_Held(shard))
            self._rows += shard.num_rows
            while self._rows >= self._batch_size:
                yield self._handed_out(self._take(self._batch_size))
        yield from self._end_of_epoch()

    def _handed_out(self, batch: Batch) -> Batch:
        epoch = self.epoch
        if epoch != self._position.epoch:  # the first batch of a new epoch
            self._position = Position(epoch, 0)
        rows = len(next(iter(batch.values())))
        skipped, self._skipped = self._skipped, 0
        if rows < self._batch_size:  # a single process's short last batch
            self._position = Position(epoch + 1, 0)
        else:  # (rows are skipped only when the process is the only one)
            self._position = Position(epoch, self._position.row + self._global_batch + skipped)
        return batch

    def _end_of_epoch(self) -> Iterator[Batch]:
        if not self._rows:
            return
        batch = self._take(self._rows)
        if self._drop_short and len(next(iter(batch.values()))) < self._batch_size:
            self._position, self._skipped = Position(self.epoch + 1, 0), 0
            return
        yield self._handed_out(batch)

    def _advance(self, rows: int) -> None:
        head = self._held[0]
        counted = head.plan_index(head.offset + rows)
        self._skipped += counted - head.counted - rows
        head.counted = counted
        head.offset += rows
        self._rows -= rows
        if head.remaining == 0:
            self._release(self._held.popleft().shard)

    def _take(self, rows: int) -> Batch:
        head = self._held[0]
        self.epoch = head.shard.epoch
        if head.remaining >= rows:
            start = head.offset
            batch = {k: v[start:start + rows] for k, v in head.shard.columns.items()}
            self._advance(rows)
            return batch
        batch: dict[str, Any] = {
            k: [] if isinstance(v, Ragged) else aligned_empty((rows, *v.shape[1:]), v.dtype)
            for k, v in head.shard.columns.items()
        }
        filled = 0
        while filled < rows:
            head = self._held[0]
            n = min(rows - filled, head.remaining)
            for name, out in batch.items():
                piece = head.shard.columns[name][head.offset:head.offset + n]
                if isinstance(out, list):
                    out.append(piece)
                else:
                    out[filled:filled + n] = piece
            filled += n
            self._advance(n)
        return {k: Ragged.concat(v) if isinstance(v, list) else v for k, v in batch.items()}
