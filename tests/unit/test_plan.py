"""The plan (tether.wire.plan): a global shuffle, equal batches on every
process, and positions that resume on any number of processes."""

from __future__ import annotations

import numpy as np
import pytest

from tether.wire.permutation import Permutation
from tether.wire.plan import Cursor, EpochOrder, HostPlan, Layout, Position


def _delivered(plan: HostPlan) -> dict[int, np.ndarray]:
    """Rows of each epoch in delivery order, shard by shard as the daemon sends them."""
    per_epoch: dict[int, list[np.ndarray]] = {}
    for cursor in plan.cursors():
        per_epoch.setdefault(cursor.epoch, []).append(plan.shard(cursor))
    return {epoch: np.concatenate(parts) for epoch, parts in per_epoch.items()}


def _found(tasks) -> list:
    """A part's shard tasks, without the SCANNING beats between them."""
    from tether.wire.plan import SCANNING

    return [t for t in tasks if t is not SCANNING]


def mean_classes(rows: np.ndarray, labels: np.ndarray, batch: int) -> float:
    """Distinct labels per batch, averaged over the full batches of `rows`."""
    full = len(rows) // batch * batch
    return float(np.mean([len(np.unique(b)) for b in labels[rows[:full]].reshape(-1, batch)]))


def random_baseline(labels: np.ndarray, batch: int, trials: int = 5) -> float:
    rng = np.random.default_rng(1234)
    return float(np.mean([mean_classes(rng.permutation(len(labels)), labels, batch)
                          for _ in range(trials)]))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 65, 1000, 4096, 4097, 123_457])
def test_a_permutation_holds_every_index_once(n: int) -> None:
    values = Permutation(n, key=99)[np.arange(n)]
    assert np.array_equal(np.sort(values), np.arange(n))


def test_a_permutation_depends_on_its_key_only_and_indexes_anywhere() -> None:
    full = Permutation(10_000, key=1)[np.arange(10_000)]
    assert np.array_equal(full, Permutation(10_000, key=1)[np.arange(10_000)])
    assert not np.array_equal(full, Permutation(10_000, key=2)[np.arange(10_000)])
    picks = np.array([9_999, 0, 4_321])
    assert np.array_equal(Permutation(10_000, key=1)[picks], full[picks])


@pytest.mark.parametrize("layout", [
    Layout.random_access(20_000),
    Layout((500,) * 40),  # row groups, one window: every row anywhere
    Layout((250,) * 80, window_rows=8_000),  # windows of many row groups
], ids=["random-access", "chunks", "windows"])
def test_the_epoch_order_is_a_permutation_that_mixes_classes(layout: Layout) -> None:
    rows = layout.num_rows
    labels = np.arange(rows) * 10 // rows  # class-sorted, as a converted image folder is
    baseline = random_baseline(labels, 256)
    for epoch in range(2):
        order = EpochOrder(layout, shuffle=True, seed=7, epoch=epoch).rows(np.arange(rows))
        assert np.array_equal(np.sort(order), np.arange(rows))
        assert mean_classes(order, labels, 256) >= 0.95 * baseline


def test_a_true_permutation_mixes_fine_classes_as_a_random_one_does() -> None:
    rows = 50_000
    labels = np.arange(rows) * 1000 // rows  # 1000 classes of 50 rows
    order = EpochOrder(Layout.random_access(rows), True, seed=3, epoch=0).rows(np.arange(rows))
    assert mean_classes(order, labels, 256) >= 0.95 * random_baseline(labels, 256)


def test_a_window_reads_each_chunk_in_one_stretch_of_the_order() -> None:
    """The windowed shuffle's promise: a chunk's rows all fall in one window, so
    a stream reads each chunk once per epoch with a window's worth of cache."""
    layout = Layout((100,) * 50, window_rows=1_000)
    order = EpochOrder(layout, True, seed=0, epoch=0).rows(np.arange(5_000))
    chunk_at = order // 100
    for chunk in range(50):
        where = np.flatnonzero(chunk_at == chunk)
        assert where.max() - where.min() < 2 * 1_000


def test_the_order_depends_on_seed_and_epoch() -> None:
    layout = Layout.random_access(1_000)
    first = EpochOrder(layout, True, 1, 0).rows(np.arange(1_000))
    assert np.array_equal(first, EpochOrder(layout, True, 1, 0).rows(np.arange(1_000)))
    assert not np.array_equal(first, EpochOrder(layout, True, 2, 0).rows(np.arange(1_000)))
    assert not np.array_equal(first, EpochOrder(layout, True, 1, 1).rows(np.arange(1_000)))
    assert np.array_equal(EpochOrder(layout, False, 1, 0).rows(np.arange(1_000)),
                          np.arange(1_000))


@pytest.mark.parametrize("rows", [1, 7, 64, 127, 1_000, 20_011, 61_417])
@pytest.mark.parametrize("processes", [1, 2, 3, 8])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_process_gets_the_same_full_batches_and_no_row_twice(
        rows: int, processes: int, batch_size: int, shuffle: bool) -> None:
    global_batch = processes * batch_size
    if rows < global_batch:
        return  # refused at open: tests/e2e/test_plan.py
    layout = Layout.random_access(rows)
    plans = [HostPlan(layout, shuffle, 5, batch_size, shard_rows=max(37, rows // 16),
                      process_index=p,
                      process_count=processes, drop_last=True, num_epochs=2)
             for p in range(processes)]
    delivered = [_delivered(plan) for plan in plans]
    for epoch in range(2):
        parts = [d.get(epoch, np.array([], dtype=np.int64)) for d in delivered]
        full = rows // global_batch
        assert [len(p) for p in parts] == [full * batch_size] * processes
        together = np.concatenate(parts)
        assert len(np.unique(together)) == len(together)  # never a row twice
        assert rows - len(together) == plans[0].dropped_rows(epoch) < global_batch


def test_a_single_process_keeps_its_short_last_batch_unless_drop_last() -> None:
    layout = Layout.random_access(1_003)
    kept = _delivered(HostPlan(layout, True, 0, 100, shard_rows=64, num_epochs=1))[0]
    assert np.array_equal(np.sort(kept), np.arange(1_003))
    dropped = _delivered(HostPlan(layout, True, 0, 100, shard_rows=64, drop_last=True))[0]
    assert len(dropped) == 1_000


def test_unshuffled_epochs_drop_another_remainder_each_epoch() -> None:
    plans = [HostPlan(Layout.random_access(1_000), False, 0, 64, shard_rows=64,
                      process_index=p, process_count=3, num_epochs=4) for p in range(3)]
    delivered = [_delivered(plan) for plan in plans]
    left_out = [set(range(1_000)) - set(np.concatenate([d[e] for d in delivered]).tolist())
                for e in range(4)]
    assert all(len(s) == 1_000 - 960 for s in left_out)
    assert len(set(map(frozenset, left_out))) == 4


def test_the_row_order_does_not_depend_on_shard_or_batch_size() -> None:
    layout = Layout((300, 300, 400), window_rows=0)
    orders = {
        (batch, shard): _delivered(HostPlan(layout, True, 9, batch, shard_rows=shard))[0]
        for batch in (1, 32, 100) for shard in (1, 33, 1_000)
    }
    first = next(iter(orders.values()))
    assert all(np.array_equal(first, order) for order in orders.values())


def test_a_position_saved_by_two_processes_resumes_on_three_exactly() -> None:
    layout = Layout.random_access(10_000)
    common = {"layout": layout, "shuffle": True, "seed": 4, "shard_rows": 50, "num_epochs": 1}
    before = [HostPlan(**common, batch_size=32, process_index=p, process_count=2)
              for p in range(2)]
    steps = 70  # each process consumed 70 batches: position 70 x 64
    consumed = [_delivered(plan)[0][:steps * 32] for plan in before]
    position = Position(0, steps * 64)
    after = [HostPlan(**common, batch_size=32, process_index=p, process_count=3,
                      start=position) for p in range(3)]
    rest = [_delivered(plan).get(0, np.array([], dtype=np.int64)) for plan in after]
    assert len({len(r) for r in rest}) == 1  # equal on the three
    everything = np.concatenate(consumed + rest)
    assert len(np.unique(everything)) == len(everything)
    assert 10_000 - len(everything) < 3 * 32  # only the last partial global batch is left


def test_cursors_carry_across_epochs_and_jump_far_in_constant_time() -> None:
    plan = HostPlan(Layout.random_access(1_000), True, 0, 10, shard_rows=100,
                    start=Position(2, 450), num_epochs=None)
    assert plan.first() == Cursor(2, 0)
    assert plan.shards_in(2) == 6 and plan.shards_in(3) == 10
    assert plan.normalize(Cursor(2, 6)) == Cursor(3, 0)
    assert plan.normalize(Cursor(2, 6 + 10 * 10**15 + 3)) == Cursor(3 + 10**15, 3)
    assert plan.following(Cursor(2, 5)) == Cursor(3, 0)
    with pytest.raises(ValueError, match="before the stream's start"):
        plan.normalize(Cursor(1, 0))


def test_parts_shuffle_as_one_dataset_and_each_part_streams_its_own_rows() -> None:
    """What several daemons send (part_tasks), merged by the plan, is the plan."""
    from tether.wire.plan import combine, part_tasks

    parts = [Layout((400,) * 10, window_rows=2_000), Layout.random_access(3_001)]
    layout = combine(parts)
    assert layout.windowed and layout.num_rows == 7_001
    assert max(layout.chunk_rows) == 400  # the random-access part, cut to mix into windows
    plan = HostPlan(layout, True, 6, 64, shard_rows=100, process_index=1, process_count=2,
                    num_epochs=2)
    whole = _delivered(plan)
    starts = [0, 4_000, 7_001]
    for epoch in range(2):
        streams = []
        for index in range(2):
            tasks = [t for t in _found(part_tasks(plan, range(starts[index], starts[index + 1])))
                     if t.cursor.epoch == epoch]
            assert [t.cursor.sequence for t in tasks] == list(range(len(tasks)))
            assert [t.last_in_epoch for t in tasks] == [False] * (len(tasks) - 1) + [True]
            streams.append(np.concatenate([t.rows for t in tasks]) + starts[index])
        part_of = np.searchsorted(starts, whole[epoch], side="right") - 1
        for index in range(2):
            assert np.array_equal(whole[epoch][part_of == index], streams[index])


def test_a_part_stream_resumes_at_any_of_its_shards() -> None:
    from tether.wire.plan import part_tasks

    plan = HostPlan(Layout.random_access(5_000), True, 1, 10, shard_rows=64, num_epochs=2)
    part = range(1_000, 3_000)
    every = _found(part_tasks(plan, part))
    later = _found(part_tasks(plan, part, Cursor(1, 5)))
    index = next(i for i, t in enumerate(every) if t.cursor == Cursor(1, 5))
    assert [t.cursor for t in later] == [t.cursor for t in every[index:]]
    assert all(np.array_equal(a.rows, b.rows) for a, b in zip(later, every[index:],
                                                             strict=True))


def test_an_unshuffled_position_resumes_on_another_layout_exactly() -> None:
    """Unshuffled epochs are rotated (so that no row is always dropped) by an
    amount that must not depend on how the order is cut: a state saved by two
    processes mid-epoch used to resume on one with rows repeated and skipped."""
    layout = Layout.random_access(10)
    before = [HostPlan(layout, False, 0, 2, shard_rows=2, process_index=p, process_count=2,
                       num_epochs=2) for p in range(2)]
    consumed = [_delivered(plan)[1][:2] for plan in before]  # one step of epoch 1 each
    after = HostPlan(layout, False, 0, 2, shard_rows=2, start=Position(1, 4), num_epochs=2)
    rest = _delivered(after)[1]
    assert sorted(np.concatenate(consumed + [rest]).tolist()) == list(range(10))
