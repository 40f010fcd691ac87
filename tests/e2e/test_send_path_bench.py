"""The CPU-per-byte comparison: Flight over TLS as a bench system, and the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.bench import cpu_per_byte, data, measure
from tether.bench.link import PRESETS


def _run(system: str, mb_per_s: float, server_cpu_s: float) -> measure.Measurement:
    return measure.Measurement(
        system=system, data="floats", link="loopback", link_rate_bps=None, rows=1000,
        payload_bytes=2 * 10**9, seconds=2e9 / (mb_per_s * 1e6), first_batch_s=0.1,
        wire_bytes=2 * 10**9, client_cpu_s=4.0, server_cpu_s=server_cpu_s,
        client_peak_rss=0, server_peak_rss=0, steps=10, waited_steps=0)


def test_figures_are_medians_and_ratios_against_flight() -> None:
    runs = {
        "tether-none": [_run("t", 900, 2.0), _run("t", 1000, 2.2), _run("t", 100, 9.0)],
        "flight-none": [_run("f", 1000, 1.0), _run("f", 800, 1.0), _run("f", 1200, 1.2)],
        "tether-none-tls": [_run("t", 700, 3.0)],
        "flight-tls": [_run("f", 700, 2.4)],
    }
    figures = cpu_per_byte.figures_from(runs)
    plain, tls = figures["plain"], figures["tls"]
    assert plain["tether_gb_s"] == pytest.approx(0.9)
    assert plain["flight_gb_s"] == pytest.approx(1.0)
    assert plain["throughput_ratio"] == pytest.approx(0.9) and not plain["throughput_met"]
    assert plain["tether_server_cpu_s_per_gb"] == pytest.approx(1.1)  # 2.2 s / 2 GB
    assert plain["server_cpu_ratio"] == pytest.approx(2.2) and not plain["server_cpu_met"]
    assert tls["throughput_ratio"] == pytest.approx(1.0) and tls["throughput_met"]
    assert tls["server_cpu_ratio"] == pytest.approx(1.25) and not tls["server_cpu_met"]
    assert "tether" in cpu_per_byte.report(figures)


def test_a_pair_without_runs_is_left_out() -> None:
    figures = cpu_per_byte.figures_from({"tether-none": [_run("t", 900, 2.0)]})
    assert figures == {}


def test_flight_over_tls_delivers_every_row_and_counts_its_server_cpu(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    pytest.importorskip("cryptography")  # the certificate; absent on Colab's stack (.ci/run)
    dataset = data.write("floats", tmp_path / "data", 4 << 20)
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = measure.run("flight-tls", dataset, PRESETS["loopback"], workdir, 256)
    assert result.system == "flight none +TLS"
    columns = data.load(dataset)
    assert result.rows == len(columns["x"])
    assert result.payload_bytes == sum(v.nbytes for v in columns.values())
    assert result.server_cpu_s > 0
    assert (workdir / "flight-tls" / "cert.pem").exists()
