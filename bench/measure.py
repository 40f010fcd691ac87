"""Run one system over one link and measure what the issue asks for.

Figures: payload MB/s and samples/s delivered as ready jax.Arrays, time to
first batch, bytes on the wire and compression ratio, a system's own units
per second (real tokens), for image folders the encoded files' bytes per
second against the link's rate, CPU seconds per GB on
each side, peak RSS of each side, and with a step time the share of steps
that waited on data. Server and client each run in a process of their own,
so each side's CPU and memory are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import data, filter_data, image_data
from .client import peak_rss
from .link import Link, ShapedProxy
from .systems import REGISTRY


@dataclass
class Measurement:
    system: str
    data: str
    link: str
    link_rate_bps: float | None
    rows: int
    payload_bytes: int
    seconds: float
    first_batch_s: float
    wire_bytes: int | None
    client_cpu_s: float
    server_cpu_s: float
    client_peak_rss: int
    server_peak_rss: int
    steps: int
    waited_steps: int
    step_s: float = 0.0
    units: int = 0  # what the system counts besides rows (`unit`): real tokens
    unit: str = ""
    file_bytes: int | None = None  # image folders: bytes of the files of the rows moved

    @property
    def mb_per_s(self) -> float:
        return self.payload_bytes / self.seconds / 1e6

    @property
    def samples_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def units_per_s(self) -> float | None:
        return self.units / self.seconds if self.unit else None

    @property
    def link_use(self) -> float | None:
        """The files' bytes per second over the link's: how much of the link the
        encoded images used (above 1 if they travelled compressed)."""
        if self.file_bytes is None or not self.link_rate_bps:
            return None
        return self.file_bytes / self.seconds / (self.link_rate_bps / 8)

    @property
    def ratio(self) -> float | None:
        return self.payload_bytes / self.wire_bytes if self.wire_bytes else None

    @property
    def waited_share(self) -> float | None:
        return self.waited_steps / max(self.steps - 1, 1) if self.step_s else None

    def cpu_per_gb(self, side: str) -> float:
        return getattr(self, f"{side}_cpu_s") / (self.payload_bytes / 1e9)

    def to_json(self) -> dict:
        return {**asdict(self), "mb_per_s": self.mb_per_s, "samples_per_s": self.samples_per_s,
                "units_per_s": self.units_per_s, "link_use": self.link_use,
                "ratio": self.ratio, "waited_share": self.waited_share,
                "client_cpu_s_per_gb": self.cpu_per_gb("client"),
                "server_cpu_s_per_gb": self.cpu_per_gb("server")}


def median(runs: list[Measurement]) -> Measurement:
    """The run of median throughput (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r.mb_per_s)[(len(runs) - 1) // 2]


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds process `pid` has used (every thread, live or ended), to the
    nanosecond: Linux's CPU-time clock of that process, as clock_getcpuclockid(3)
    makes it. /proc/PID/stat counts clock ticks (10 ms): too coarse for a
    transfer that costs a few milliseconds, which it measured as 0."""
    try:
        return time.clock_gettime((~pid << 3) | _CPUCLOCK_SCHED)
    except OSError:  # not Linux, or not ours to read: ticks are better than nothing
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_CPUCLOCK_SCHED = 2  # the kernel's per-process clock of scheduled CPU time


def _file_bytes(dataset: Path, rows: int) -> int:
    """Bytes of the image files a run delivered: all of them, if it delivered every row."""
    sizes = [p.stat().st_size for p in image_data.image_files(dataset)]
    if rows != len(sizes):
        raise RuntimeError(f"{len(sizes)} images in {dataset}, {rows} delivered")
    return sum(sizes)


def _check_rows(system: str, dataset: Path, rows: int) -> None:
    """A filtering system must deliver exactly the rows the filter selects, every one of
    them: the figures of systems that deliver different rows would not compare."""
    expected = filter_data.matching_rows(dataset)
    if rows != expected:
        raise RuntimeError(f"{system} delivered {rows} rows; {filter_data.FILTER!r} "
                           f"selects {expected} in {dataset}")


def run(system_name: str, dataset: Path, link: Link, workdir: Path, batch_size: int,
        step_s: float = 0.0) -> Measurement:
    system = REGISTRY[system_name]()
    address = system.start(dataset, workdir)
    proxy = ShapedProxy(address, link) if address and link.shaped else None
    try:
        host, port = ("127.0.0.1", proxy.port) if proxy else (address or ("-", 0))
        server_pid = system.server_pid
        server_cpu = process_cpu_seconds(server_pid) if server_pid else 0.0
        client = subprocess.run(
            [sys.executable, "-m", "tether.bench.client", system.client_name or system_name,
             str(dataset), host, str(port), str(batch_size), str(step_s)],
            capture_output=True, text=True, check=False,
            env={**os.environ, **system.client_env()})
        if client.returncode != 0:
            raise RuntimeError(f"{system.name} client failed:\n{client.stderr[-3000:]}")
        figures = json.loads(client.stdout.strip().splitlines()[-1])
        if system.family == data.FILTERING:
            _check_rows(system.name, dataset, figures["rows"])
        return Measurement(
            system=system.name, data=dataset.name, link=link.name, link_rate_bps=link.rate,
            wire_bytes=system.wire_bytes(dataset) if address else None,
            server_cpu_s=(process_cpu_seconds(server_pid) - server_cpu) if server_pid else 0.0,
            server_peak_rss=peak_rss(server_pid) if server_pid else 0,
            step_s=step_s, unit=system.unit,
            file_bytes=(_file_bytes(dataset, figures["rows"])
                        if system.family == data.IMAGES else None),
            **figures,
        )
    finally:
        if proxy:
            proxy.close()
        system.stop()
