"""Shared fixtures: real datasets on disk and the real daemon in a subprocess."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import tether

# The loader's tests can run against a daemon from another environment
# (CI's oldest-versions run: old grpcio/protobuf in the loader, newest in
# the daemon), as a Colab runtime talking to a laptop would.
DAEMON_PYTHON = os.environ.get("TETHER_DAEMON_PYTHON", sys.executable)


class DaemonProcess:
    def __init__(self, paths: list[Path], state_dir: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [DAEMON_PYTHON, "-m", "tether.daemon", *map(str, paths), "--port", "0",
             "--state-dir", str(state_dir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.url = self._read_url()

    def _read_url(self, timeout: float = 60.0) -> str:
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            self.proc.kill()
            raise RuntimeError(f"daemon printed no URL in {timeout} s: {self.proc.stderr.read()}")
        line = self.proc.stdout.readline().strip()
        if not line.startswith("tether://"):
            self.proc.wait(10)
            raise RuntimeError(f"daemon failed: {line!r} {self.proc.stderr.read()}")
        return line

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def client(self) -> tether.Client:
        return tether.connect(self.url)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """serve(path, ...) starts `tether serve` on a loopback port; stopped after the test."""
    started: list[DaemonProcess] = []

    def start(*paths: Path, args: tuple[str, ...] = ()) -> DaemonProcess:
        daemon = DaemonProcess(list(paths), tmp_path / f"state{len(started)}", *args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        code = daemon.stop()
        assert code == 0, f"daemon exited {code}: {daemon.proc.stderr.read()[-2000:]}"


def make_features(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A small mixed table: a row id (to check exactly-once), floats, an image, labels."""
    rng = np.random.default_rng(seed)
    return {
        "id": np.arange(rows, dtype=np.int64),
        "x": rng.standard_normal((rows, 8)).astype(np.float32),
        "image": rng.integers(0, 256, (rows, 4, 4, 3), dtype=np.uint8),
        "label": rng.integers(0, 10, rows).astype(np.int32),
    }


@pytest.fixture
def npy_dataset(tmp_path: Path) -> Callable[..., Path]:
    """npy_dataset(rows, name) writes a folder of .npy columns: one dataset named `name`."""

    def write(rows: int, name: str = "train", seed: int = 0) -> Path:
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for column, values in make_features(rows, seed).items():
            np.save(folder / f"{column}.npy", values)
        return folder

    return write


def collect(loader: tether.Loader) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """All batches of one iteration, and their columns concatenated."""
    batches = list(loader)
    names = batches[0].keys() if batches else []
    return batches, {k: np.concatenate([b[k] for b in batches]) for k in names}
