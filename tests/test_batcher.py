"""The batcher: exact batch sizes, no row lost or repeated, views when it can."""

from __future__ import annotations

import numpy as np
import pytest

from tether.batcher import Batcher
from tether.decoder import Shard
from tether.wire.aligned import is_aligned


def _shards(sizes: list[int], epochs: int = 1) -> list[Shard]:
    shards, row = [], 0
    for epoch in range(epochs):
        for sequence, size in enumerate(sizes):
            ids = np.arange(row, row + size)
            shards.append(Shard(epoch, sequence, sequence, size, {"id": ids, "x": ids * 2.0}))
            row += size
    return shards


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_are_exact_and_cover_every_row_once(drop_last: bool) -> None:
    shards = _shards([10, 7, 13, 3], epochs=2)
    released = []
    batches = list(Batcher(shards, 4, drop_last, released.append))
    per_epoch = 33
    sizes = [len(b["id"]) for b in batches]
    if drop_last:
        assert sizes == [4] * 16
    else:
        assert sizes == ([4] * 8 + [1]) * 2  # batches never span epochs
    ids = np.concatenate([b["id"] for b in batches])
    expected = np.arange(2 * per_epoch)
    if drop_last:
        expected = np.concatenate([np.arange(32), np.arange(33, 65)])
    assert np.array_equal(ids, expected)
    assert all(np.array_equal(b["x"], b["id"] * 2.0) for b in batches)
    assert [(s.epoch, s.sequence) for s in released] == [(s.epoch, s.sequence) for s in shards]


def test_batches_inside_a_shard_are_views_and_spanning_ones_are_aligned_copies() -> None:
    shards = _shards([8, 8])
    batches = list(Batcher(shards, 4, False, lambda s: None))
    assert all(np.shares_memory(b["id"], shards[i // 2].columns["id"])
               for i, b in enumerate(batches))
    spanning = list(Batcher(_shards([6, 6]), 4, False, lambda s: None))
    assert is_aligned(spanning[1]["x"])
    assert np.array_equal(spanning[1]["id"], [4, 5, 6, 7])


def test_a_shard_is_released_only_once_all_its_rows_are_batched() -> None:
    released = []
    batches = iter(Batcher(_shards([10]), 4, False, released.append))
    next(batches)
    next(batches)
    assert released == []
    next(batches)
    assert len(released) == 1
