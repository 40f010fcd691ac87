"""`tether bench --data transform`: the local pool and a Dask LocalCluster make
the same output (the bench checks it), each timed until served."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")
pytest.importorskip("cryptography")  # the daemon's side


@pytest.mark.jax
@pytest.mark.timeout(300)
def test_bench_transform_compares_local_and_dask(tmp_path: Path) -> None:
    out = tmp_path / "transform.json"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--data", "transform", "--size", "8MB",
         "--json", str(out), "--plot", str(tmp_path / "transform.png")],
        capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["system"].split(" (")[0] for r in rows] == ["local pool", "Dask LocalCluster"]
    assert all(r["seconds"] > 0 and r["mb_per_s"] > 0 for r in rows)
    assert "transform of 8 MB" in result.stdout and (tmp_path / "transform.png").stat().st_size
