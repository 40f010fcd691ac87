"""The batcher: exact batch sizes, no row lost or repeated, views when it can,
and the global position of the next batch."""

from __future__ import annotations

import numpy as np

from tether.pipeline.batcher import Batcher
from tether.pipeline.decoder import Shard
from tether.wire.aligned import is_aligned
from tether.wire.plan import Position


def _shards(sizes: list[int], epochs: int = 1) -> list[Shard]:
    shards, row = [], 0
    for epoch in range(epochs):
        for sequence, size in enumerate(sizes):
            ids = np.arange(row, row + size)
            shards.append(Shard(epoch, sequence, size, {"id": ids, "x": ids * 2.0}))
            row += size
    return shards


def _batcher(shards, batch_size: int, release=lambda shard: None, processes: int = 1,
             start: tuple[int, int] = (0, 0)) -> Batcher:
    return Batcher(shards, batch_size, batch_size * processes, Position(*start), release)


def test_batches_are_exact_and_cover_every_row_once() -> None:
    shards = _shards([10, 7, 13, 3], epochs=2)
    released = []
    batches = list(_batcher(shards, 4, released.append))
    assert [len(b["id"]) for b in batches] == ([4] * 8 + [1]) * 2  # never across epochs
    assert np.array_equal(np.concatenate([b["id"] for b in batches]), np.arange(66))
    assert all(np.array_equal(b["x"], b["id"] * 2.0) for b in batches)
    assert [(s.epoch, s.sequence) for s in released] == [(s.epoch, s.sequence) for s in shards]


def test_batches_inside_a_shard_are_views_and_spanning_ones_are_aligned_copies() -> None:
    shards = _shards([8, 8])
    batches = list(_batcher(shards, 4))
    assert all(np.shares_memory(b["id"], shards[i // 2].columns["id"])
               for i, b in enumerate(batches))
    spanning = list(_batcher(_shards([6, 6]), 4))
    assert is_aligned(spanning[1]["x"])
    assert np.array_equal(spanning[1]["id"], [4, 5, 6, 7])


def test_a_shard_is_released_only_once_all_its_rows_are_batched() -> None:
    released = []
    batches = iter(_batcher(_shards([10]), 4, released.append))
    next(batches)
    next(batches)
    assert released == []
    next(batches)
    assert len(released) == 1


def test_the_position_counts_global_batches_and_moves_on_after_a_short_batch() -> None:
    batcher = _batcher(_shards([10], epochs=2), 4)
    positions = [Position(**batcher.get_state())]
    for _ in batcher:
        positions.append(Position(**batcher.get_state()))
    # 4 + 4 + a short 2: then the next epoch starts at its row 0
    assert positions == [(0, 0), (0, 4), (0, 8), (1, 0), (1, 4), (1, 8), (2, 0)]


def test_with_several_processes_a_batch_moves_the_position_by_the_global_batch() -> None:
    batcher = _batcher(_shards([6, 6], epochs=2), 3, processes=4, start=(0, 24))
    states = []
    for _ in batcher:
        states.append(Position(**batcher.get_state()))
    assert states == [(0, 36), (0, 48), (0, 60), (0, 72), (1, 12), (1, 24), (1, 36), (1, 48)]


def _skipping(epoch: int, sequence: int, rows: int, skipped: tuple[int, ...],
              last: bool = False) -> Shard:
    delivered = rows - len(skipped)
    return Shard(epoch, sequence, delivered, {"x": np.arange(delivered)}, last, skipped)


def test_an_epoch_ending_in_a_shard_of_only_skipped_rows_starts_the_next_at_row_0() -> None:
    shards = [_skipping(0, 0, 4, ()), _skipping(0, 1, 4, ()), _skipping(0, 2, 4, (0, 1, 2, 3)),
              _skipping(1, 0, 4, ()), _skipping(1, 1, 4, (1,))]
    batcher = Batcher(shards, 4, 4, Position(0, 0), lambda shard: None)
    states = []
    for _ in batcher:
        states.append(batcher.get_state())
    assert states[:3] == [{"epoch": 0, "row": 4}, {"epoch": 0, "row": 8},
                          {"epoch": 1, "row": 4}]
    assert states[3] == {"epoch": 2, "row": 0}  # the short last batch (3 rows) ends epoch 1


def test_drop_last_drops_a_batch_left_short_by_skipped_rows() -> None:
    shards = [_skipping(0, 0, 4, ()), _skipping(0, 1, 4, (2,)), _skipping(1, 0, 4, ())]
    batcher = Batcher(shards, 4, 4, Position(0, 0), lambda shard: None, drop_short=True)
    sizes = [len(batch["x"]) for batch in batcher]
    assert sizes == [4, 4]
    assert batcher.get_state() == {"epoch": 1, "row": 4}
