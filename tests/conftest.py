"""Shared fixtures: real datasets on disk and the real daemon in a subprocess.

The tests are grouped by kind, each folder a marker (`pytest -m unit`):

    tests/unit/      no daemon, no server, no socket: the inner loop, in seconds
    tests/e2e/       the real daemon in a subprocess and the real loader
    tests/security/  attacks and faults, each test named by what it defends
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tether
from tether.daemon import spawn

KINDS = ("unit", "e2e", "security")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its folder's kind."""
    for item in items:
        kind = Path(item.fspath).parent.name
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))


# The loader's tests can run against a daemon from another environment
# (CI's oldest-versions run: old grpcio/protobuf in the loader, newest in
# the daemon), as a Colab runtime talking to a laptop would.
DAEMON_PYTHON = os.environ.get("TETHER_DAEMON_PYTHON", sys.executable)


class DaemonProcess(spawn.DaemonProcess):
    """The real daemon, run by DAEMON_PYTHON, its stderr captured for assertions."""

    def __init__(self, paths: list[Path], state_dir: Path, *args: str) -> None:
        super().__init__(paths, state_dir, *args, python=DAEMON_PYTHON)

    def client(self) -> tether.Client:
        """A client of this daemon: `tether.connect(url)`."""
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
    failures = []
    for daemon in started:
        code = daemon.stop()
        if code != 0:
            failures.append(f"daemon exited {code}: {daemon.stderr_text()[-2000:]}")
        daemon.close()
    assert not failures, "\n".join(failures)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0,
               every: float = 0.05) -> Any:
    """Poll `condition` until it returns something true, and return that. Past
    `timeout` seconds, fail saying that `what` did not happen: a test that
    waits has a deadline and a message, never pytest-timeout's 300 s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(every)
    return value


# For scripts run in a child process: its own peak memory. A child's ru_maxrss
# starts at its parent's peak (Linux keeps it across exec), so a growth measured
# with it can read 0 whatever the child does; VmHWM, reset where the measure
# starts, is the child's own.
OWN_PEAK = """
def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
"""


class AnonPeak:
    """The largest anonymous memory (RssAnon) a process reaches while watched:
    the daemon memory-maps its snapshot, and the file's pages, the kernel's
    cache, are not what a budget bounds."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.first = self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _now(self) -> float:
        with open(f"/proc/{self._pid}/status") as status:
            return next(int(line.split()[1]) for line in status
                        if line.startswith("RssAnon:")) / 1024

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._now())

    def growth(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak - self.first


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


def state_after(url: str, batches: int, **options) -> dict:
    """A loader's state_dict after `batches` batches of a fresh iteration."""
    with tether.Loader(url, **options) as loader:
        it = iter(loader)
        for _ in range(batches):
            next(it)
        return loader.state_dict()


# Colab cannot run here: a fake `google.colab.userdata` on sys.path stands in for it.


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("TETHER_URL", raising=False)
    for name in ("google.colab", "google.colab.userdata"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.fixture
def fake_colab(no_env, monkeypatch, tmp_path):
    """A `google.colab.userdata` whose get() answers from SECRETS, raising as Colab does.

    `google` stays a namespace package (no __init__.py), so google.protobuf still imports.
    """

    def install(secrets: dict[str, str]) -> None:
        package = tmp_path / "fake" / "google" / "colab"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "userdata.py").write_text(textwrap.dedent(f"""
            class SecretNotFoundError(Exception):
                pass

            SECRETS = {secrets!r}

            def get(key):
                if key not in SECRETS:
                    raise SecretNotFoundError(key)
                return SECRETS[key]
        """))
        monkeypatch.syspath_prepend(str(tmp_path / "fake"))

    return install


@pytest.fixture
def x64_off():
    """JAX's default 32-bit mode for the test, whatever it was."""
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", before)
