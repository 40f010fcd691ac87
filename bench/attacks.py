"""The third hardening pass's attacks all at once, against one daemon, with an
honest client beside them (docs/security.md, issue 23):

    python -m tether.bench.attacks [--max-memory 256MB] [--seconds 20] [--attacks sql,filters]

A daemon with `--allow-sql` and a memory budget serves an image folder
holding bombs (a lossless WebP of 9400x9400, a 16-bit PNG of 7000x7000, a
GIF whose screen is 9000x9000, a TIFF named .png) among ordinary photos,
and 16M rows for filters. Meanwhile:

- two loaders send the SQL string bomb (`repeat(repeat('a', 1000000), 1900)`);
- four callers send 241-operation filters over the 16M rows, each giving up
  after 1 s (and sending another);
- two loaders decode the image folder on the daemon, one on the loader side
  (`on_bad_image="skip"`: the bombs are left out);
- an honest client asks `Describe` and reads a small table every 0.1 s.

It reports the daemon's largest memory (VmRSS, and RssAnon: its own memory
without the pages of files it maps; sampled every 20 ms) against its
budget and its memory at start, this process's (the loaders') growth, and
the honest client's slowest answer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tether.wire.sizes import parse_size

HEAVY = " + ".join(["x * x"] * 60) + " > {}"  # 241 operations: under the cap
BOMB_SQL = "SELECT length(repeat(repeat('a', 1000000), 1900)) AS n"


def write_data(root: Path) -> Path:
    """The served folder: `photos/` (bombs among ordinary images), `big/` (16M
    floats), `small.parquet` (the honest client's table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    photos = root / "photos" / "cats"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(
            photos / f"{i:03d}.jpg", quality=90)
    Image.new("RGB", (9400, 9400), (9, 99, 199)).save(photos / "bomb.webp", lossless=True)
    Image.new("I;16", (7000, 7000)).save(photos / "deep.png")
    (photos / "screen.gif").write_bytes(
        b"GIF89a" + struct.pack("<HHBBB", 9000, 9000, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
        + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00;")
    tiff = io.BytesIO()
    Image.new("RGB", (64, 64)).save(tiff, "TIFF")
    (photos / "tiff.png").write_bytes(tiff.getvalue())
    (root / "big").mkdir()
    np.save(root / "big" / "x.npy", rng.random(16_000_000, dtype=np.float32))
    pq.write_table(pa.table({"id": np.arange(1000)}), root / "small.parquet")
    return root


class Sampler(threading.Thread):
    """The largest VmRSS and RssAnon (memory of its own, not pages of files it
    maps) of `pid`, every 20 ms, until stopped; `first`, at the start."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.first = self.peak = self._now()

    def _now(self) -> dict[str, float]:
        with open(f"/proc/{self.pid}/status") as status:
            return {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status
                    if line.startswith(("VmRSS:", "RssAnon:"))}

    def run(self) -> None:
        while not self.stop.wait(0.02):
            with contextlib.suppress(OSError, StopIteration):
                now = self._now()
                self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}


ATTACKS = ("sql", "filters", "images")


def attack(url: str, until: float, kinds: tuple[str, ...] = ATTACKS) -> list[threading.Thread]:
    """The attackers of `kinds`, as threads that run until `until` (time.monotonic)."""
    import tether

    def repeat(action) -> None:
        while time.monotonic() < until:
            with contextlib.suppress(Exception):
                action()

    def sql_bomb() -> None:
        with tether.Loader(url, sql=BOMB_SQL, batch_size=1) as loader:
            list(loader)

    def filter_bomb(i: int) -> None:
        with tether.connect(url, timeout=1.0) as client:
            client.describe("big", filter=HEAVY.format(i + time.monotonic() % 1))

    def images(decode: str) -> None:
        with tether.Loader(url, dataset="photos", batch_size=8, image_size=(224, 224),
                           decode=decode, on_bad_image="skip") as loader:
            list(loader)

    jobs = {"sql": [sql_bomb, sql_bomb],
            "filters": [lambda i=i: filter_bomb(i) for i in range(4)],
            "images": [lambda: images("daemon"), lambda: images("daemon"),
                       lambda: images("loader")]}
    jobs = [job for kind in kinds for job in jobs[kind]]
    return [threading.Thread(target=repeat, args=(job,), daemon=True) for job in jobs]


def honest(url: str, until: float) -> list[float]:
    """Seconds each of the honest client's calls took (a Describe, a table read)."""
    import tether

    took = []
    with tether.connect(url) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            client.describe("small")
            client.read("small")
            took.append(time.monotonic() - started)
            time.sleep(0.1)
    return took


def run(max_memory: str, seconds: float, kinds: tuple[str, ...] = ATTACKS) -> dict[str, float]:
    from tether.daemon.spawn import DaemonProcess

    from .client import peak_rss

    with tempfile.TemporaryDirectory(prefix="tether-attacks-") as folder:
        root = write_data(Path(folder) / "data")
        served = [root / "photos", root / "big", root / "small.parquet"]
        with DaemonProcess(served, Path(folder) / "state", "--allow-sql", "--max-memory",
                           max_memory, "--log-level", "error") as daemon:
            sampler = Sampler(daemon.proc.pid)
            sampler.start()
            Path("/proc/self/clear_refs").write_text("5")  # (writing the bombs raised it)
            before = peak_rss() / 2**20
            until = time.monotonic() + seconds
            attackers = attack(daemon.url, until, kinds)
            for thread in attackers:
                thread.start()
            took = honest(daemon.url, until)
            for thread in attackers:
                thread.join(90)
            sampler.stop.set()
            sampler.join()
            alive = daemon.proc.poll() is None
    return {"budget_mb": parse_size(max_memory) / 2**20,
            "daemon_rss_at_start_mb": sampler.first["VmRSS"],
            "daemon_peak_rss_mb": sampler.peak["VmRSS"],
            "daemon_anon_at_start_mb": sampler.first["RssAnon"],
            "daemon_peak_anon_mb": sampler.peak["RssAnon"],
            "loaders_growth_mb": peak_rss() / 2**20 - before, "honest_calls": len(took),
            "honest_slowest_s": max(took), "honest_median_s": float(np.median(took)),
            "daemon_alive": alive}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tether.bench.attacks",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-memory", default="256MB")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated, of: {', '.join(ATTACKS)} (default: all)")
    args = parser.parse_args(argv)
    kinds = tuple(args.attacks.split(","))
    if set(kinds) - set(ATTACKS):
        parser.error(f"--attacks: choose from {', '.join(ATTACKS)}")
    figures = run(args.max_memory, args.seconds, kinds)
    for name, value in figures.items():
        print(f"{name:>20}: {value:.2f}" if isinstance(value, float) else f"{name:>20}: {value}")


if __name__ == "__main__":
    main(sys.argv[1:])
