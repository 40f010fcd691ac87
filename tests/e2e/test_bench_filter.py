"""`tether bench --data filter`: filter pushdown against filtering after the download."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tether.bench.data import FILTERING
from tether.bench.filter_data import matching_rows, write
from tether.bench.systems import REGISTRY, for_family


def test_filter_data_selects_a_tenth(tmp_path: Path) -> None:
    dataset = write(tmp_path / "filter", 2_000_000)
    rows = 2_000_000 // 1020
    assert 0.07 * rows < matching_rows(dataset) < 0.13 * rows


@pytest.mark.jax
def test_bench_filter_systems_deliver_the_same_rows(tmp_path: Path) -> None:
    out = tmp_path / "filter.json"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--link", "loopback", "--data", "filter",
         "--size", "1MB", "--batch-size", "16", "--json", str(out)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["system"]: r for r in json.loads(out.read_text())}
    names = [REGISTRY[key]().name for key in for_family(FILTERING)]
    assert sorted(rows) == sorted(names) and len(names) == 4
    assert len({r["rows"] for r in rows.values()}) == 1  # the same matching rows, each checked
    assert all(r["rows"] > 0 and r["units_per_s"] > 0 and r["samples_per_s"] > 0
               for r in rows.values())
    assert all(r["unit"] == "matching rows" for r in rows.values())
    pushdown, after = rows["tether filter pushdown"], rows["tether filter after"]
    assert pushdown["wire_bytes"] < after["wire_bytes"] / 3  # unmatched rows stay home
    assert "filter pushdown, filter over loopback" in result.stdout
