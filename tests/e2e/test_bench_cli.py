"""`tether bench` runs every system end to end and writes its table, JSON and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tether.bench.data import TENSORS
from tether.bench.systems import for_family

NAMES = for_family(TENSORS)  # what runs on tensor data when no --systems is given


@pytest.mark.jax
def test_bench_runs_every_system_and_writes_json_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")  # a daemon-side package: absent on Colab's stack (.ci/run)
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = subprocess.run(
        # a shaped link (the proxy's path); the next test runs the plain loopback
        [sys.executable, "-m", "tether.cli", "bench", "--link", "1gbit",
         "--data", "tokens", "--size", "2MB", "--batch-size", "64", "--step-ms", "1",
         "--json", str(out), "--plot", str(plot)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len(rows) == len(NAMES)
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
    assert f"[1/{len(NAMES)}]" in result.stderr  # progress


@pytest.mark.jax
def test_repeated_runs_report_each_systems_median_and_the_shuffle_cost(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--link", "loopback", "--data", "floats",
         "--size", "2MB", "--batch-size", "64", "--repeat", "3", "--json", str(out),
         "--systems", "tether-parquet,tether-parquet-shuffled"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[6/6]" in result.stderr  # 3 alternating runs of each
    runs: dict[str, list[float]] = {}
    for line, system in zip(result.stderr.splitlines()[1::2],
                            ["parquet", "parquet shuffled"] * 3, strict=False):
        runs.setdefault(system, []).append(float(line.split()[0].replace(",", "")))
    rows = {r["system"]: r for r in json.loads(out.read_text())}
    assert sorted(rows) == ["tether auto parquet", "tether auto parquet shuffled"]
    for system, measured in runs.items():
        reported = rows[f"tether auto {system}"]["mb_per_s"]
        assert abs(reported - sorted(measured)[1]) <= 0.06  # the median run, as printed
    assert rows["tether auto parquet shuffled"]["rows"] == 2_000_000 // (256 * 4 + 8)
    ratio = rows["tether auto parquet shuffled"]["mb_per_s"] / rows["tether auto parquet"][
        "mb_per_s"]
    assert f"tether auto parquet shuffled / tether auto parquet = {ratio:.2f}x" in result.stdout


@pytest.mark.jax
def test_bench_compares_to_torch_with_to_jax_when_named(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "frameworks.json"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--link", "loopback", "--data", "floats",
         "--size", "2MB", "--batch-size", "64", "--json", str(out),
         "--systems", "tether-torch,tether-jax"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["system"]: r for r in json.loads(out.read_text())}
    assert sorted(rows) == ["tether to_jax", "tether to_torch"]
    assert rows["tether to_torch"]["rows"] == rows["tether to_jax"]["rows"] > 0
    assert rows["tether to_torch"]["payload_bytes"] == rows["tether to_jax"]["payload_bytes"]
