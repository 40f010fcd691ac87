"""macOS and native Windows, simulated on Linux (tests/simulated/sitecustomize.py):
the real daemon and a caching loader as they would run there, with what
those systems' Python lacks taken away (posix_fallocate, /proc and Linux's
socket options on macOS; fcntl, dir_fd, O_NOFOLLOW, getuid and pread on
Windows). docs/install.md says what this covers and what it cannot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tether
from tether.daemon.spawn import DaemonProcess

from ..conftest import DAEMON_PYTHON, collect

SIMULATED = Path(__file__).resolve().parents[1] / "simulated"
ROWS = 3000
OPTIONS = {"dataset": "train", "batch_size": 100, "shuffle": True, "seed": 5, "num_epochs": 2,
           "shard_bytes": 16 << 10}  # two epochs: the second from the disk cache
WSL_LINE = "tether serve needs Linux or macOS"


def simulating(system: str) -> dict[str, str]:
    path = [str(SIMULATED), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"TETHER_SIMULATE": system, "PYTHONPATH": os.pathsep.join(path)}


def run_simulated(system: str, *args: str, cwd: Path | None = None,
                  timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env={**os.environ, **simulating(system)},
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def home(tmp_path: Path, npy_dataset) -> dict[str, Path]:
    """The owner's side: a dataset, a folder to share, a checkpoint folder to send."""
    share = tmp_path / "pretrained"
    share.mkdir()
    (share / "w.bin").write_bytes(os.urandom(100_000))
    work = tmp_path / "gpu"
    (work / "ckpt" / "shards").mkdir(parents=True)
    (work / "ckpt" / "shards" / "0.bin").write_bytes(os.urandom(50_000))
    (work / "ckpt" / "meta.json").write_text('{"step": 1}')
    return {"data": npy_dataset(ROWS), "share": share, "work": work,
            "state": tmp_path / "state"}


def _start(home: dict[str, Path], system: str | None) -> DaemonProcess:
    return DaemonProcess([home["data"]], home["state"], "--share", f"models={home['share']}",
                         python=DAEMON_PYTHON, env=simulating(system) if system else None)


def _check_the_gpu_side(home: dict[str, Path], url: str, system: str) -> dict:
    """Run sim_client.py under `system`; check every row once per epoch, in the
    order an uncached loader on Linux gets, the uploads and the shared file."""
    done = run_simulated(system, str(SIMULATED / "sim_client.py"), url, str(home["work"]),
                         json.dumps(OPTIONS))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((home["work"] / "report.json").read_text())
    assert not report["fallocate"]  # the simulation was in force
    expected, _ = collect(tether.Loader(url, **OPTIONS))
    got = np.load(home["work"] / "batches.npz")
    assert report["batches"] == len(expected)
    for i, batch in enumerate(expected):
        for name, column in batch.items():
            np.testing.assert_array_equal(got[f"{i}/{name}"], column, err_msg=f"{i}/{name}")
    ids = np.concatenate([got[f"{i}/id"] for i in range(len(expected))])
    assert sorted(ids[:ROWS]) == sorted(ids[ROWS:]) == list(range(ROWS))
    assert report["stats"]["cache_rows_fetched"] == ROWS  # epoch 2 came from the disk cache
    assert report["stats"]["cache_rows_read"] == ROWS
    assert (home["work"] / "w.bin").read_bytes() == (home["share"] / "w.bin").read_bytes()
    assert "shares read-only" in report["share_by_case"]
    results = home["state"] / "results"
    assert (results / "run" / "metrics.json").read_bytes() == b'{"loss": 0.25}'
    for name in ("shards/0.bin", "meta.json"):
        assert (results / "run" / "ckpt" / name).read_bytes() == \
            (home["work"] / "ckpt" / name).read_bytes()
    assert not (results / "Models").exists()
    return report


def test_on_macos_the_daemon_serves_and_a_caching_loader_gets_every_row(home) -> None:
    """Both ends simulate macOS: the daemon starts (OPEN_MAX, no /proc), serves,
    takes uploads and shares; the loader reserves its cache without posix_fallocate."""
    with _start(home, "macos") as daemon:
        report = _check_the_gpu_side(home, daemon.url, "macos")
        assert daemon.stop() == 0, daemon.stderr_text()[-2000:]
    assert report["platform"] == "darwin"


def test_on_windows_the_loader_and_its_cache_work_against_a_daemon_elsewhere(home) -> None:
    """The GPU side on native Windows (a local NVIDIA card): no fcntl, getuid, pread."""
    with _start(home, None) as daemon:
        report = _check_the_gpu_side(home, daemon.url, "windows")
        assert daemon.stop() == 0, daemon.stderr_text()[-2000:]
    assert not report["getuid"]


@pytest.mark.parametrize("command", [["-m", "tether", "serve", "DATA"],
                                     ["-m", "tether.daemon", "DATA", "--port", "0"],
                                     ["-m", "tether", "demo"]])
def test_on_windows_tether_serve_stops_at_once_with_one_line_pointing_to_wsl2(
        home, command) -> None:
    done = run_simulated("windows", *[str(home["data"]) if a == "DATA" else a for a in command],
                         timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "WSL2" in lines[0] and "docs/install.md" in lines[0]
    runs = "tether demo" if command[-1] == "demo" else "tether serve"
    assert lines[0].startswith(WSL_LINE.replace("tether serve", runs))
    assert done.stdout == ""


def test_on_windows_tether_serve_from_python_raises_that_line(tmp_path: Path) -> None:
    code = ("import numpy as np, tether\n"
            "from tether.daemon.posix import UnsupportedSystem\n"
            "try:\n    tether.serve(train={'x': np.arange(10)})\n"
            "except UnsupportedSystem as exc:\n    print(exc)\n")
    done = run_simulated("windows", "-c", code, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(WSL_LINE) and "WSL2" in done.stdout
    assert not list(tmp_path.iterdir())  # refused before anything was written


_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import tether, tether.daemon
failed = {}
for package in (tether, tether.daemon):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.endswith("__main__") or module.name.startswith("tether.bench"):
            continue
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            failed[module.name] = repr(exc)
print(json.dumps(failed))
"""


def test_every_module_that_imports_on_linux_imports_on_macos_and_windows() -> None:
    """`import tether.daemon.cli` on Windows once died of `import fcntl`: the
    refusal above needs every module importable, and the loader needs its own."""
    plain = subprocess.run([sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True,
                           timeout=240, check=True)
    optional = json.loads(plain.stdout)  # (extras this environment lacks: torch, grain)
    for system in ("macos", "windows"):
        done = run_simulated(system, "-c", _IMPORT_ALL)
        assert done.returncode == 0, done.stderr[-3000:]
        failed = json.loads(done.stdout.strip().splitlines()[-1])
        assert set(failed) == set(optional), (system, failed)
