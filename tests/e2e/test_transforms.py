"""`tether serve --transform NAME=MODULE:FUNCTION`, on the real daemon: the
owner's function runs on the daemon, in worker processes, into a snapshot.

The remote side can only name a dataset: OpenStream and Describe carry names,
columns and options, never code (tether/protos); the function is whatever
the daemon's owner named on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether
from tether.wire.errors import DatasetError

from ..conftest import DaemonProcess, collect

ROWS = 140_000  # three chunks of 65,536 rows
SLOW_ROWS = 4 * 65_536  # four chunks

PREP = '''
import os, time
import numpy as np

SCALE = 2.0

def clean(chunk):
    keep = chunk["id"] % 3 != 0
    text = chunk["text"][keep]
    return {
        "id": chunk["id"][keep],
        "x": chunk["x"][keep] * SCALE,
        "text": np.array([t.upper() for t in text], dtype=object),
        "chars": np.array([len(t) for t in text], dtype=np.int32),
        "pair": np.stack([chunk["x"][keep], -chunk["x"][keep]], axis=1),
    }

def boom(chunk):
    if chunk["id"].max() >= 70_000:
        raise ValueError("bad value")
    return chunk

def not_a_dict(chunk):
    return [chunk["id"]]

def unequal(chunk):
    return {"id": chunk["id"], "half": chunk["id"][: len(chunk["id"]) // 2]}

def burn(chunk):
    """A second of pure Python a chunk, holding a core; the last chunk goes on
    until the test releases it (or 30 s), so the transform is surely running."""
    last = chunk["id"][-1] == int(os.environ["SLOW_ROWS"]) - 1
    end = time.monotonic() + 1.0
    while time.monotonic() < end or (last and time.monotonic() < end + 30
                                     and not os.path.exists(os.environ["RELEASE_FILE"])):
        pass
    with open(os.environ["PROGRESS_FILE"], "a") as f:
        f.write("chunk\\n")
    return {"id": chunk["id"] + 1}
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("transforms") / "data"
    for name in ("train", "other", "slow"):  # a folder of Parquet parts each
        (root / name).mkdir(parents=True)
    ids = np.arange(ROWS, dtype=np.int64)
    pq.write_table(pa.table({
        "id": ids,
        "x": np.random.default_rng(0).standard_normal(ROWS).astype(np.float32),
        "text": [f"w{i % 97}" for i in range(ROWS)],
    }), root / "train" / "0.parquet")
    pq.write_table(pa.table({"id": np.arange(1000, dtype=np.int64)}), root / "other" / "0.parquet")
    pq.write_table(pa.table({"id": np.arange(SLOW_ROWS, dtype=np.int64)}),
                   root / "slow" / "0.parquet")
    return root


@pytest.fixture
def prep(tmp_path: Path, monkeypatch) -> Path:
    """prep.py in a folder on the daemon's PYTHONPATH (it inherits our environment)."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "prep.py").write_text(PREP)
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # an edit within a second is seen
    monkeypatch.setenv("PROGRESS_FILE", str(tmp_path / "progress"))
    monkeypatch.setenv("RELEASE_FILE", str(tmp_path / "release"))
    monkeypatch.setenv("SLOW_ROWS", str(SLOW_ROWS))
    return folder / "prep.py"


def _clean(table: pa.Table, scale: float = 2.0) -> dict[str, np.ndarray]:
    """What prep.clean makes of the whole table, computed here."""
    ids, x = table["id"].to_numpy(), table["x"].to_numpy()
    text = np.array(table["text"].to_pylist(), dtype=object)
    keep = ids % 3 != 0
    return {"id": ids[keep], "x": x[keep] * np.float32(scale),
            "chars": np.array([len(t) for t in text[keep]], dtype=np.int32),
            "text": np.array([t.upper() for t in text[keep]], dtype=object)}


def _by_id(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(columns["id"])
    return {k: v[order] for k, v in columns.items()}


def test_transform_drops_changes_and_adds_rows_served_once_each(data, prep, tmp_path) -> None:
    with DaemonProcess([data], tmp_path / "state", "--transform", "train=prep:clean") as daemon:
        with tether.Loader(daemon.url, dataset="train", batch_size=4096, shuffle=True,
                           seed=1) as loader:
            _, got = collect(loader)
        info = daemon.client().describe("train")
    expected = _clean(pq.read_table(data / "train" / "0.parquet"))
    got = _by_id(got)
    np.testing.assert_array_equal(got["id"], expected["id"])  # each kept row, once
    np.testing.assert_array_equal(got["x"], expected["x"])
    np.testing.assert_array_equal(got["chars"], expected["chars"])
    assert list(got["text"]) == list(expected["text"])
    np.testing.assert_array_equal(got["pair"][:, 0], -got["pair"][:, 1])
    assert info.format == "parquet+transform" and info.num_rows == len(expected["id"])
    assert [c.name for c in info.columns] == ["id", "x", "text", "chars", "pair"]
    assert list(info.columns[4].shape) == [2] and info.snapshot_time > 0


def test_an_edited_module_makes_a_new_snapshot_and_an_unchanged_one_is_reused(
        data, prep, tmp_path) -> None:
    x = pq.read_table(data / "train" / "0.parquet")["x"].to_numpy()

    def served() -> tuple[float, float]:
        """The snapshot's time, and the scale its first row's x was multiplied by."""
        with DaemonProcess([data], tmp_path / "state", "--transform", "train=prep:clean") \
                as daemon:
            made = daemon.client().describe("train").snapshot_time
        [snapshot] = (tmp_path / "state").rglob("train.transform-*.arrow")  # the old one is gone
        with pa.ipc.open_file(snapshot) as reader:
            first = reader.get_batch(0)
        return made, float(first["x"][0].as_py() / x[first["id"][0].as_py()])

    made, scale = served()
    assert scale == pytest.approx(2.0)
    assert served() == (made, scale)  # unchanged: the same snapshot
    prep.write_text(prep.read_text().replace("SCALE = 2.0", "SCALE = 3.0"))
    remade, scale = served()
    assert scale == pytest.approx(3.0) and remade != made


def test_an_exception_names_dataset_rows_and_error_and_the_rest_is_served(
        data, prep, tmp_path) -> None:
    with DaemonProcess([data], tmp_path / "state", "--transform", "train=prep:boom") as daemon:
        with pytest.raises(DatasetError) as failure:
            list(tether.Loader(daemon.url, dataset="train", batch_size=1024))
        message = str(failure.value)
        assert "dataset 'train'" in message and "transform prep:boom" in message
        assert "rows 65536-131071" in message and "ValueError: bad value" in message
        assert "prep.py, line" in message  # where the owner's code raised
        with tether.Loader(daemon.url, dataset="other", batch_size=100) as loader:
            _, got = collect(loader)
        np.testing.assert_array_equal(np.sort(got["id"]), np.arange(1000))


def test_a_bad_return_is_a_clear_error(data, prep, tmp_path) -> None:
    with DaemonProcess([data], tmp_path / "state", "--transform", "train=prep:not_a_dict",
                       "--transform", "other=prep:unequal") as daemon:
        client = daemon.client()
        with pytest.raises(DatasetError, match="dataset 'train'") as not_a_dict:
            client.describe("train")
        with pytest.raises(DatasetError, match="dataset 'other'") as unequal:
            client.describe("other")
    assert ("transform prep:not_a_dict failed on rows 0-65535: it returned a list, not a dict "
            "of numpy arrays") in str(not_a_dict.value)
    assert ("transform prep:unequal failed on rows 0-999: its columns have different lengths "
            "(id: 1000, half: 500)") in str(unequal.value)


def test_a_cpu_heavy_transform_blocks_neither_rpcs_nor_other_streams(
        data, prep, tmp_path) -> None:
    progress = tmp_path / "progress"

    def chunks_done() -> int:
        return len(progress.read_text().splitlines()) if progress.exists() else 0

    with DaemonProcess([data], tmp_path / "state", "--transform", "slow=prep:burn") as daemon:
        client = daemon.client()
        listed = {d.name: d for d in client.datasets()}
        assert listed["slow"].error.startswith("preparing: transform prep:burn of 262,144 rows")
        while chunks_done() == 0:  # the transform is burning a core
            with tether.Loader(daemon.url, dataset="other", batch_size=100) as loader:
                collect(loader)
        with tether.Loader(daemon.url, dataset="other", batch_size=100, shuffle=True,
                           seed=3) as loader:
            _, got = collect(loader)
        info = client.describe("other")
        listed = {d.name: d for d in client.datasets()}
        # All of that answered while the transform ran (its last chunk waits for us).
        assert chunks_done() < 4 and listed["slow"].error.startswith("preparing")
        np.testing.assert_array_equal(np.sort(got["id"]), np.arange(1000))
        assert info.num_rows == 1000
        (tmp_path / "release").touch()
        slow = client.describe("slow")  # waits for it to be made
    assert chunks_done() == 4 and slow.num_rows == SLOW_ROWS and not slow.error


@pytest.mark.parametrize(("target", "says"), [
    ("nosuch:clean", "no module 'nosuch' in the current folder"),
    ("prep:nope", "module 'prep' ("),
])
def test_a_missing_module_or_function_stops_the_start(data, prep, tmp_path, target: str,
                                                      says: str) -> None:
    with pytest.raises(RuntimeError) as failure:
        DaemonProcess([data], tmp_path / "state", "--transform", f"train={target}")
    message = str(failure.value)
    assert says in message
    if target.startswith("nosuch"):
        assert f"PYTHONPATH ({prep.parent})" in message
    else:
        assert "has no function 'nope'; it defines: boom, burn, clean" in message


def test_the_function_is_resolved_on_the_daemon_only() -> None:
    """The wire has no field that could carry code: streams name a dataset."""
    from tether.wire.v1 import tether_pb2 as pb

    fields = {f.name for f in pb.OpenStream.DESCRIPTOR.fields}
    assert not fields & {"transform", "function", "module", "code"}
