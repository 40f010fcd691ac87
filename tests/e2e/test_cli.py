"""The `tether` command as a user runs it: serve, ls, status, demo."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tether

from ..conftest import DaemonProcess, collect

TETHER = [sys.executable, "-m", "tether.cli"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_one_url_line_and_exits_cleanly(tmp_path: Path, npy_dataset,
                                                     signum: int) -> None:
    daemon = DaemonProcess([npy_dataset(100)], tmp_path / "state")
    assert daemon.url.startswith("tether://127.0.0.1:")
    collect(tether.Loader(daemon.url, dataset="train", batch_size=10))
    assert daemon.stop(signum) == 0
    assert daemon.proc.stdout.read() == ""  # nothing after the URL line
    assert "serving train" in daemon.proc.stderr.read()


def test_serve_refuses_a_missing_path(tmp_path: Path) -> None:
    result = subprocess.run([*TETHER, "serve", str(tmp_path / "nope")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "does not exist" in result.stderr


def test_ls_and_status(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(321))
    ls = subprocess.run([*TETHER, "ls", daemon.url], capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert "train  (npy, 321 rows)" in ls.stdout
    assert "image  uint8    shape (4, 4, 3)" in ls.stdout
    stalled = iter(tether.Loader(daemon.url, dataset="train", batch_size=10, shard_bytes=1024))
    next(stalled)
    status = subprocess.run([*TETHER, "status", daemon.url], capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert "streams: 1 open, 1 since start" in status.stdout
    assert "train:" in status.stdout and "in flight" in status.stdout


def test_ls_of_an_unreachable_daemon_fails_clearly() -> None:
    result = subprocess.run([*TETHER, "ls", "tether://127.0.0.1:9/?tls=off"], capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 1
    assert "is `tether serve` running" in result.stderr


@pytest.mark.jax
def test_demo_trains_and_reports(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")  # a daemon-side package: absent on Colab's stack (.ci/run)
    result = subprocess.run([*TETHER, "demo", "--seconds", "2", "--rows", "20000"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert float(lines["steps"].split(",")[0]) > 10
    assert "samples/s" in lines["throughput"] and "MB/s" in lines["throughput"]
    accuracy = float(lines["steps"].rsplit("accuracy", 1)[1])
    assert accuracy > 0.5  # it learned from the streamed data (chance is 0.1)
    assert "steps that waited on data" in result.stdout
    assert "the training loop waited on data" in result.stdout  # and says what it means


@pytest.mark.jax
def test_to_jax_yields_device_arrays_equal_to_the_numpy_batches(serve, npy_dataset) -> None:
    import jax

    daemon = serve(npy_dataset(1000))
    numpy_batches = list(tether.Loader(daemon.url, dataset="train", batch_size=128))
    jax_batches = list(tether.Loader(daemon.url, dataset="train", batch_size=128).to_jax())
    assert len(jax_batches) == len(numpy_batches) == 8
    for a, b in zip(numpy_batches, jax_batches, strict=True):
        assert all(isinstance(v, jax.Array) for v in b.values())
        for name in a:
            assert np.array_equal(a[name], np.asarray(b[name]))


@pytest.mark.jax
def test_aligned_batches_are_adopted_by_jax_without_a_copy(serve, npy_dataset) -> None:
    import jax

    from tether.jax import device_iterator

    daemon = serve(npy_dataset(1024))
    batch = next(iter(tether.Loader(daemon.url, dataset="train", batch_size=256)))
    (on_device,) = device_iterator([batch])
    x = batch["x"]
    assert x.ctypes.data % 64 == 0
    if jax.devices()[0].platform == "cpu":
        assert on_device["x"].unsafe_buffer_pointer() == x.ctypes.data
