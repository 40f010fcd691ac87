"""How soon the first batch comes over a slow-to-answer link, and whether steps wait at start.

    python -m tether.bench.first_batch [--link 100mbit] [--repeat 5] [--json FILE]

A real daemon with pinned TLS, behind the shaped link proxy (link.py; the
`100mbit` preset: 100 Mbit/s, 20 ms each way, so a 40 ms round trip). Each
repeat runs in a fresh process, so nothing a process keeps (the pinned
certificate) is carried from one repeat to the next; in it a first loader,
then a second one, time `Loader(...)` to the first batch and `iter()` to the
first batch, and a third calls iter() 0.5 s after `Loader(...)` (a script
building its model in between); the dataset is one small batch (its
transfer takes about half a round trip). Round trips are those times over
the RTT. The proxy answers TCP handshakes itself: on a real link each new
TCP connection adds one more. Connections retried (the loader's "connection
lost" warnings) are counted: their time is in the figures.

Then a training loop whose step consumes 90% of the link's rate counts the
steps after the first that found no batch ready (fetching it took over
1 ms), start-up included, over about 2.5 s of data at the link's rate.

`first_batch_figures()` returns the figures as a dict (for `tether bench`).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .client import WAIT_THRESHOLD_S
from .link import PRESETS, Link, ShapedProxy

ROW_FLOATS = 256  # rows of 1 KiB of float32 (plus an int64 label)
FIRST_BATCH_ROWS = 256  # one batch of 264 KB: the first batch is mostly round trips
BATCH_SIZE = 256
LOADERS = ("first", "second", "after_setup")  # in one process, in this order
LOAD = 0.9  # the training step consumes this share of the link's rate
SETUP_S = 0.5  # a third loader's iter() comes this long after Loader(...)
WAIT_SECONDS_OF_LINK = 2.5  # data for the wait run: about this long at the link rate


def write_dataset(folder: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", rng.standard_normal((rows, ROW_FLOATS), dtype=np.float32))
    np.save(folder / "label.npy", rng.integers(0, 10, rows).astype(np.int64))
    return folder


def _row_bytes() -> int:
    return ROW_FLOATS * 4 + 8


class _RetryCounter(logging.Handler):
    """Counts the loader's "connection lost; reconnecting" warnings: a first connection
    that failed and was retried (its time is in the figures too)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1

    def take(self) -> int:
        count, self.count = self.count, 0
        return count

    @classmethod
    def attached(cls) -> _RetryCounter:
        log = logging.getLogger("tether.retry")
        counter = next((h for h in log.handlers if isinstance(h, cls)), None)
        if counter is None:
            counter = cls()
            log.addHandler(counter)
        counter.take()
        return counter


def _timed_loader(url: str, setup_s: float = 0.0) -> dict[str, float | int]:
    """One loader: seconds from construction, and from iter(), to its first batch;
    iter() `setup_s` after construction (a training script building its model)."""
    from tether import Loader  # the lazy import of the loader is no round trip

    retries = _RetryCounter.attached()
    built = time.perf_counter()
    loader = Loader(url, dataset="data", batch_size=BATCH_SIZE, codec="none")
    time.sleep(setup_s)
    asked = time.perf_counter()
    next(iter(loader))
    first = time.perf_counter()
    loader.close()
    return {"construct_s": first - built, "iter_s": first - asked,
            "retries": retries.take()}


def _waited_steps(url: str, step_s: float) -> dict[str, Any]:
    """Steps that found no batch ready, in a loop of `step_s` steps (the first excluded:
    nothing can be ready before the stream opens), and which ones they were."""
    from tether import Loader

    steps, waited = 0, []
    with Loader(url, dataset="data", batch_size=BATCH_SIZE, codec="none") as loader:
        asked = time.perf_counter()
        for _ in loader:
            if steps and time.perf_counter() - asked > WAIT_THRESHOLD_S:
                waited.append(steps)
            steps += 1
            time.sleep(step_s)  # the training step
            asked = time.perf_counter()
    return {"steps": steps, "waited_at": waited}


def _child(argv: list[str]) -> None:
    """In a fresh process: `first URL` (two loaders) or `waits URL STEP_S`."""
    if argv[0] == "first":
        figures = {"first": _timed_loader(argv[1]), "second": _timed_loader(argv[1]),
                   "after_setup": _timed_loader(argv[1], SETUP_S)}
    else:
        figures = _waited_steps(argv[1], float(argv[2]))
    print(json.dumps(figures), flush=True)


def _run_child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "tether.bench.first_batch", "--child", *args],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"first-batch client failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve_through(dataset: Path, state: Path, link: Link):
    """A TLS daemon serving `dataset` as "data", and the link proxy in front of it."""
    import tether
    from tether.daemon.spawn import DaemonProcess

    daemon = DaemonProcess([dataset], state, "--log-level", "error")
    endpoint = tether.parse_url(daemon.url)
    proxy = ShapedProxy((endpoint.host, endpoint.port), link)
    return daemon, proxy, endpoint.with_address("127.0.0.1", proxy.port).url()


def first_batch_figures(link: Link = PRESETS["100mbit"], repeats: int = 5,
                        workdir: Path | None = None) -> dict[str, Any]:
    """Medians over `repeats` fresh processes: seconds and round trips to the first batch
    (first loader of a process and second), and the share of steps that waited."""
    rtt, bandwidth = 2 * link.delay, link.rate
    if not rtt or not bandwidth:
        raise ValueError(f"{link.describe()}: the first batch is measured on a link with "
                         "both a delay and a rate")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp_path = Path(tmp)
        figures: dict[str, Any] = {"link": link.name, "rtt_s": rtt, "bandwidth_bps": bandwidth,
                                   "repeats": repeats}
        small = write_dataset(tmp_path / "small" / "data", FIRST_BATCH_ROWS)
        daemon, proxy, url = serve_through(small, tmp_path / "state-a", link)
        try:
            runs = [_run_child("first", url) for _ in range(repeats)]
        finally:
            proxy.close()
            daemon.close()
        for which in LOADERS:
            figures[f"{which}_retries"] = sum(run[which]["retries"] for run in runs)
            for clock in ("construct_s", "iter_s"):
                seconds = statistics.median(run[which][clock] for run in runs)
                figures[f"{which}_{clock}"] = seconds
                figures[f"{which}_{clock[:-2]}_round_trips"] = seconds / rtt

        rows = int(bandwidth / 8 * WAIT_SECONDS_OF_LINK) // _row_bytes()
        large = write_dataset(tmp_path / "large" / "data", rows)
        step_s = BATCH_SIZE * _row_bytes() * 8 / (LOAD * bandwidth)
        daemon, proxy, url = serve_through(large, tmp_path / "state-b", link)
        try:
            waits = [_run_child("waits", url, str(step_s)) for _ in range(repeats)]
        finally:
            proxy.close()
            daemon.close()
        shares = [len(w["waited_at"]) / max(w["steps"] - 1, 1) for w in waits]
        figures.update(step_s=step_s, steps=waits[0]["steps"],
                       waited_at=[w["waited_at"] for w in waits],
                       waited_share=statistics.median(shares))
        return figures


def report(figures: dict[str, Any]) -> str:
    rtt = figures["rtt_s"]
    lines = [f"first batch over {figures['link']} ({rtt * 1e3:g} ms RTT), pinned TLS, "
             f"median of {figures['repeats']} fresh processes",
             f"{'loader':<12} {'from':<10} {'seconds':>8} {'round trips':>12} "
             f"{'retried connects, all runs':>27}"]
    for which in LOADERS:
        if which == "after_setup":  # its Loader() time holds the set-up's sleep
            clocks = (("iter", "iter()"),)
        else:
            clocks = (("construct", "Loader()"), ("iter", "iter()"))
        for clock, name in clocks:
            lines.append(f"{which:<12} {name:<10} {figures[f'{which}_{clock}_s']:>8.3f} "
                         f"{figures[f'{which}_{clock}_round_trips']:>12.1f} "
                         f"{figures[f'{which}_retries']:>27}")
    lines.append(f"steps waiting at {LOAD:.0%} of {figures['bandwidth_bps'] / 1e6:g} Mbit/s "
                 f"(step {figures['step_s'] * 1e3:.1f} ms, {figures['steps']} steps): "
                 f"{figures['waited_share']:.1%} median; steps that waited, per run: "
                 f"{figures['waited_at']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", default="100mbit", choices=[n for n, link in
                                                              PRESETS.items() if link.rate])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = first_batch_figures(PRESETS[args.link], args.repeat)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
