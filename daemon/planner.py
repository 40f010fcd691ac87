"""The deterministic plan of a stream: which rows each shard holds, in what order.

A shard is a contiguous row range of the dataset. Each epoch, with shuffle
on, the shard order is permuted and so are the rows inside each shard, both
from (seed, epoch[, shard]), so any position in any epoch can be recomputed
from the request alone. That is what makes resuming exact. Processes take
every process_count-th shard of the epoch's order: disjoint, and together
every row.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


def shard_rows(row_bytes: int, shard_bytes: int, batch_size: int) -> int:
    """Rows per shard: about `shard_bytes`, rounded down to whole batches."""
    rows = max(1, shard_bytes // max(row_bytes, 1))
    if batch_size and rows >= batch_size:
        rows -= rows % batch_size
    return rows


@dataclass(frozen=True)
class ShardSpec:
    index: int  # position in the unshuffled plan
    start: int
    stop: int


class Plan:
    def __init__(self, num_rows: int, rows_per_shard: int, shuffle: bool, seed: int,
                 process_index: int = 0, process_count: int = 1) -> None:
        self.num_rows = num_rows
        self.shard_rows = rows_per_shard
        self.shuffle = shuffle
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        self.num_shards = math.ceil(num_rows / rows_per_shard)
        self.shards_per_epoch = len(range(process_index, self.num_shards, process_count))

    @functools.lru_cache(maxsize=2)  # noqa: B019 - a plan lives as long as its stream
    def _order(self, epoch: int) -> np.ndarray:
        order = np.arange(self.num_shards)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_shards)
        return order[self.process_index::self.process_count]

    def shard(self, epoch: int, sequence: int) -> ShardSpec:
        index = int(self._order(epoch)[sequence])
        start = index * self.shard_rows
        return ShardSpec(index, start, min(start + self.shard_rows, self.num_rows))

    def row_order(self, epoch: int, spec: ShardSpec) -> np.ndarray | None:
        """Permutation of the shard's rows, or None to keep them in place."""
        if not self.shuffle:
            return None
        rng = np.random.default_rng([self.seed, epoch, spec.index])
        return rng.permutation(spec.stop - spec.start)
