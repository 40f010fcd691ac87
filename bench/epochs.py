"""Several epochs over one link, with and without the loader's disk cache.

    tether bench --epochs 3 --cache --link loopback,100mbit

Each run serves the data with the real daemon behind the shaped link and
trains `epochs` shuffled epochs in a client process of its own, timing each
epoch until its last batch is a ready jax.Array. With `Loader(cache=...)`
the first epoch fills the cache and the later ones read it; without it
every epoch crosses the link again. Runs alternate between the two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .link import Link, ShapedProxy
from .systems.tether_stream import TetherSystem

CACHED, UNCACHED = "tether +cache", "tether"


@dataclass
class EpochRun:
    system: str
    link: str
    data: str
    payload_bytes: int  # of one epoch
    epoch_seconds: list[float]

    def later_share(self) -> float:
        """The slowest later epoch's time over the first's (the cache's target: <= 0.2)."""
        return max(self.epoch_seconds[1:]) / self.epoch_seconds[0]

    @property
    def total(self) -> float:
        return sum(self.epoch_seconds)


def _client(url: str, dataset: str, epochs: int, cache: str, batch_size: int) -> None:
    """The training side: every epoch's batches into jax arrays; prints the times."""
    import jax

    import tether

    jax.block_until_ready(jax.device_put(1.0))  # the runtime started before the clock
    loader = tether.Loader(url, dataset=dataset, batch_size=batch_size, shuffle=True, seed=0,
                           num_epochs=epochs, cache=cache or None)
    times, payload, epoch = [], 0, 0
    start = time.perf_counter()
    for batch in loader:
        if loader.epoch != epoch:  # this batch is the first of the next epoch
            times.append(time.perf_counter() - start)
            start, epoch = time.perf_counter(), loader.epoch
        jax.block_until_ready(jax.device_put(batch))
        if epoch == 0:
            payload += sum(v.nbytes for v in batch.values())
    times.append(time.perf_counter() - start)
    loader.close()
    print(json.dumps({"epoch_seconds": times, "payload_bytes": payload}), flush=True)


def run(dataset: Path, link: Link, workdir: Path, epochs: int, cached: bool,
        batch_size: int) -> EpochRun:
    system = TetherSystem("auto", shuffle=True)
    address = system.start(dataset, workdir)
    proxy = ShapedProxy(address, link) if link.shaped else None
    try:
        endpoint = system.endpoint.with_address("127.0.0.1", proxy.port) if proxy \
            else system.endpoint
        cache = str(workdir / "cache") if cached else ""
        client = subprocess.run(
            [sys.executable, "-m", "tether.bench.epochs", endpoint.url(), dataset.name,
             str(epochs), cache, str(batch_size)],
            capture_output=True, text=True, check=False, env=dict(os.environ))
        if client.returncode != 0:
            raise RuntimeError(f"the epochs client failed:\n{client.stderr[-3000:]}")
        figures = json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        if proxy:
            proxy.close()
        system.stop()
    return EpochRun(CACHED if cached else UNCACHED, link.name, dataset.name, **figures)


def median(runs: list[EpochRun]) -> EpochRun:
    """The run of median total time, its epochs as measured."""
    return sorted(runs, key=lambda r: r.total)[(len(runs) - 1) // 2]


def table(runs: list[EpochRun]) -> str:
    epochs = max(len(r.epoch_seconds) for r in runs)
    head = f"{'link':<10} {'system':<15}" + "".join(f" {'epoch ' + str(i + 1):>9}"
                                                    for i in range(epochs))
    lines = [head + f" {'later/first':>12} {'total':>8}", "-" * (len(head) + 22)]
    for r in runs:
        cells = "".join(f" {s:>8.2f}s" for s in r.epoch_seconds)
        lines.append(f"{r.link:<10} {r.system:<15}{cells} {r.later_share():>12.2f} "
                     f"{r.total:>7.2f}s")
    by_link: dict[str, dict[str, EpochRun]] = {}
    for r in runs:
        by_link.setdefault(r.link, {})[r.system] = r
    for link, pair in by_link.items():
        if CACHED in pair and UNCACHED in pair:
            lines.append(f"{link}: with the cache, epochs after the first take "
                         f"{pair[CACHED].later_share():.2f}x the first's time (target <= 0.2 on "
                         f"slow links); all epochs {pair[UNCACHED].total / pair[CACHED].total:.2f}x"
                         " as fast as without (target >= 1.0 on loopback)")
    return "\n".join(lines)


def plot(runs: list[EpochRun], path: Path) -> None:
    """Seconds of each epoch, a panel per link, bars side by side per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = list(dict.fromkeys(r.link for r in runs))
    fig, axes = plt.subplots(1, len(links), figsize=(5 * len(links), 4), squeeze=False)
    for ax, link in zip(axes[0], links, strict=True):
        shown = [r for r in runs if r.link == link]
        width = 0.8 / len(shown)
        for i, r in enumerate(shown):
            xs = [e + i * width for e in range(len(r.epoch_seconds))]
            ax.bar(xs, r.epoch_seconds, width, label=r.system)
        ax.set_xticks([e + 0.4 - width / 2 for e in range(len(shown[0].epoch_seconds))],
                      [f"epoch {e + 1}" for e in range(len(shown[0].epoch_seconds))])
        ax.set_ylabel("seconds")
        ax.set_title(f"{shown[0].data} over {link}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    url, dataset, epochs, cache, batch_size = sys.argv[1:]
    _client(url, dataset, int(epochs), cache, int(batch_size))
