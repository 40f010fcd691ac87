"""The plan through the real daemon and loader: a global shuffle in every
format, one order whatever the request's shape, equal batches on every
process, and a state saved by two processes resumed by three."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether

from ..conftest import collect
from ..formats import ROWS, write_all
from ..unit.test_plan import mean_classes, random_baseline


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    from ..conftest import DaemonProcess

    root = tmp_path_factory.mktemp("plan")
    expected = write_all(root / "data")
    rows = {"issue_3": 20_011, "issue_2": 61_417, "big": 200_000}
    for name, count in rows.items():  # class-sorted Parquet, small row groups
        table = pa.table({"id": np.arange(count, dtype=np.int64),
                          "label": (np.arange(count) * 10 // count).astype(np.int32),
                          "x": np.random.default_rng(0).standard_normal(count)})
        pq.write_table(table, root / "data" / f"{name}.parquet", row_group_size=1_000)
    daemon = DaemonProcess([root / "data"], root / "state")
    yield daemon, expected
    assert daemon.stop() == 0


def _ids(url: str, dataset: str, **options) -> list[np.ndarray]:
    """Each process's (here: each loader's) ids, per batch."""
    return [b["id"] for b in tether.Loader(url, dataset=dataset, **options)]


def test_every_format_shuffles_globally(formats) -> None:
    daemon, expected = formats
    labels = np.arange(ROWS) // 10  # the formats' rows are stored in id order: 100 classes
    baseline = random_baseline(labels, 64)
    for name, columns in expected.items():
        if "id" not in columns:
            continue
        ids = np.concatenate(_ids(daemon.url, name, batch_size=64, shuffle=True, seed=1,
                                  columns=["id"], shard_bytes=1 << 10))  # 128-row shards
        assert np.array_equal(np.sort(ids), np.arange(ROWS)), name
        assert mean_classes(ids, labels, 64) >= 0.95 * baseline, name


def test_the_same_seed_gives_one_row_sequence_whatever_the_request_shape(formats) -> None:
    daemon, _ = formats
    for dataset in ("single", "columns", "issue_3"):
        sequences = [
            np.concatenate(_ids(daemon.url, dataset, shuffle=True, seed=5, **shape))
            for shape in (
                {"batch_size": 64},
                {"batch_size": 7, "columns": ["id"]},
                {"batch_size": 300, "shard_bytes": 1 << 10, "prefetch": 2},
                {"batch_size": 1, "shard_bytes": 64 << 10, "prefetch": 16},
            )
        ]
        assert all(np.array_equal(sequences[0], s) for s in sequences[1:]), dataset


def _processes(url: str, dataset: str, count: int, state: dict | None = None,
               **options) -> list[list[np.ndarray]]:
    """Run `count` loaders at once, as the processes of one job; their ids per batch."""
    results: dict[int, list[np.ndarray]] = {}

    def run(index: int) -> None:
        loader = tether.Loader(url, dataset=dataset, process_index=index, process_count=count,
                               **options)
        if state is not None:
            loader.load_state_dict(state)
        results[index] = [b["id"] for b in loader]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return [results[i] for i in range(count)]


@pytest.mark.parametrize("dataset,count,batch_size", [("issue_3", 3, 64), ("issue_2", 2, 64),
                                                      ("issue_3", 7, 1), ("single", 3, 333)])
def test_every_process_steps_the_same_number_of_times(formats, dataset, count,
                                                      batch_size) -> None:
    daemon, _ = formats
    rows = {"issue_3": 20_011, "issue_2": 61_417, "single": ROWS}[dataset]
    parts = _processes(daemon.url, dataset, count, batch_size=batch_size, shuffle=True,
                       seed=2, num_epochs=1)
    steps = rows // (count * batch_size)
    assert [len(p) for p in parts] == [steps] * count
    assert all(len(b) == batch_size for p in parts for b in p)
    together = np.concatenate([b for p in parts for b in p])
    assert len(np.unique(together)) == len(together) == steps * count * batch_size


def test_a_state_saved_by_two_processes_resumes_on_three_exactly(formats) -> None:
    daemon, _ = formats
    options = {"batch_size": 50, "shuffle": True, "seed": 8, "shard_bytes": 4 << 10}
    first_steps = 77
    saved, consumed = [], []
    for index in range(2):
        loader = tether.Loader(daemon.url, dataset="issue_3", process_index=index,
                               process_count=2, **options)
        batches = iter(loader)
        consumed.extend(next(batches)["id"] for _ in range(first_steps))
        saved.append(loader.state_dict())
        loader.close()
    assert saved[0] == saved[1]  # one position, the same on every process
    assert saved[0]["request"]["start"] == {"epoch": 0, "row": first_steps * 100}
    rest = _processes(daemon.url, "issue_3", 3, state=saved[0], **options)
    assert len({len(p) for p in rest}) == 1  # equal steps on the three
    everything = np.concatenate(consumed + [b for p in rest for b in p])
    assert len(np.unique(everything)) == len(everything)  # no row twice
    left = 20_011 - first_steps * 100
    assert len(everything) == first_steps * 100 + left // 150 * 150


def test_a_dataset_smaller_than_one_global_batch_is_refused_with_the_fix(formats) -> None:
    daemon, _ = formats
    with pytest.raises(tether.RequestError, match=r"1000 rows, fewer than one global batch "
                                                  r"\(4 processes x 300 = 1200 rows\)"):
        iter(tether.Loader(daemon.url, dataset="single", batch_size=300, process_index=0,
                           process_count=4, seed=0))
    with pytest.raises(tether.RequestError, match="drop_last=False"):
        iter(tether.Loader(daemon.url, dataset="single", batch_size=1001, drop_last=True))
    short = _ids(daemon.url, "single", batch_size=1001)  # a single short batch is fine
    assert [len(b) for b in short] == [ROWS]


def test_a_parquet_shuffle_window_is_announced_and_still_exact(formats) -> None:
    daemon, _ = formats
    loader = tether.Loader(daemon.url, dataset="big", batch_size=500, shuffle=True, seed=3,
                           shuffle_window="500KB", columns=["id", "label"])
    _, got = collect(loader)
    window = loader.plan.layout.window_rows
    assert 0 < window < 200_000  # windowed: 500 KB of ~20-byte rows
    assert len(loader.plan.layout.chunk_rows) == 200  # the row groups
    assert np.array_equal(np.sort(got["id"]), np.arange(200_000))
    # A window holds ~25 of the 200 row groups, drawn at random: a batch sees
    # the classes of those (most of the 10), where an unshuffled batch sees one.
    labels = np.arange(200_000) * 10 // 200_000
    assert mean_classes(got["id"], labels, 500) >= 8
    state = loader.state_dict()
    other = tether.Loader(daemon.url, dataset="big", batch_size=500, shuffle=True, seed=3)
    with pytest.raises(tether.RequestError, match="shuffle_window_bytes"):
        other.load_state_dict(state)


def test_a_batch_larger_than_a_streams_window_is_refused_with_the_fix(formats) -> None:
    """It used to hang: the loader waited for shards the daemon's window never sent."""
    daemon, _ = formats
    with pytest.raises(tether.RequestError, match="raise shard_bytes or lower batch_size"):
        iter(tether.Loader(daemon.url, dataset="issue_2", batch_size=60_000,
                           shard_bytes=1 << 10))
