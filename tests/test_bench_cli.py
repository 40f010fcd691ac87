"""`tether bench` runs every system end to end and writes its table, JSON and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tether.bench.systems import NAMES


@pytest.mark.jax
def test_bench_runs_every_system_and_writes_json_and_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--link", "loopback,1gbit",
         "--data", "tokens", "--size", "2MB", "--batch-size", "64", "--step-ms", "1",
         "--json", str(out), "--plot", str(plot)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 2 * len(NAMES)
    expected_rows = 2_000_000 // (512 * 8)
    for row in rows:
        assert row["rows"] == expected_rows, row["system"]  # every system moved every row
        assert row["payload_bytes"] == expected_rows * 512 * 8
        assert row["mb_per_s"] > 0 and row["waited_share"] is not None
        if row["system"] != "local read":
            assert row["wire_bytes"] > 0
    tether_auto = next(r for r in rows if r["system"] == "tether auto")
    assert tether_auto["ratio"] >= 3.9  # int64 token ids travel narrowed at least
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tokens over 1gbit" in result.stdout and "raw TCP" in result.stdout
    assert f"[1/{2 * len(NAMES)}]" in result.stderr  # progress
