"""`tether bench --data jpegs,text`: image folders and token lists end to end, on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tether.bench.data import IMAGES, TEXT
from tether.bench.systems import REGISTRY, for_family


@pytest.mark.jax
def test_bench_runs_every_image_and_text_system(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--link", "loopback",
         "--data", "jpegs,text", "--size", "600kB", "--batch-size", "8", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {(r["data"], r["system"]): r for r in json.loads(out.read_text())}
    for data, family in (("jpegs", IMAGES), ("text", TEXT)):
        for key in for_family(family):
            name = REGISTRY[key]().name
            row = rows[data, name]
            assert row["samples_per_s"] > 0, name
            line = next(line for line in result.stdout.splitlines() if line.startswith(name))
            assert float(line.split()[len(name.split()) + 1].replace(",", "")) > 0  # samples/s
    images = [r for (data, _), r in rows.items() if data == "jpegs"]
    assert len({r["rows"] for r in images}) == 1  # every system decoded every image
    assert all(r["payload_bytes"] >= r["rows"] * 224 * 224 * 3 for r in images)
    assert all(r["file_bytes"] > 0 for r in images)
    text = [r for (data, _), r in rows.items() if data == "text"]
    assert all(r["unit"] == "tokens" and r["units_per_s"] > 0 for r in text)
    assert "jpegs over loopback" in result.stdout and "tokens/s" in result.stdout

    plot = tmp_path / "both.png"  # runs of several files in one table and plot
    merged = subprocess.run(
        [sys.executable, "-m", "tether.bench.report", str(out), str(out), "--plot", str(plot)],
        capture_output=True, text=True, timeout=120)
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert merged.stdout.count("text over loopback") == 1  # one block per data and link
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
