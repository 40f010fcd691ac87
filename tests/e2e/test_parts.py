"""One dataset on several daemons: `Loader([url_a, url_b], ...)` merges the
parts into one globally shuffled order, exactly once per epoch."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether
from tether.wire.plan import EpochOrder, Layout, combine

from ..conftest import DaemonProcess

SIZES = (7_000, 5_003)  # part A (Parquet), part B (.npy): 12,003 rows in all
TOTAL = sum(SIZES)


def _write_parts(root: Path) -> tuple[Path, Path]:
    """The rows' ids are their global index: part B continues where A ends."""
    a, b = root / "a" / "train.parquet", root / "b" / "train"
    a.parent.mkdir(parents=True)
    b.mkdir(parents=True)
    ids = np.arange(TOTAL, dtype=np.int64)
    x = np.stack([ids, ids * 2], axis=1).astype(np.float32)
    pq.write_table(pa.table({
        "id": ids[:SIZES[0]],
        "x": pa.FixedSizeListArray.from_arrays(pa.array(x[:SIZES[0]].reshape(-1)), 2),
    }), a, row_group_size=1_000)
    np.save(b / "id.npy", ids[SIZES[0]:])
    np.save(b / "x.npy", x[SIZES[0]:])
    return a, b


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    a, b = _write_parts(root)
    daemons = [DaemonProcess([a], root / "state-a"), DaemonProcess([b], root / "state-b")]
    yield daemons, (a, b), root
    for daemon in daemons:
        assert daemon.stop() == 0


def _urls(daemons) -> list[str]:
    return [d.url for d in daemons]


def _epochs(loader: tether.Loader) -> dict[int, np.ndarray]:
    per_epoch: dict[int, list[np.ndarray]] = {}
    for batch in loader:
        assert np.array_equal(batch["x"][:, 0], batch["id"])  # columns stay together
        per_epoch.setdefault(loader.epoch, []).append(batch["id"])
    return {epoch: np.concatenate(ids) for epoch, ids in per_epoch.items()}


def test_two_daemons_serve_one_globally_shuffled_dataset_exactly_once(parts) -> None:
    daemons, _, _ = parts
    options = {"batch_size": 64, "shuffle": True, "seed": 3, "num_epochs": 2}
    epochs = _epochs(tether.Loader(_urls(daemons), dataset="train", **options))
    # Parquet (7 row groups) and .npy are both under the default window: one
    # true permutation of all 12,003 rows, the same function the daemons use.
    layout = combine([Layout((1_000,) * 7, 0), Layout.random_access(SIZES[1])])
    for epoch in range(2):
        expected = EpochOrder(layout, True, 3, epoch).rows(np.arange(TOTAL))
        assert np.array_equal(epochs[epoch], expected)
    first_batch = epochs[0][:64]
    assert (first_batch < SIZES[0]).any() and (first_batch >= SIZES[0]).any()  # mixed
    again = _epochs(tether.Loader(_urls(daemons), dataset="train", **options))
    assert all(np.array_equal(epochs[e], again[e]) for e in range(2))  # deterministic


def test_processes_over_two_daemons_get_equal_disjoint_batches(parts) -> None:
    daemons, _, _ = parts
    results: dict[int, list[np.ndarray]] = {}

    def run(index: int) -> None:
        loader = tether.Loader(_urls(daemons), dataset="train", batch_size=50, shuffle=True,
                               seed=1, process_index=index, process_count=3)
        results[index] = [b["id"] for b in loader]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    steps = TOTAL // 150
    assert [len(results[i]) for i in range(3)] == [steps] * 3
    together = np.concatenate([b for i in range(3) for b in results[i]])
    assert len(np.unique(together)) == len(together) == steps * 150


def test_one_state_resumes_the_merged_stream(parts) -> None:
    daemons, _, _ = parts
    options = {"batch_size": 100, "shuffle": True, "seed": 5, "shard_bytes": 2 << 10}
    undisturbed = np.concatenate([b["id"] for b in tether.Loader(_urls(daemons),
                                                                 dataset="train", **options)])
    loader = tether.Loader(_urls(daemons), dataset="train", **options)
    batches = iter(loader)
    head = [next(batches)["id"] for _ in range(37)]
    state = loader.state_dict()
    loader.close()
    assert len(state["fingerprint"].split(",")) == 2  # both parts' versions
    resumed = tether.Loader(_urls(daemons), dataset="train", **options)
    resumed.load_state_dict(state)
    tail = [b["id"] for b in resumed]
    assert np.array_equal(np.concatenate(head + tail), undisturbed)


def test_a_part_restarted_mid_stream_reconnects_on_its_own(parts, tmp_path: Path) -> None:
    daemons, (_, b), root = parts
    part_b = DaemonProcess([b], tmp_path / "state-b2")
    urls = [daemons[0].url, part_b.url]
    options = {"batch_size": 100, "shuffle": True, "seed": 2, "shard_bytes": 2 << 10,
               "prefetch": 2}
    expected = np.concatenate([x["id"] for x in tether.Loader(urls, dataset="train",
                                                              **options)])
    loader = tether.Loader(urls, dataset="train", **options)
    batches = iter(loader)
    got = [next(batches)["id"] for _ in range(30)]
    part_b.proc.send_signal(signal.SIGKILL)
    part_b.proc.wait(10)
    again = DaemonProcess([b], tmp_path / "state-b2")  # same port, same identity
    try:
        got.extend(x["id"] for x in batches)
    finally:
        assert again.stop() == 0
    assert loader.reconnects >= 1
    assert np.array_equal(np.concatenate(got), expected)


def test_a_part_gone_for_good_fails_naming_its_daemon(parts, tmp_path: Path) -> None:
    daemons, (_, b), _ = parts
    part_b = DaemonProcess([b], tmp_path / "state-gone")
    loader = tether.Loader([daemons[0].url, part_b.url], dataset="train", batch_size=100,
                           shard_bytes=2 << 10, prefetch=2,
                           retry=tether.RetryPolicy(timeout=2, connect_timeout=2))
    batches = iter(loader)
    next(batches)
    part_b.proc.send_signal(signal.SIGKILL)
    part_b.proc.wait(10)
    address = tether.parse_url(part_b.url).target
    with pytest.raises(tether.ConnectionFailed, match=f"daemon {address}"):
        for _ in batches:
            pass


def test_parts_with_other_columns_are_refused_at_open(parts, tmp_path: Path) -> None:
    daemons, _, _ = parts
    other = tmp_path / "other" / "train"
    other.mkdir(parents=True)
    np.save(other / "id.npy", np.arange(10, dtype=np.int32))  # int32, not int64
    stranger = DaemonProcess([other], tmp_path / "state-other")
    try:
        with pytest.raises(tether.DatasetError, match="must have the same columns"):
            iter(tether.Loader([daemons[0].url, stranger.url], dataset="train", batch_size=5,
                               columns=["id"]))
    finally:
        assert stranger.stop() == 0


def test_the_same_daemon_listed_twice_is_refused(parts) -> None:
    """Issue 23 (6): `Loader([url_a, url_a])` delivered every row twice without
    a word. The same daemon (its URL, or another name for it: the same
    certificate) or the same dataset version twice is refused, saying which."""
    daemons, _, _ = parts
    url = daemons[0].url
    with pytest.raises(tether.RequestError, match="the same daemon"):
        next(iter(tether.Loader([url, url], dataset="train", batch_size=100)))
    other_name = url.replace("127.0.0.1", "localhost")  # the same daemon, another host name
    with pytest.raises(tether.RequestError, match="the same daemon"):
        next(iter(tether.Loader([url, other_name], dataset="train", batch_size=100)))


def test_the_same_dataset_version_from_two_daemons_is_refused(parts, tmp_path) -> None:
    daemons, (a, _), _ = parts
    with DaemonProcess([a], tmp_path / "state-copy") as twin, \
            pytest.raises(tether.DatasetError, match="the same version"):  # same files
        next(iter(tether.Loader([daemons[0].url, twin.url], dataset="train", batch_size=100)))
