"""`tether bench --data table`: a pandas-made table cleaned on the daemon, read with
`client.read()` into pandas, and downloaded into pandas; all clean it the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tether
from tether.bench import table_data

from ..conftest import collect

pd = pytest.importorskip("pandas")


def test_the_pushdown_delivers_what_pandas_cleaning_gives(serve, tmp_path: Path) -> None:
    dataset = table_data.write(tmp_path / "table", 300_000)
    daemon = serve(dataset / table_data.PARQUET)
    _, got = collect(tether.Loader(daemon.url, dataset=table_data.DATASET, batch_size=500,
                                   fill_null=table_data.FILL,
                                   categories=table_data.CATEGORIES))
    want = table_data.clean_with_pandas(pd.read_parquet(dataset / table_data.PARQUET))
    assert sorted(got) == sorted(want)
    for name, values in want.items():
        if name == "when":  # the same instants, in the source's unit
            values, got[name] = values.astype("<M8[us]"), got[name].astype("<M8[us]")
        assert np.array_equal(got[name], values, equal_nan=values.dtype.kind == "f"), name


@pytest.mark.jax
def test_bench_table_runs_both_systems(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--link", "loopback", "--data", "table",
         "--size", "2MB", "--batch-size", "256", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["system"]: r for r in json.loads(out.read_text())}
    assert sorted(rows) == ["download + pandas", "tether read + pandas", "tether table"]
    assert len({r["rows"] for r in rows.values()}) == 1 and rows["tether table"]["rows"] > 0
    # the read moves the table compressed, and the daemon counts it
    assert rows["tether read + pandas"]["wire_bytes"] > 0
    assert "table over loopback" in result.stdout
