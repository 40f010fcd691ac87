"""Loader(cache=...) end to end: the real daemon, real gRPC, rows on disk.

Whatever the cache holds, the loader delivers exactly what it delivers
without one: the same rows, in the same order, once each."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import numpy as np
import pytest

import tether
from tether.bench.link import Link, ShapedProxy
from tether.cache.directory import OVERHEAD_BYTES
from tether.wire.errors import DatasetError, RequestError
from tether.wire.v1 import tether_pb2 as pb

from ..conftest import DaemonProcess, collect
from ..security.test_access_and_uploads import _raw_stream

OPTIONS = {"dataset": "train", "batch_size": 100, "shuffle": True, "seed": 5,
           "num_epochs": 3, "shard_bytes": 16 << 10}
ROWS = 3000
ROW_BYTES = 8 + 8 * 4 + 4 * 4 * 3 + 4  # conftest.make_features: id, x, image, label


@pytest.fixture
def daemon(npy_dataset, serve):
    return serve(npy_dataset(ROWS))


@pytest.fixture
def baseline(daemon) -> list[dict[str, np.ndarray]]:
    batches, _ = collect(tether.Loader(daemon.url, **OPTIONS))
    return batches


def assert_same(batches, expected) -> None:
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected, strict=True):
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_epochs_after_the_first_come_from_disk_in_the_same_order(daemon, baseline,
                                                                  tmp_path: Path) -> None:
    with tether.Loader(daemon.url, cache=tmp_path / "cache", **OPTIONS) as loader:
        batches, _ = collect(loader)
        stats = loader.stats()
    assert_same(batches, baseline)
    assert stats["cache_rows_fetched"] == ROWS  # each row crossed once, in epoch 1
    assert stats["cache_rows_read"] == 2 * ROWS  # epochs 2 and 3 read the disk
    with tether.Loader(daemon.url, cache=tmp_path / "cache", **OPTIONS) as loader:
        batches, _ = collect(loader)
        stats = loader.stats()
    assert_same(batches, baseline)  # a new loader: every epoch from disk
    assert stats["cache_rows_fetched"] == 0 and stats["wire_mb_per_s"] == 0


def test_later_epochs_need_no_daemon(npy_dataset, tmp_path: Path) -> None:
    daemon = DaemonProcess([npy_dataset(ROWS)], tmp_path / "state")  # killed here
    try:
        baseline, _ = collect(tether.Loader(daemon.url, **OPTIONS))
        loader = tether.Loader(daemon.url, cache=tmp_path / "cache", **OPTIONS)
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == len(baseline) // 3:  # the first epoch is all here
                daemon.proc.send_signal(signal.SIGKILL)
                daemon.proc.wait()
        loader.close()
    finally:
        daemon.close()
    assert_same(batches, baseline)


def test_a_cache_smaller_than_the_data_still_delivers_exactly(daemon, baseline,
                                                              tmp_path: Path) -> None:
    limit = ROWS // 3 * (ROW_BYTES + 16) + ROWS * 4 + OVERHEAD_BYTES  # + stamps, sums, index
    with tether.Loader(daemon.url, cache=tmp_path / "cache", cache_limit=limit,
                       **OPTIONS) as loader:
        batches, _ = collect(loader)
        stats = loader.stats()
    assert_same(batches, baseline)
    assert stats["cache_capacity_rows"] == ROWS // 3
    assert stats["cache_rows_held"] <= ROWS // 3
    assert stats["cache_rows_read"] + stats["cache_rows_fetched"] == 3 * ROWS
    assert stats["cache_rows_read"] > 0  # some later rows were still there


def test_a_changed_dataset_is_fetched_anew(npy_dataset, serve, tmp_path: Path) -> None:
    folder = npy_dataset(ROWS)
    daemon = serve(folder)
    options = {**OPTIONS, "num_epochs": 1}
    with tether.Loader(daemon.url, cache=tmp_path / "cache", **options) as loader:
        collect(loader)
    np.save(folder / "label.npy", np.full(ROWS, 7, dtype=np.int32))  # a new version
    with tether.Loader(daemon.url, cache=tmp_path / "cache", **options) as loader:
        _, columns = collect(loader)
        stats = loader.stats()
    assert (columns["label"] == 7).all()
    assert stats["cache_rows_fetched"] == ROWS
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1


def test_a_saved_state_resumes_exactly_with_the_cache(daemon, baseline, tmp_path) -> None:
    loader = tether.Loader(daemon.url, cache=tmp_path / "cache", **OPTIONS)
    taken = []
    for batch in loader:
        taken.append(batch)
        if len(taken) == len(baseline) // 3 + 7:  # mid epoch 2
            break
    state = loader.state_dict()
    loader.close()
    resumed = tether.Loader(daemon.url, cache=tmp_path / "cache", **OPTIONS)
    resumed.load_state_dict(state)
    rest, _ = collect(resumed)
    resumed.close()
    assert_same(taken + rest, baseline)


def test_cut_connections_with_the_cache_change_nothing(daemon, baseline, tmp_path) -> None:
    port = tether.parse_url(daemon.url).port
    proxy = ShapedProxy(("127.0.0.1", port), Link("cutting", None),
                        cut_range=(30_000, 120_000), seed=3)
    try:
        through = tether.parse_url(daemon.url).with_address("127.0.0.1", proxy.port)
        limit = ROWS // 2 * (ROW_BYTES + 16) + ROWS * 4 + OVERHEAD_BYTES  # shards stream partly
        with tether.Loader(through, cache=tmp_path / "cache", cache_limit=limit,
                           **OPTIONS) as loader:
            batches, _ = collect(loader)
            reconnects = loader.reconnects
    finally:
        cuts = proxy.close().count("cut after")
    assert cuts >= 2 and reconnects >= 2
    assert_same(batches, baseline)


def test_what_the_cache_cannot_keep_is_refused_clearly(tmp_path: Path, serve) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"tokens": pa.array([[1, 2], [3], [4, 5, 6]] * 10),
                      "id": np.arange(30)})
    pq.write_table(table, tmp_path / "text.parquet")
    daemon = serve(tmp_path / "text.parquet")
    loader = tether.Loader(daemon.url, dataset="text", batch_size=10,
                           cache=tmp_path / "cache")
    with pytest.raises(DatasetError, match=r"\['tokens'\] vary in length.*columns="):
        next(iter(loader))
    loader.close()
    with tether.Loader(daemon.url, dataset="text", batch_size=10, columns=["id"],
                       cache=tmp_path / "cache") as loader:
        _, columns = collect(loader)
    assert sorted(columns["id"]) == list(range(30))
    with pytest.raises(RequestError, match="several daemons"):
        tether.Loader([daemon.url, daemon.url], dataset="text", batch_size=10,
                      cache=tmp_path / "cache")


def test_wants_that_break_the_protocol_fail_the_stream_not_the_daemon(daemon) -> None:
    opened = {"dataset": "train", "batch_size": 100, "initial_credits": 4}
    plain = pb.StreamRequest(open=pb.OpenStream(**opened)).SerializeToString()
    wanting = pb.StreamRequest(open=pb.OpenStream(**opened, wants=True)).SerializeToString()

    def named(epoch: int, sequence: int, have: bytes = b"\0\0") -> bytes:
        return pb.StreamRequest(want=pb.Want(epoch=epoch, sequence=sequence,
                                             have=have)).SerializeToString()

    assert _raw_stream(daemon.url, [plain, named(0, 0)]) == grpc.StatusCode.INVALID_ARGUMENT
    assert _raw_stream(daemon.url, [wanting, named(0, 2), named(0, 1)]) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert _raw_stream(daemon.url, [wanting, named(0, 0, b"\xff" * 9)]) \
        == grpc.StatusCode.INVALID_ARGUMENT
    with tether.Loader(daemon.url, dataset="train", batch_size=100) as loader:
        _, columns = collect(loader)
    assert sorted(columns["id"]) == list(range(ROWS))  # still serving, exactly


def test_two_daemons_serving_one_name_keep_their_entries_side_by_side(
        npy_dataset, serve, tmp_path: Path) -> None:
    """Issue 23 (8): two daemons serving a dataset named `train` through one cache
    folder thrashed: making B's entry deleted A's (another version of the same
    name), so alternating between them fetched everything every time."""
    first = npy_dataset(ROWS, seed=1)
    (tmp_path / "a").mkdir()
    a = serve(first.rename(tmp_path / "a" / "train"))
    b = serve(npy_dataset(ROWS, seed=2))  # another daemon, other rows, the same name
    options = {**OPTIONS, "num_epochs": 1}
    fetched = []
    for daemon in (a, b, a, b):
        with tether.Loader(daemon.url, cache=tmp_path / "cache", **options) as loader:
            collect(loader)
            fetched.append(loader.stats()["cache_rows_fetched"])
    assert fetched == [ROWS, ROWS, 0, 0]  # the second visit of each: all from disk


def test_rows_changed_on_disk_are_fetched_again_not_delivered(daemon, baseline, tmp_path,
                                                               caplog) -> None:
    """Issue 23 (5): 50 cached ids overwritten in a column file between runs were
    read back and delivered, although every wire frame is checksummed. Each
    slot's checksum is checked at lookup: those rows are fetched again."""
    with tether.Loader(daemon.url, cache=tmp_path / "cache", **OPTIONS) as loader:
        collect(loader)
    [entry] = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    ids = next(np.load(path, mmap_mode="r+") for path in sorted(entry.glob("column*.npy"))
               if np.load(path, mmap_mode="r").dtype == np.int64)
    tampered = np.random.default_rng(0).choice(len(ids), 50, replace=False)
    ids[tampered] = -ids[tampered] - 1  # every one changed
    ids.flush()
    del ids
    with caplog.at_level("WARNING", logger="tether.cache.row_cache"), \
            tether.Loader(daemon.url, cache=tmp_path / "cache", **OPTIONS) as loader:
        batches, _ = collect(loader)
        stats = loader.stats()
    assert_same(batches, baseline)  # not one wrong value
    assert stats["cache_rows_changed"] == 50 and stats["cache_rows_fetched"] == 50
    assert caplog.text.count("changed on disk since they were stored") == 1
    assert "50 rows had changed on disk" in caplog.text
