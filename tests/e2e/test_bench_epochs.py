"""`tether bench --epochs N --cache`: each epoch timed, with and without the disk cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.jax
def test_epochs_with_and_without_the_cache_are_timed_and_plotted(tmp_path: Path) -> None:
    out, plot = tmp_path / "epochs.json", tmp_path / "epochs.png"
    result = subprocess.run(
        [sys.executable, "-m", "tether.cli", "bench", "--epochs", "3", "--cache", "--link",
         "loopback", "--size", "3MB", "--batch-size", "64", "--json", str(out),
         "--plot", str(plot)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {r["system"]: r for r in json.loads(out.read_text())}
    assert sorted(runs) == ["tether", "tether +cache"]
    for run in runs.values():
        assert len(run["epoch_seconds"]) == 3 and min(run["epoch_seconds"]) > 0
        assert run["payload_bytes"] == 3_000_000 // (256 * 4 + 8) * (256 * 4 + 8)
    assert "later/first" in result.stdout and "with the cache, epochs after the first" \
        in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[2/2]" in result.stderr  # progress
