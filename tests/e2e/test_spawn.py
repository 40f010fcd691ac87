"""A daemon spawned as a subprocess serves until stopped, or fails with its own words."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether.daemon.spawn import DaemonProcess

from ..conftest import DAEMON_PYTHON


def test_a_spawned_daemon_serves_until_stopped(tmp_path: Path, npy_dataset) -> None:
    with DaemonProcess([npy_dataset(20)], tmp_path / "state", python=DAEMON_PYTHON) as daemon:
        assert daemon.url.startswith("tether://127.0.0.1:")
        with tether.connect(daemon.url) as client:
            assert [d.name for d in client.datasets()] == ["train"]
        assert daemon.stop() == 0
        assert "serving train" in daemon.stderr_text()
        assert "serving train" in daemon.proc.stderr.read()  # read like a pipe


def test_a_daemon_that_cannot_start_raises_with_its_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data"
    with pytest.raises(RuntimeError, match="before printing") as caught:
        DaemonProcess([missing], tmp_path / "state", python=DAEMON_PYTHON)
    assert "does not exist" in str(caught.value) and str(missing) in str(caught.value)
