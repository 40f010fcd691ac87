"""Transforms that clean: the owner's function takes the rows with their nulls
and types intact, as numpy (the default), pandas or pyarrow
(@tether.transform(batch_format=...), as Ray Data's map_batches), and a
transform may follow a --sql dataset of the same name."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether

from ..conftest import DaemonProcess, collect, wait_until

pd = pytest.importorskip("pandas")

ROWS = 5_000

PREP = '''
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import tether

def numpy_clean(chunk):
    # ints with nulls arrive as floats with NaN, text nulls as None
    age = np.where(np.isnan(chunk["age"]), -1, chunk["age"]).astype(np.int64)
    city = np.array([c if c is not None else "?" for c in chunk["city"]], dtype=object)
    return {"id": chunk["id"], "age": age, "city": city}

@tether.transform(batch_format="pandas")
def pandas_clean(frame):
    frame = frame.fillna({"age": -1, "city": "?"})
    frame["age"] = frame["age"].astype("int64")
    frame["decade"] = frame["when"].dt.year // 10 * 10
    return frame[["id", "age", "city", "decade"]]

@tether.transform(batch_format="pyarrow")
def arrow_clean(table):
    return pa.table({"id": table["id"], "age": pc.fill_null(table["age"], -1),
                     "city": pc.fill_null(table["city"], "?"),
                     "decade": pc.multiply(pc.divide(pc.year(table["when"]), 10), 10)})

def double(chunk):
    return {"id": chunk["id"], "y": chunk["x"] * 2}
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cleaning")
    (root / "code").mkdir()
    (root / "code" / "prep.py").write_text(PREP)
    rng = np.random.default_rng(3)
    gaps = rng.random(ROWS) < 0.2
    frame = pd.DataFrame({
        "id": np.arange(ROWS),
        "age": pd.array(np.where(gaps, pd.NA, rng.integers(1, 99, ROWS)), dtype="Int64"),
        "city": np.where(rng.random(ROWS) < 0.2, None, rng.choice(["Oslo", "Lima"], ROWS)),
        "when": pd.to_datetime("1990-01-01") + pd.to_timedelta(rng.integers(0, 10**4, ROWS),
                                                               unit="D"),
        "x": rng.standard_normal(ROWS)})
    for name in ("raw", "frame", "arrow"):
        frame.to_parquet(root / f"{name}.parquet")
    pq.write_table(pa.table({"id": np.arange(ROWS), "x": np.arange(ROWS, dtype=np.float64)}),
                   root / "train.parquet")
    args = ["--transform", "raw=prep:numpy_clean", "--transform", "frame=prep:pandas_clean",
            "--transform", "arrow=prep:arrow_clean", "--sql",
            "q=SELECT * FROM train WHERE id < 500", "--transform", "q=prep:double"]
    import os
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(root / "code")
    try:
        daemon = DaemonProcess([root / name for name in ("raw.parquet", "frame.parquet",
                                                         "arrow.parquet", "train.parquet")],
                               root / "state", *args)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    yield daemon, frame
    assert daemon.stop() == 0


def _rows(url: str, dataset: str) -> dict[str, np.ndarray]:
    _, got = collect(tether.Loader(url, dataset=dataset, batch_size=500, shuffle=True, seed=4))
    order = np.argsort(got["id"])
    return {name: values[order] for name, values in got.items()}


@pytest.mark.parametrize("dataset", ["raw", "frame", "arrow"])
def test_a_transform_sees_the_nulls_and_cleans_them(served, dataset: str) -> None:
    daemon, frame = served
    got = _rows(daemon.url, dataset)
    assert got["id"].tolist() == list(range(ROWS))
    assert got["age"].tolist() == frame["age"].fillna(-1).astype("int64").tolist()
    assert got["city"].tolist() == frame["city"].fillna("?").tolist()
    if dataset != "raw":
        assert got["decade"].tolist() == (frame["when"].dt.year // 10 * 10).tolist()


def test_a_transform_of_a_sql_dataset_becomes_ready(served) -> None:
    """Was preparing for ever: the transform's snapshot and the query's shared
    a name, and each removed the other's as an earlier version."""
    daemon, _ = served
    with tether.connect(daemon.url) as client:
        def ready() -> bool:
            info = next(d for d in client.datasets() if d.name == "q")
            assert not info.error or info.error.startswith("preparing"), info.error
            return not info.error

        wait_until(ready, "the transform of the --sql dataset q became ready", timeout=60,
                   every=0.2)
    got = _rows(daemon.url, "q")
    assert got["id"].tolist() == list(range(500))
    assert got["y"].tolist() == [2.0 * i for i in range(500)]
