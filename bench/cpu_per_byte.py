"""Throughput and server CPU per byte against Arrow Flight, plain and with TLS.

    python -m tether.bench.cpu_per_byte [--size 1GB] [--repeat 3] [--json FILE]

Float32 rows over loopback into ready jax.Arrays (bench.measure), codec none
on both sides: Tether `--insecure` against Flight's plain DoGet, and Tether's
pinned TLS against Flight over TLS with a self-signed certificate. The
systems run alternately, `repeat` times; each figure is the median of its
system's runs, each ratio Tether's over Flight's. Server CPU is the serving
process's user + system seconds over the run, per GB delivered.

`cpu_per_byte_figures()` returns the figures as a dict (for `tether bench`);
`figures_from()` makes them from measurements already taken.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.wire.sizes import size_argument

from . import data, measure
from .link import PRESETS

# (variant, tether system, flight system): the pairs compared.
PAIRS = (("plain", "tether-none", "flight-none"), ("tls", "tether-none-tls", "flight-tls"))
THROUGHPUT_TARGET = 1.0  # Tether's GB/s at least Flight's
CPU_TARGET = 1.2  # the daemon's CPU s/GB within this many times Flight's server's
BATCH_SIZE = 1024


def median_figure(runs: Sequence[measure.Measurement], figure: str) -> float:
    values = [r.mb_per_s / 1e3 if figure == "gb_s" else r.cpu_per_gb(figure) for r in runs]
    return statistics.median(values)


def figures_from(runs: dict[str, Sequence[measure.Measurement]]) -> dict[str, Any]:
    """The comparison, from each system's runs (by registry name)."""
    figures: dict[str, Any] = {}
    for variant, tether_name, flight_name in PAIRS:
        if not runs.get(tether_name) or not runs.get(flight_name):
            continue
        pair: dict[str, float | bool] = {}
        for side, name in (("tether", tether_name), ("flight", flight_name)):
            pair[f"{side}_gb_s"] = median_figure(runs[name], "gb_s")
            pair[f"{side}_server_cpu_s_per_gb"] = median_figure(runs[name], "server")
            pair[f"{side}_client_cpu_s_per_gb"] = median_figure(runs[name], "client")
        pair["throughput_ratio"] = pair["tether_gb_s"] / pair["flight_gb_s"]
        pair["server_cpu_ratio"] = (pair["tether_server_cpu_s_per_gb"]
                                    / pair["flight_server_cpu_s_per_gb"])
        pair["throughput_met"] = pair["throughput_ratio"] >= THROUGHPUT_TARGET
        pair["server_cpu_met"] = pair["server_cpu_ratio"] <= CPU_TARGET
        figures[variant] = pair
    return figures


def alternating_runs(names: Sequence[str], size: int, repeats: int,
                     workdir: Path | None = None) -> dict[str, list[measure.Measurement]]:
    """Each system's runs over loopback on `size` bytes of float32 rows, the systems
    taking turns `repeats` times, so that drift in the machine hits them alike."""
    runs: dict[str, list[measure.Measurement]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="tether-cpu-per-byte-", dir=workdir) as tmp:
        dataset = data.write("floats", Path(tmp) / "data", size)
        for repeat in range(repeats):
            for name in names:
                folder = Path(tmp) / f"{name}-{repeat}"
                folder.mkdir()
                result = measure.run(name, dataset, PRESETS["loopback"], folder, BATCH_SIZE)
                print(f"{name}: {result.mb_per_s:,.1f} MB/s, server "
                      f"{result.cpu_per_gb('server'):.2f} CPU s/GB", file=sys.stderr,
                      flush=True)
                runs[name].append(result)
    return runs


def cpu_per_byte_figures(size: int = 1 << 30, repeats: int = 3,
                         workdir: Path | None = None) -> dict[str, Any]:
    """Run the pairs (alternating, `repeats` times) and return `figures_from` their runs,
    with the run's size and repeat count."""
    names = [name for _, *pair in PAIRS for name in pair]
    runs = alternating_runs(names, size, repeats, workdir)
    return {"size_bytes": size, "repeats": repeats, **figures_from(runs)}


def report(figures: dict[str, Any]) -> str:
    lines = [f"{'':<6} {'tether GB/s':>11} {'flight GB/s':>11} {'ratio':>6} "
             f"{'tether CPU s/GB':>15} {'flight CPU s/GB':>15} {'ratio':>6}"]
    for variant, *_ in PAIRS:
        if variant in figures:
            f = figures[variant]
            lines.append(f"{variant:<6} {f['tether_gb_s']:>11.3f} {f['flight_gb_s']:>11.3f} "
                         f"{f['throughput_ratio']:>6.2f} {f['tether_server_cpu_s_per_gb']:>15.2f} "
                         f"{f['flight_server_cpu_s_per_gb']:>15.2f} {f['server_cpu_ratio']:>6.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=size_argument, default=1 << 30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = cpu_per_byte_figures(args.size, args.repeat)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
