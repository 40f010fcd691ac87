"""`tether.serve(...)` from Python: every in-memory kind round-trips exactly, a
snapshot is the content's (kept when served again, new when changed), and the
daemon ends with the Python that started it (a Jupyter kernel killed, a
`python -c` script that exits without stopping it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pytest.importorskip("cryptography")  # the daemon's side: absent on Colab's stack (.ci/run)
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import tether  # noqa: E402

from ..conftest import collect, wait_until  # noqa: E402


def _frame(rows: int = 1_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "id": np.arange(rows),
        "age": pd.array(np.where(rng.random(rows) < 0.2, None, rng.integers(0, 90, rows)),
                        dtype="Int64"),
        "city": pd.Categorical(rng.choice(["Oslo", "Lima"], rows)),
        "when": pd.date_range("2024-01-01", periods=rows, freq="h", tz="UTC"),
        "note": np.where(rng.random(rows) < 0.3, None, "text"),
    })


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_every_kind_of_object_round_trips_exactly(tmp_path: Path) -> None:
    frame = _frame()
    table = pa.Table.from_pandas(frame)
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=300)
    arrays = {"x": np.random.default_rng(1).random((1_000, 4, 2)).astype(np.float32),
              "label": np.arange(1_000, dtype=np.int64) % 7}
    objects = {"frame": frame, "table": table, "batches": table.to_reader(),
               "dataset": ds.dataset(tmp_path / "t.parquet"), "arrays": arrays}
    polars = pytest.importorskip("polars")
    objects["polar"] = polars.from_pandas(frame.drop(columns=["city"]))
    with tether.serve(**objects, state_dir=tmp_path / "state") as server:
        with tether.connect(server.url) as client:
            got = {name: client.read(name) for name in ("frame", "table", "batches", "dataset")}
            polar = client.read("polar")
        _, columns = collect(tether.Loader(server.url, dataset="arrays", batch_size=100))
    held = {"frame": table, "table": table, "batches": table,
            "dataset": objects["dataset"].to_table()}  # (Parquet's own string type)
    for name, read in got.items():
        assert read.equals(held[name]), name
        pd.testing.assert_frame_equal(read.to_pandas(), frame)
    assert polar.equals(objects["polar"].to_arrow())
    for name, values in arrays.items():
        assert np.array_equal(columns[name], values) and columns[name].dtype == values.dtype


def test_the_state_folder_it_makes_is_private(tmp_path: Path) -> None:
    """Found by a review: snapshots were written before the daemon made the state
    folder, so it got the umask's mode (0755 here), and the daemon keeps the
    mode of a folder that exists: other users could read the snapshots."""
    state = tmp_path / "new" / "state"
    with tether.serve(train=_frame(10), state_dir=state):
        assert state.stat().st_mode & 0o077 == 0


def test_a_snapshot_is_the_contents_own(tmp_path: Path) -> None:
    frame = _frame(100)
    with tether.serve(train=frame, state_dir=tmp_path / "state") as first:
        with tether.connect(first.url) as client:
            version = client.describe("train").fingerprint
        frame.loc[0, "id"] = -1  # the notebook's object changes: what streams does not
        with tether.connect(first.url) as client:
            assert client.read("train").column("id")[0].as_py() == 0
    with tether.serve(train=_frame(100), state_dir=tmp_path / "state") as again, \
            tether.connect(again.url) as client:
        assert client.describe("train").fingerprint == version  # the same snapshot
    with tether.serve(train=frame, state_dir=tmp_path / "state") as changed, \
            tether.connect(changed.url) as client:
        assert client.describe("train").fingerprint != version
        assert client.read("train").column("id")[0].as_py() == -1


def test_refusals_say_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot serve a list"):
        tether.serve(train=[1, 2], state_dir=tmp_path)
    with pytest.raises(ValueError, match="of one length"):
        tether.serve(arrays={"x": np.zeros(3), "y": np.zeros(4)}, state_dir=tmp_path)
    with pytest.raises(ValueError, match="give paths to serve"):
        tether.serve(state_dir=tmp_path)


SCRIPT = """
import sys, tether, numpy as np
server = tether.serve(arrays={"x": np.arange(10)}, state_dir=sys.argv[1])
print(server.pid, flush=True)
"""  # ends without stop(): the interpreter's exit stops the daemon


def test_a_script_that_ends_leaves_no_daemon(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    pid = int(done.stdout.split()[0])
    wait_until(lambda: not _alive(pid), "the daemon of a finished script stopped", timeout=30)


def test_served_from_a_jupyter_kernel_and_gone_with_it(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(f"""
        import json, numpy as np, pandas as pd, tether
        df = pd.DataFrame({{"id": np.arange(500), "score": np.where(np.arange(500) % 5 == 0,
                                                                  np.nan, 1.5)}})
        server = tether.serve(train=df, state_dir={str(tmp_path / "state")!r})
        print(json.dumps({{"url": server.url, "pid": server.pid}}))
        server  # the rich display: the URL and a copy button
    """))])
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(notebook.cells[0], 0)
        outputs = notebook.cells[0].outputs
        served = json.loads(next(o.text for o in outputs if o.output_type == "stream"))
        assert any("text/html" in o.get("data", {}) for o in outputs)
        with tether.connect(served["url"]) as daemon:  # another process reads it exactly
            table = daemon.read("train")
        assert table.column("id").to_pylist() == list(range(500))
        assert table.column("score").null_count == 100  # pandas' NaN: a gap, as to_parquet
        assert table.to_pandas().equals(pd.DataFrame(
            {"id": np.arange(500), "score": np.where(np.arange(500) % 5 == 0, np.nan, 1.5)}))
        assert _alive(served["pid"])
        client.km.shutdown_kernel(now=True)  # killed, no atexit: the daemon must notice
    wait_until(lambda: not _alive(served["pid"]), "the daemon of a killed kernel stopped",
               timeout=30)
