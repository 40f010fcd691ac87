"""Issue 24's measurements run end to end: a fresh daemon's first stream, and the
first release's code as a loopback baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.bench.cpu_per_byte import alternating_runs
from tether.bench.fresh_auto import fresh_auto_figures
from tether.bench.link import Link
from tether.bench.systems.release import release_tree


def _has_release(tmp_path: Path) -> Path:
    try:
        return release_tree(tmp_path)
    except RuntimeError as exc:  # a shallow clone, or an installed package without git
        pytest.skip(str(exc))


def test_the_release_tree_is_the_first_release_laid_out_as_installed(tmp_path: Path) -> None:
    site = _has_release(tmp_path)
    package = site / "tether"
    assert (package / "daemon" / "__main__.py").is_file()
    assert (package / "bench" / "client.py").is_file()
    assert (package / "v1").is_dir() and not (package / "wire").exists()  # that release's shape
    assert release_tree(tmp_path) == site  # made once


@pytest.mark.jax
def test_the_release_and_main_each_deliver_every_row_over_loopback(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")  # the bench's daemons run in this Python
    _has_release(tmp_path)
    runs = alternating_runs(["tether-release", "tether-none"], 3_000_000, 1, workdir=tmp_path)
    release, main = runs["tether-release"][0], runs["tether-none"][0]
    assert release.rows == main.rows > 0
    assert release.payload_bytes == main.payload_bytes
    assert release.server_cpu_s > 0 and main.server_cpu_s > 0


@pytest.mark.jax
def test_a_fresh_daemons_auto_stream_is_timed_against_flight(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")  # the bench's daemon runs in this Python: absent on Colab
    pytest.importorskip("pyarrow.flight")
    figures = fresh_auto_figures(Link("test", 20e6, 0.005), repeats=1, seconds=0.3,
                                 workdir=tmp_path)  # checks every byte arrived
    assert 0 < figures["iter_first_s"] <= figures["construct_first_s"]
    assert figures["zstd1_ratio"] > 3  # int64 Zipf tokens, narrowed and compressed
    assert figures["tether_mb_per_s"] > 0 and figures["vs_flight_zstd"] > 0
