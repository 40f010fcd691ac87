"""Dask, with a real `distributed.LocalCluster` of 2 worker processes: Dask
collections served by `tether.serve` partition by partition (exact, with
bounded memory on both sides), and `--dask` transforms on the cluster's
workers equal to the local pool's, row for row, errors naming the rows."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
pytest.importorskip("cryptography")  # the daemon's side

import tether  # noqa: E402

from ..conftest import OWN_PEAK, AnonPeak, DaemonProcess, collect, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.Client]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.ERROR) as local, \
            distributed.Client(local, set_as_default=False) as client:
        yield client


ROWS_PER_PARTITION = 100_000


def partition(index: int) -> pd.DataFrame:
    """One partition, made on a worker: ids, floats, a nullable int, a
    category whose values differ between partitions, a date."""
    rng = np.random.default_rng(index)
    rows = ROWS_PER_PARTITION
    return pd.DataFrame({
        "id": np.arange(index * rows, (index + 1) * rows),
        **{f"x{k}": rng.random(rows) for k in range(8)},
        "age": pd.array(np.where(rng.random(rows) < 0.1, None, rng.integers(0, 90, rows)),
                        dtype="Int64"),
        "city": pd.Categorical(rng.choice([f"town{index % 7}", "Oslo", "Lima"], rows)),
        "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, rows), "s"),
    })


CALLER = OWN_PEAK + """
import sys, distributed, dask.dataframe as dd, tether
from tests.e2e.test_dask import partition
client = distributed.Client(sys.argv[1], set_as_default=False)
ddf = dd.from_map(partition, range(40))
server = tether.serve(train=ddf, dask=client, max_memory="32MB", state_dir=sys.argv[2])
print(server.url, server.pid, flush=True)
reset_peak()
before = peak_mb()
server.ready()
print(round(peak_mb() - before), flush=True)
sys.stdin.readline()  # until the test has read it
server.stop()
"""


def test_forty_partitions_stream_exactly_with_flat_memory(cluster, tmp_path: Path) -> None:
    """40 partitions of 8.5 MB (340 MB) through a daemon whose budget is 32 MB:
    the daemon memory-maps the snapshot, the caller holds a few partitions.
    (The daemon's anonymous memory grows by about 75 MB for any stream: its
    pools and buffers; measured 157 MB here, the caller 40 MB.)"""
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, cluster.scheduler.address, str(tmp_path / "state")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).parents[2])
    try:
        url, pid = caller.stdout.readline().split()
        daemon = AnonPeak(int(pid))
        caller_growth = float(caller.stdout.readline())
        _, columns = collect(tether.Loader(url, dataset="train", batch_size=4096,
                                           shuffle=False, null_masks=["age"]))
        daemon_growth = daemon.growth()
        with tether.connect(url) as client:
            table = client.read("train")
        caller.stdin.write("\n")
        caller.stdin.flush()
        assert caller.wait(60) == 0
    finally:
        caller.kill()
    want = pd.concat([partition(i) for i in range(40)], ignore_index=True)
    assert np.array_equal(columns["id"], want["id"].to_numpy())
    for k in range(8):
        assert np.array_equal(columns[f"x{k}"], want[f"x{k}"].to_numpy())
    assert np.array_equal(columns["when"], want["when"].to_numpy())
    assert np.array_equal(columns["age_valid"], want["age"].notna().to_numpy())
    assert np.array_equal(columns["age"][columns["age_valid"]], want["age"].dropna().to_numpy())
    read = table.to_pandas()
    pd.testing.assert_frame_equal(read.drop(columns="city"), want.drop(columns="city"))
    assert read["city"].astype(str).equals(want["city"].astype(str))
    data_mb = 40 * ROWS_PER_PARTITION * (8 + 64 + 8 + 1 + 8) / 2**20
    print(f"data {data_mb:.0f} MB: daemon +{daemon_growth:.0f} MB, caller +{caller_growth:.0f} MB")
    assert data_mb > 300
    assert daemon_growth < 0.6 * data_mb, f"daemon grew {daemon_growth:.0f} MB for {data_mb:.0f}"
    assert caller_growth < data_mb / 4, f"caller grew {caller_growth:.0f} MB for {data_mb:.0f}"


def test_arrays_and_frames_on_the_default_scheduler_round_trip(tmp_path: Path) -> None:
    """No client: Dask's default scheduler computes them. A lone Dask array is
    a column of its keyword's name; a dict may mix Dask and numpy arrays;
    categories that differ between partitions are kept, every value exact."""
    x = da.random.default_rng(0).random((5_000, 3, 2), chunks=(700, 2, 2)).astype(np.float32)
    labels = np.arange(5_000) % 7
    frame = dd.from_map(partition, range(3))
    with tether.serve(x=x[:, 0, 0], arrays={"x": x, "label": labels}, frame=frame,
                      state_dir=tmp_path / "state") as server:
        assert server.ready(120)
        _, lone = collect(tether.Loader(server.url, dataset="x", batch_size=1_000,
                                        shuffle=False))
        _, both = collect(tether.Loader(server.url, dataset="arrays", batch_size=1_000,
                                        shuffle=False))
        with tether.connect(server.url) as client:
            table = client.read("frame")
    assert np.array_equal(lone["x"], x[:, 0, 0].compute())
    assert np.array_equal(both["x"], x.compute()) and both["x"].dtype == np.float32
    assert np.array_equal(both["label"], labels)
    read, want = table.to_pandas(), frame.compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(read.drop(columns="city"), want.drop(columns="city"))
    assert read["city"].astype(str).equals(want["city"].astype(str))
    assert set(read["city"].cat.categories) == {"Oslo", "Lima", "town0", "town1", "town2"}


def broken(index: int) -> pd.DataFrame:
    if index == 2:
        raise ValueError("no such sensor")
    return partition(index)


def test_a_failing_partition_is_named_and_nothing_is_served_half(cluster,
                                                                 tmp_path: Path) -> None:
    frame = dd.from_map(broken, range(4))
    with tether.serve(train=frame, ok={"x": np.arange(10)}, dask=cluster,
                      state_dir=tmp_path / "state") as server:
        with pytest.raises(RuntimeError, match=r"partition 3 of 4 failed: ValueError: no such"):
            server.ready(120)
        with tether.connect(server.url) as client:
            with pytest.raises(tether.DatasetError, match="partition 3 of 4"):
                client.read("train")
            assert client.describe("ok").num_rows == 10  # the others are served
    assert not list((tmp_path / "state" / "objects").glob("*/train.arrow"))


def test_the_same_collection_is_the_same_snapshot(cluster, tmp_path: Path) -> None:
    frame = dd.from_map(partition, range(2))
    versions = []
    for _ in range(2):
        with tether.serve(train=frame, dask=cluster, state_dir=tmp_path / "state") as server:
            assert server.ready(120)
            with tether.connect(server.url) as client:
                versions.append(client.describe("train").fingerprint)
    assert versions[0] == versions[1]
    other = dd.from_map(partition, range(1, 3))
    with tether.serve(train=other, dask=cluster, state_dir=tmp_path / "state") as server:
        server.ready(120)
        with tether.connect(server.url) as client:
            assert client.describe("train").fingerprint != versions[0]


PREP = """
import numpy as np

def scale(chunk):
    if (chunk["id"] == {bad}).any():
        raise ValueError("sensor offline")
    keep = chunk["x0"] > 0.2  # drops rows: the output is not the input's shape
    return {{"id": chunk["id"][keep], "y": chunk["x0"][keep] * 2 + chunk["x1"][keep],
             "city": chunk["city"][keep]}}
"""


def _transformed(tmp_path: Path, monkeypatch, name: str, dask: str | None,
                 bad: int = -1) -> pa.Table:
    """The transform's output, the daemon's workers or the cluster's running it
    (they get prep.py from the daemon: it is not on their path)."""
    import pyarrow.parquet  # noqa: F401 (pa.parquet)

    folder = tmp_path / name
    folder.mkdir()
    (folder / "prep.py").write_text(PREP.format(bad=bad))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    data = tmp_path / "data" / "train.parquet"
    if not data.exists():
        data.parent.mkdir()
        frames = [partition(i) for i in range(3)]
        pa.parquet.write_table(pa.Table.from_pandas(pd.concat(frames, ignore_index=True)),
                               data, row_group_size=20_000)
    args = ["--insecure", "--transform", "train=prep:scale", *(["--dask", dask] if dask else [])]
    with DaemonProcess([data], folder / "state", *args) as daemon, \
            tether.connect(daemon.url) as client:
        wait_until(lambda: client.describe("train").columns, "the transform to finish",
                   timeout=120)
        return client.read("train")


def test_dask_transforms_equal_local_ones_row_for_row(cluster, tmp_path: Path,
                                                     monkeypatch) -> None:
    local = _transformed(tmp_path, monkeypatch, "local", None)
    on_dask = _transformed(tmp_path, monkeypatch, "dask", cluster.scheduler.address)
    assert local.num_rows > 50_000 and local.equals(on_dask)


def test_a_failing_transform_on_dask_names_the_rows(cluster, tmp_path: Path,
                                                   monkeypatch) -> None:
    with pytest.raises(tether.DatasetError, match=r"failed on rows 65536-\d+: ValueError: "
                                                  r"sensor offline \(prep.py, line 6"):
        _transformed(tmp_path, monkeypatch, "dask", cluster.scheduler.address, bad=70_000)


def test_dask_refusals_say_what_to_give(tmp_path: Path, cluster) -> None:
    done = subprocess.run([sys.executable, "-m", "tether.daemon", str(tmp_path), "--dask",
                           cluster.scheduler.address], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "none was given" in done.stderr
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as inproc, \
            distributed.Client(inproc, set_as_default=False) as client, \
            pytest.raises(ValueError, match="inside this process"):
        tether.serve(train=pd.DataFrame({"a": [1]}), transforms={"train": "m:f"},
                     dask=client, state_dir=tmp_path / "state")
    with pytest.raises(RuntimeError, match="unknown size"):
        tether.serve(x={"x": da.ones(10, chunks=5)[da.arange(10, chunks=5) > 3]},
                     state_dir=tmp_path / "state").ready(30)


def many_categories(index: int) -> pd.DataFrame:
    """Found by a review: an empty first partition (typeless text), and 200 new
    categories a partition (pandas' codes widen from int8 to int16)."""
    if index == 0:
        return pd.DataFrame({"tag": pd.Categorical([]), "note": pd.Series([], dtype=object)})
    tags = [f"tag{index}-{k}" for k in range(200)]
    return pd.DataFrame({"tag": pd.Categorical(tags), "note": ["x"] * 200})


def test_partitions_whose_types_pandas_chose_differently_are_served(tmp_path: Path) -> None:
    frame = dd.from_map(many_categories, range(3))
    with tether.serve(tags=frame, ids=frame.tag.cat.codes, state_dir=tmp_path / "state") \
            as server:
        assert server.ready(120)
        with tether.connect(server.url) as client:
            read = client.read("tags").to_pandas()
    assert read["tag"].astype(str).tolist() == [f"tag{i}-{k}" for i in (1, 2) for k in range(200)]
    assert read["note"].tolist() == ["x"] * 400
    with pytest.raises(TypeError, match="not a Delayed"):
        import dask

        tether.serve(bad=dask.delayed(sum)([1, 2]), state_dir=tmp_path / "state")


def test_staging_left_by_a_dead_writer_is_cleared(tmp_path: Path) -> None:
    """Found by a review: a kernel restarted mid-way left its `.writing-*` folder
    (as large as the data) beside the snapshot forever; an idle one is removed
    at the next serve, a live writer's (recent) one kept."""
    import os
    import time

    from tether.daemon.dask_objects import STALE_SECONDS, target_of

    frame = dd.from_map(partition, range(2))
    target = target_of("train", frame, tmp_path / "state" / "objects")
    dead, live = target.parent / ".writing-dead", target.parent / ".writing-live"
    for staging in (dead, live):
        staging.mkdir(parents=True)
        (staging / "train.arrow").write_bytes(b"partial")
    old = time.time() - STALE_SECONDS - 60
    os.utime(dead / "train.arrow", (old, old))
    with tether.serve(train=frame, state_dir=tmp_path / "state") as server:
        assert server.ready(120)
    assert not dead.exists() and live.exists() and target.exists()
