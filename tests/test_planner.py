"""The plan: deterministic, disjoint across processes, complete, shuffled by seed."""

from __future__ import annotations

import numpy as np
import pytest

from tether.daemon.planner import Plan, shard_rows


def _rows(plan: Plan, epoch: int) -> list[int]:
    rows = []
    for sequence in range(plan.shards_per_epoch):
        spec = plan.shard(epoch, sequence)
        order = plan.row_order(epoch, spec)
        block = np.arange(spec.start, spec.stop)
        rows.extend(block if order is None else block[order])
    return rows


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("processes", [1, 3, 4])
def test_processes_are_disjoint_and_cover_every_row(shuffle: bool, processes: int) -> None:
    plans = [Plan(1003, 50, shuffle, seed=7, process_index=p, process_count=processes)
             for p in range(processes)]
    for epoch in range(2):
        parts = [_rows(p, epoch) for p in plans]
        together = sorted(r for part in parts for r in part)
        assert together == list(range(1003))


def test_same_seed_same_order_other_seed_or_epoch_other_order() -> None:
    a = _rows(Plan(1000, 64, True, seed=1), 0)
    assert a == _rows(Plan(1000, 64, True, seed=1), 0)
    assert a != _rows(Plan(1000, 64, True, seed=2), 0)
    assert a != _rows(Plan(1000, 64, True, seed=1), 1)
    assert _rows(Plan(1000, 64, False, seed=1), 0) == list(range(1000))


def test_shard_rows_are_whole_batches_of_about_shard_bytes() -> None:
    assert shard_rows(row_bytes=1024, shard_bytes=4 << 20, batch_size=1000) == 4000
    assert shard_rows(row_bytes=1024, shard_bytes=4 << 20, batch_size=0) == 4096
    # a batch larger than a shard: shards stay near shard_bytes
    assert shard_rows(row_bytes=1 << 20, shard_bytes=4 << 20, batch_size=256) == 4
    assert shard_rows(row_bytes=10 << 20, shard_bytes=4 << 20, batch_size=8) == 1
