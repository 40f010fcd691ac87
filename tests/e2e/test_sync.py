"""`tether.sync` and `tether.restore` with the real daemon and real Orbax: a
training process writes 5 checkpoint steps while sync sends them home, is
killed (SIGKILL, as a runtime dies), and a new process restores the newest
step and the loader's state from home and trains on with the exact next
batch; no temporary step folder ever reaches home; max_rate holds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("orbax.checkpoint")

import tether  # noqa: E402

from ..conftest import wait_until  # noqa: E402

pytestmark = pytest.mark.jax

TRAIN = """
import sys, time
import jax.numpy as jnp, numpy as np
import orbax.checkpoint as ocp
import tether
url, ckpt = sys.argv[1], sys.argv[2]
loader = tether.Loader(url, dataset="train", batch_size=16, shuffle=True, seed=3,
                       num_epochs=None)
manager = ocp.CheckpointManager(ckpt, options=ocp.CheckpointManagerOptions(max_to_keep=10))
home = tether.sync(ckpt, "run-7/ckpt", every=0.2, url=url)
w = jnp.zeros(8)
for step, batch in enumerate(loader, start=1):
    w = w + jnp.asarray(batch["x"]).mean(axis=0)  # a "training step"
    if step % 10 == 0:
        manager.save(step, args=ocp.args.Composite(
            model=ocp.args.StandardSave({"w": w}),
            loader=ocp.args.JsonSave(loader.state_dict())))
    if step == 50:
        manager.wait_until_finished()
        home.flush()
        print("SYNCED", [int(i) for i in batch["id"]], flush=True)
        time.sleep(600)  # the runtime dies here
"""

RESUME = """
import json, sys
import orbax.checkpoint as ocp
import tether
url, ckpt = sys.argv[1], sys.argv[2]
tether.restore("run-7/ckpt", ckpt, url=url)  # the first cell of a new runtime
manager = ocp.CheckpointManager(ckpt)
step = manager.latest_step()
restored = manager.restore(step, args=ocp.args.Composite(
    model=ocp.args.StandardRestore(), loader=ocp.args.JsonRestore()))
loader = tether.Loader(url, dataset="train", batch_size=16, shuffle=True, seed=3,
                       num_epochs=None)
loader.load_state_dict(restored.loader)
batch = next(iter(loader))
print(json.dumps({"step": step, "w": [float(v) for v in restored.model["w"]],
                  "next": [int(i) for i in batch["id"]]}))
"""


def test_sync_keeps_orbax_steps_home_and_restore_resumes_the_next_batch(
        serve, npy_dataset, tmp_path: Path) -> None:
    results = tmp_path / "state0" / "results"
    daemon = serve(npy_dataset(2_000))
    seen_temporary: list[str] = []
    watching = threading.Event()

    def watch() -> None:  # home must never hold a step that is not final
        while not watching.is_set():
            seen_temporary.extend(str(p) for p in results.rglob("*orbax-checkpoint-tmp*"))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    training = subprocess.Popen([sys.executable, "-c", TRAIN, daemon.url,
                                 str(tmp_path / "content" / "ckpt")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = wait_until(lambda: training.stdout.readline(), "the training wrote step 50",
                          timeout=240)
        assert line.startswith("SYNCED"), training.stderr.read()[-3000:]
        training.send_signal(signal.SIGKILL)  # no atexit, no flush: the runtime is gone
        training.wait(30)
    finally:
        watching.set()
        watcher.join()
        if training.poll() is None:
            training.kill()
    assert not seen_temporary
    steps = sorted(int(p.name) for p in (results / "run-7" / "ckpt").iterdir() if p.is_dir())
    assert steps == [10, 20, 30, 40, 50]

    done = subprocess.run([sys.executable, "-c", RESUME, daemon.url,
                           str(tmp_path / "new-runtime" / "ckpt")],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads(done.stdout.splitlines()[-1])
    with tether.Loader(daemon.url, dataset="train", batch_size=16, shuffle=True, seed=3,
                       num_epochs=None) as loader:
        batches = iter(loader)
        uninterrupted = [next(batches) for _ in range(51)]
    expected_w = np.sum([b["x"].mean(axis=0) for b in uninterrupted[:50]], axis=0)
    assert resumed["step"] == 50
    assert resumed["next"] == [int(i) for i in uninterrupted[50]["id"]]  # the exact next batch
    np.testing.assert_allclose(resumed["w"], expected_w, rtol=1e-5)


def test_sync_with_max_rate_stays_under_it(serve, npy_dataset, tmp_path: Path) -> None:
    daemon = serve(npy_dataset(10))
    local = tmp_path / "out"
    local.mkdir()
    (local / "big.bin").write_bytes(np.random.default_rng(0).bytes(6 << 20))
    with tether.sync(local, "rated", every=3600, max_rate="2MB", url=daemon.url) as home:
        start = time.monotonic()
        home.flush(settled=0.1)
        seconds = time.monotonic() - start - 0.1
        status = home.status()
    assert status["bytes_sent"] == 6 << 20 and status["files_sent"] == 1
    with tether.Loader(daemon.url, dataset="train", batch_size=5) as loader:
        assert loader.stats()["synced_bytes"] >= 6 << 20  # beside the stream's own figures
    # a bucket of one second's worth, then 2 MB/s: at least 2 s for 6 MB (a limit,
    # not a speed: a slower machine only takes longer)
    assert status["bytes_sent"] / seconds <= 2e6 * 1.5
    assert (tmp_path / "state0" / "results" / "rated" / "big.bin").stat().st_size == 6 << 20


QUARTER = """
import json, sys
import tether
url, out = sys.argv[1], sys.argv[2]
with tether.sync(out, "auto", every=3600, url=url) as home:
    home.flush(settled=0.01)
    alone = home.status()["max_rate"]
    with tether.Loader(url, dataset="train", batch_size=100) as loader:
        for _ in loader:
            pass
        # measured before the flush: after the stream ended, the rate only falls
        measured = loader.stats()["wire_mb_per_s"] * 1e6
        home.flush(settled=0.01)
        beside = home.status()["max_rate"]
print(json.dumps({"alone": alone, "beside": beside, "measured": measured}))
"""


def test_without_max_rate_sync_takes_a_quarter_of_what_the_loader_measured(
        serve, npy_dataset, tmp_path: Path) -> None:
    """In a process of its own: the loaders of this one are not that process's."""
    daemon = serve(npy_dataset(2_000))
    (tmp_path / "out").mkdir()
    done = subprocess.run([sys.executable, "-c", QUARTER, daemon.url, str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["alone"] is None  # no loader has measured the link
    # a quarter of the link it measured, never under 1 MB/s (MIN_RATE)
    assert figures["beside"] >= 1e6
    assert figures["beside"] <= max(1e6, 0.25 * figures["measured"] * 1.0001)


def test_an_entry_the_daemon_refuses_holds_back_no_other(serve, npy_dataset,
                                                         tmp_path: Path) -> None:
    """Found by a review: the first refused entry ended the round, so every entry
    sorted after it never reached home."""
    daemon = serve(npy_dataset(10))
    local = tmp_path / "out"
    (local / "empty-folder").mkdir(parents=True)
    (local / "a:colon.txt").write_text("a name the daemon refuses")
    (local / "z-late.bin").write_bytes(b"z" * 100)
    with tether.sync(local, "run", every=3600, url=daemon.url) as home:
        home.flush(settled=0.05)
        status = home.status()
    assert (tmp_path / "state0" / "results" / "run" / "z-late.bin").read_bytes() == b"z" * 100
    assert status["refused"] == ["a:colon.txt"] and status["last_error"] == ""


EXIT_DOWN = """
import sys, tether
home = tether.sync(sys.argv[1], "run", every=3600, url=sys.argv[2])
open(sys.argv[1] + "/late.bin", "wb").write(b"x")
print("READY", flush=True)
sys.stdin.readline()  # the test stops the daemon, then lets the script end
"""


def test_exit_with_the_daemon_gone_does_not_hang(serve, npy_dataset, tmp_path: Path) -> None:
    """Found by a review: the exit's flush retried for the whole RetryPolicy (300 s)."""
    daemon = serve(npy_dataset(10))
    (tmp_path / "out").mkdir()
    script = subprocess.Popen([sys.executable, "-c", EXIT_DOWN, str(tmp_path / "out"),
                               daemon.url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert script.stdout.readline().strip() == "READY"
    daemon.stop()
    _, stderr = script.communicate("\n", timeout=120)  # the flush gives up after seconds
    assert script.returncode == 0
    assert "the last flush failed" in stderr
