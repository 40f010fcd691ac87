"""A windowed Parquet shuffle reads each row group once per epoch, loading
the next window ahead, in the daemon's cache of two windows."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tether.daemon.sources.parquet import ParquetSource
from tether.daemon.sources.row_blocks import CACHE_BYTES, BlockCache
from tether.daemon.stream.codec_policy import FixedCodec
from tether.daemon.stream.encoder import (
    IN_ORDER_FLOOR,
    IN_ORDER_SHARDS,
    ShardEncoder,
    cache_bytes,
)
from tether.daemon.stream.stats import Stats
from tether.wire import framing, tensors
from tether.wire.plan import EpochOrder, HostPlan, Layout, shard_tasks


class CountingParquet(ParquetSource):
    """The real source, counting the row groups it decodes."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.reads: list[int] = []
        self._count_lock = threading.Lock()

    def _file(self, index: int) -> pq.ParquetFile:
        file = super()._file(index)
        reads, lock = self.reads, self._count_lock

        class Counting:
            def read_row_group(self, group: int, **kwargs):
                with lock:
                    reads.append(group)
                return file.read_row_group(group, **kwargs)

        return Counting()


def test_window_chunks_partition_the_chunks() -> None:
    layout = Layout((100,) * 30, window_rows=700)
    order = EpochOrder(layout, True, seed=2, epoch=0)
    firsts = np.concatenate([order.window_chunk_rows(w) for w in range(order.num_windows)])
    assert order.num_windows == 5
    assert np.array_equal(np.sort(firsts), np.arange(0, 3_000, 100))


@pytest.mark.parametrize("window_rows", [3_648, 3_863, 4_078, 4_292, 4_507, 5_365])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_row_group_is_read_once_per_epoch(tmp_path: Path, window_rows: int,
                                               seed: int) -> None:
    rows = 12_000
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": np.arange(rows, dtype=np.int64)}), path,
                   row_group_size=500)  # 24 row groups
    source = CountingParquet("train", [path], tmp_path)
    layout = Layout(source.layout(1 << 30).chunk_rows, window_rows)  # 6 to 11 groups a window
    plan = HostPlan(layout, True, seed, batch_size=100, shard_rows=300, num_epochs=2)
    with ThreadPoolExecutor(2) as pool:
        encoder = ShardEncoder(source, source.select(["id"]), plan, FixedCodec("none"),
                               narrow=False, checksum="crc32", stats=Stats(), pool=pool)
        # Only what the plan needs (two windows and their edges), without the
        # floor that keeps small datasets whole: so epochs must read again.
        encoder.cache = BlockCache(cache_bytes(plan, row_bytes=8, floor=0))
        delivered = []
        for task in shard_tasks(plan):
            frame = framing.decode(encoder.encode(task))
            delivered.append(tensors.decode(frame.shard.tensors[0], frame.payload))
    ids = np.concatenate(delivered)
    for epoch in range(2):
        assert np.array_equal(np.sort(ids[epoch * rows:(epoch + 1) * rows]), np.arange(rows))
    # Once an epoch at most (a group the next epoch's first window shares with
    # this one's last may stay cached, and is then read once for both).
    reads = Counter(source.reads)
    assert sorted(reads) == list(range(24))
    assert max(reads.values()) <= 2 and sum(reads.values()) > 24


def test_the_next_window_is_read_while_this_one_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": np.arange(12_000, dtype=np.int64)}), path,
                   row_group_size=500)
    source = CountingParquet("train", [path], tmp_path)
    plan = HostPlan(source.layout(window_bytes=4_000 * 8), True, 5, batch_size=100,
                    shard_rows=300, num_epochs=1)
    pool = ThreadPoolExecutor(2)
    encoder = ShardEncoder(source, source.select(["id"]), plan, FixedCodec("none"),
                           narrow=False, checksum="crc32", stats=Stats(), pool=pool)
    encoder.encode(next(shard_tasks(plan)))  # the first shard of window 0
    pool.shutdown(wait=True)
    order = plan.order(0)
    window_0, window_1 = (set((order.window_chunk_rows(w) // 500).tolist()) for w in (0, 1))
    assert window_1 and window_0.isdisjoint(window_1)
    assert set(source.reads) == window_0 | window_1  # window 1 loaded ahead, nothing else


def test_an_unshuffled_stream_caches_only_the_blocks_in_flight(tmp_path: Path) -> None:
    rows = 12_000
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": np.arange(rows, dtype=np.int64)}), path,
                   row_group_size=500)  # 24 row groups of 4 KB
    source = CountingParquet("train", [path], tmp_path)
    plan = HostPlan(source.layout(1 << 30), False, 0, batch_size=100, shard_rows=300,
                    num_epochs=1)
    encoder = ShardEncoder(source, source.select(["id"]), plan, FixedCodec("none"),
                           narrow=False, checksum="crc32", stats=Stats())
    assert encoder.cache.limit == IN_ORDER_FLOOR < CACHE_BYTES  # this small a table: the floor
    encoder.cache = BlockCache(cache_bytes(plan, row_bytes=8, floor=0))  # what the plan needs
    # Two shards encoded at once, as the daemon does, and no worker more than a
    # shard ahead: the daemon's credits bound the shards in flight. (pool.map over
    # every shard let one worker, its peer descheduled, run far enough ahead to
    # evict a block the peer still needed: a flake on a loaded CI machine.)
    tasks = list(shard_tasks(plan))
    with ThreadPoolExecutor(2) as pool:
        frames = [frame for pair in range(0, len(tasks), 2)
                  for frame in pool.map(encoder.encode, tasks[pair:pair + 2])]
    ids = np.concatenate([tensors.decode(f.shard.tensors[0], f.payload)
                          for f in map(framing.decode, frames)])
    assert np.array_equal(ids, np.arange(rows))
    assert sorted(Counter(source.reads).items()) == [(g, 1) for g in range(24)]
    # the blocks of the shards in flight, not all 24
    assert encoder.cache.limit == (IN_ORDER_SHARDS * 300 + 2 * 500) * 8
    assert encoder.cache.nbytes <= encoder.cache.limit < 24 * 500 * 8
