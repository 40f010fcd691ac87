"""A slow consumer over many windows' worth of data: memory stays flat on both sides."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..conftest import DaemonProcess

WINDOW_BYTES = 4 * (1 << 20)  # prefetch 4 shards of 1 MiB
SECONDS = 8.0


def _rss_anon(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def watch_memory(daemon: DaemonProcess, consumer: list[str],
                 every: float = 0.25) -> tuple[list[tuple[int, int]], str]:
    """Run `python -c *consumer` to its end, sampling the anonymous memory of the
    daemon and of the consumer from when it prints its first line (it has its
    first batch: imports and the first window are behind it); the samples and
    what it printed after that line."""
    client = subprocess.Popen([sys.executable, "-c", *consumer], stdout=subprocess.PIPE,
                              text=True)
    client.stdout.readline()
    samples = []
    while client.poll() is None:
        time.sleep(every)
        try:
            samples.append((_rss_anon(daemon.proc.pid), _rss_anon(client.pid)))
        except (OSError, AssertionError):
            break  # the client just exited
    output = client.stdout.read()
    assert client.wait() == 0, "the consumer failed"
    return samples, output


_CONSUMER = """
import sys, time, tether
loader = tether.Loader(sys.argv[1], dataset="floats", batch_size=1024, prefetch=4,
                       shard_bytes=1 << 20, num_epochs=None, shuffle=True, seed=0)
consumed, start = 0, time.monotonic()
for batch in loader:
    if not consumed:
        print("started", flush=True)
    consumed += batch["x"].nbytes
    time.sleep(0.02)  # a slow training step
    if time.monotonic() - start > float(sys.argv[2]):
        break
print(consumed, flush=True)
"""


def test_memory_is_flat_on_both_sides_with_a_slow_consumer(tmp_path: Path) -> None:
    folder = tmp_path / "floats"
    folder.mkdir()
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32,
                                  shape=(64 * 1024, 256))  # 64 MiB, many windows
    x[:] = np.random.default_rng(0).standard_normal(x.shape, dtype=np.float32)
    x.flush()
    daemon = DaemonProcess([folder], tmp_path / "state")
    try:
        samples, output = watch_memory(daemon, [_CONSUMER, daemon.url, str(SECONDS)])
        consumed = int(output)
    finally:
        assert daemon.stop() == 0
    assert consumed > 8 * WINDOW_BYTES  # the window was refilled many times over
    steady = samples[len(samples) // 4:]  # after the first windows filled
    for side, values in (("daemon", [d for d, _ in steady]), ("loader", [c for _, c in steady])):
        growth = max(values) - min(values)
        print(f"{side}: consumed {consumed >> 20} MiB, anonymous memory "
              f"{min(values) >> 20}..{max(values) >> 20} MiB")
        assert growth < 4 * WINDOW_BYTES, f"{side} memory grew by {growth / 2**20:.0f} MiB"
