"""Cuts a stream of shards into batches of exactly `batch_size` rows.

A batch that lies inside one shard is a view of it (no copy; the daemon
sizes shards in whole batches so that this is the common case). A batch
that spans shards is copied into one new aligned buffer. Batches never span
epochs: the last batch of an epoch is short, or dropped with `drop_last`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .decoder import Shard
from .wire.aligned import aligned_empty

Batch = dict[str, np.ndarray]


@dataclass
class _Held:
    shard: Shard
    offset: int = 0

    @property
    def remaining(self) -> int:
        return self.shard.num_rows - self.offset


class Batcher:
    def __init__(
        self,
        shards: Iterable[Shard],
        batch_size: int,
        drop_last: bool,
        release: Callable[[Shard], None],
        skip_rows: int = 0,
    ) -> None:
        self._shards = shards
        self._batch_size = batch_size
        self._drop_last = drop_last
        self._release = release
        self._held: deque[_Held] = deque()
        self._rows = 0
        self.epoch = 0  # epoch of the batch last handed out
        self._skip = skip_rows  # rows of the first shard consumed before a restore


    def __iter__(self) -> Iterator[Batch]:
        for shard in self._shards:
            if self._held and self._held[0].shard.epoch != shard.epoch:
                yield from self._end_of_epoch()
            if self._skip >= shard.num_rows:
                raise ValueError(f"cannot skip {self._skip} rows of a {shard.num_rows}-row shard")
            self._held.append(_Held(shard, self._skip))
            self._rows += shard.num_rows - self._skip
            self._skip = 0
            while self._rows >= self._batch_size:
                yield self._take(self._batch_size)
        yield from self._end_of_epoch()

    def position(self) -> tuple[int, int, int] | None:
        """(epoch, sequence, row) of the next row to hand out, if a held shard has it."""
        if not self._held:
            return None
        head = self._held[0]
        return head.shard.epoch, head.shard.sequence, head.offset

    def _end_of_epoch(self) -> Iterator[Batch]:
        if self._rows and not self._drop_last:
            yield self._take(self._rows)
        while self._held:  # dropped rows still count as consumed
            self._rows -= self._held[0].remaining
            self._release(self._held.popleft().shard)

    def _advance(self, rows: int) -> None:
        head = self._held[0]
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
        batch = {
            k: aligned_empty((rows, *v.shape[1:]), v.dtype) for k, v in head.shard.columns.items()
        }
        filled = 0
        while filled < rows:
            head = self._held[0]
            n = min(rows - filled, head.remaining)
            for name, out in batch.items():
                out[filled:filled + n] = head.shard.columns[name][head.offset:head.offset + n]
            filled += n
            self._advance(n)
        return batch
