"""Compression near the link's limit: `auto` against the best fixed setting and Flight zstd.

    python -m tether.bench.compression                    # 100mbit and uplink, three kinds
    python -m tether.bench.compression --link uplink --data tokens --repeat 3

For each data kind (Zipf tokens, sensor-like float features, natural-image
tiles: bench/data.py) it first measures every compression setting Tether has
(none, lz4, zstd at ZSTD_LEVELS, with and without byte-shuffle, integers
narrowed) on the dataset's first rows: ratio and compress speed on one core,
and the order-0 entropy of the main column's values. Then, for each link,
through the shaped link proxy, it times `tether auto`, `tether` with the best
fixed setting (the one the table says delivers most on this link with this
machine's cores) and Flight with zstd, alternating, and reports raw MB/s
delivered, the wire ratio, `auto / (link x best ratio of any setting)` and
`auto / flight zstd`. `figures()` returns the same as a dict.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tether.daemon.stream.codec_policy import CPU_SHARE, ZSTD_LEVELS, CodecCost, ladders, measure

from . import data
from .link import PRESETS, Link, ShapedProxy

KINDS = ("tokens", "features", "tiles")
LINKS = ("100mbit", "uplink")
SAMPLE_BYTES = 2 << 20  # of each column, for the settings table
SECONDS = 8.0  # of data per run at the link rate times the best fixed setting's ratio
BATCH_SIZE = 256


@dataclass
class SettingFigures:
    setting: str
    ratio: float
    compress_mb_per_s: float  # one core


@dataclass
class RunFigures:
    system: str
    mb_per_s: float  # raw bytes delivered per second
    ratio: float  # raw bytes / bytes on the wire


def _entropy_ratio(values: np.ndarray) -> float:
    """Raw bits per value over the order-0 entropy of the values: the ratio limit
    of a coder that sees each value alone."""
    _, counts = np.unique(values.reshape(-1), return_counts=True)
    share = counts / counts.sum()
    bits = float(-(share * np.log2(share)).sum())
    return values.dtype.itemsize * 8 / max(bits, 1e-9)


def settings_table(dataset: Path) -> tuple[list[SettingFigures], float]:
    """Every setting's ratio and one-core compress speed on the dataset's first
    rows (all columns together); and the order-0 entropy ratio of its largest column."""
    columns = data.load(dataset)
    samples = {}
    for name, values in columns.items():
        rows = max(1, SAMPLE_BYTES // max(values[:1].nbytes, 1))
        samples[name] = np.ascontiguousarray(values[:rows])
    table = []
    for ladder in ladders(("none", "lz4", "zstd")):
        for setting in ladder:
            costs: list[CodecCost] = [measure(n, s, setting, narrow=True)
                                      for n, s in samples.items()]
            raw = sum(s.nbytes for s in samples.values())
            wire = sum(s.nbytes / c.ratio for s, c in zip(samples.values(), costs, strict=True))
            seconds = sum(s.nbytes * c.encode_s_per_byte
                          for s, c in zip(samples.values(), costs, strict=True))
            table.append(SettingFigures(str(setting), raw / wire, raw / seconds / 1e6))
    largest = max(samples.values(), key=lambda v: v.nbytes)
    return table, _entropy_ratio(largest)


def best_fixed(table: list[SettingFigures], link: Link, cores: int) -> SettingFigures:
    """The setting that delivers most raw bytes on `link` with `cores` compressing
    (CPU_SHARE of them, as `auto` plans: the rest moves and checks the bytes)."""
    rate = link.rate / 8
    return max(table, key=lambda s: min(rate * s.ratio,
                                        s.compress_mb_per_s * 1e6 * cores * CPU_SHARE))


def _raw_bytes(dataset: Path) -> int:
    return sum(v.nbytes for v in data.load(dataset).values())


def _timed_run(system, dataset: Path, link: Link, workdir: Path) -> RunFigures:
    """One pass over the dataset through the shaped link, client in this process."""
    address = system.start(dataset, workdir)
    try:
        with ShapedProxy(address, link) as proxy:
            os.environ.update(system.client_env())
            start = time.perf_counter()
            for _ in system.batches(dataset, ("127.0.0.1", proxy.port), BATCH_SIZE):
                pass
            seconds = time.perf_counter() - start
        raw = _raw_bytes(dataset)
        return RunFigures(system.name, raw / seconds / 1e6, raw / system.wire_bytes(dataset))
    finally:
        system.stop()


def _systems(fixed: str) -> dict:
    from .systems.flight import FlightSystem
    from .systems.tether_stream import TetherSystem

    return {"auto": lambda: TetherSystem("auto"), "fixed": lambda: TetherSystem(fixed),
            "flight-zstd": lambda: FlightSystem("zstd")}


def run_kind(kind: str, link: Link, folder: Path, repeat: int, seconds: float) -> dict:
    """The settings table and the three systems' runs for one data kind on one link."""
    probe = data.write(kind, folder / f"probe-{kind}", SAMPLE_BYTES * 2)
    table, entropy_ratio = settings_table(probe)
    fixed = best_fixed(table, link, os.cpu_count() or 1)
    best_ratio = max(s.ratio for s in table)
    size = int(link.rate / 8 * fixed.ratio * seconds)
    dataset = data.write(kind, folder / f"{kind}-{link.name}", size)
    runs: dict[str, list[RunFigures]] = {}
    for attempt in range(repeat):  # alternating, so drift hits every system alike
        for name, make in _systems(fixed.setting).items():
            print(f"  {kind} over {link.describe()}: {name} (run {attempt + 1})",
                  file=sys.stderr, flush=True)
            workdir = folder / f"run-{kind}-{link.name}-{name}-{attempt}"
            workdir.mkdir()
            result = _timed_run(make(), dataset, link, workdir)
            print(f"    {result.mb_per_s:.1f} MB/s, ratio {result.ratio:.2f}", file=sys.stderr,
                  flush=True)
            runs.setdefault(name, []).append(result)
    median = {name: RunFigures(name, statistics.median(r.mb_per_s for r in rs),
                               statistics.median(r.ratio for r in rs))
              for name, rs in runs.items()}
    link_mb = link.rate / 8 / 1e6
    auto = median["auto"].mb_per_s
    return {
        "kind": kind, "link": link.name, "raw_mb": size / 1e6,
        "entropy_ratio": entropy_ratio, "best_ratio": best_ratio,
        "best_ratio_setting": max(table, key=lambda s: s.ratio).setting,
        "fixed_setting": fixed.setting,
        "settings": [asdict(s) for s in table],
        "runs": {name: asdict(r) for name, r in median.items()},
        "auto_vs_link_best_ratio": auto / (link_mb * best_ratio),
        "auto_vs_link_fixed_ratio": auto / (link_mb * fixed.ratio),
        "auto_vs_fixed": auto / median["fixed"].mb_per_s,
        "auto_vs_flight_zstd": auto / median["flight-zstd"].mb_per_s,
    }


def figures(links: tuple[str, ...] = LINKS, kinds: tuple[str, ...] = KINDS, repeat: int = 1,
            seconds: float = SECONDS) -> dict:
    """Every (link, kind)'s figures (run_kind), keyed 'link/kind'."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="tether-compression-") as tmp:
        for link_name in links:
            for kind in kinds:
                folder = Path(tmp) / f"{link_name}-{kind}"
                folder.mkdir()
                out[f"{link_name}/{kind}"] = run_kind(kind, PRESETS[link_name], folder,
                                                      repeat, seconds)
    return out


def table(results: dict) -> str:
    lines = ["| link | data | auto MB/s | ratio | fixed (setting) MB/s | flight zstd MB/s "
             "(ratio) | best ratio (setting) | order-0 limit | auto / (link x best ratio) "
             "| auto / flight zstd |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        runs = r["runs"]
        lines.append(
            f"| {r['link']} | {r['kind']} | {runs['auto']['mb_per_s']:.1f} | "
            f"{runs['auto']['ratio']:.2f} | {runs['fixed']['mb_per_s']:.1f} "
            f"({r['fixed_setting']}) | {runs['flight-zstd']['mb_per_s']:.1f} "
            f"({runs['flight-zstd']['ratio']:.2f}) | {r['best_ratio']:.2f} "
            f"({r['best_ratio_setting']}) | {r['entropy_ratio']:.2f} | "
            f"{r['auto_vs_link_best_ratio']:.2f} | {r['auto_vs_flight_zstd']:.2f} |")
    return "\n".join(lines)


def settings_lines(results: dict) -> str:
    """Each kind's settings table (ratio, one-core MB/s), once per kind."""
    seen, lines = set(), []
    for r in results.values():
        if r["kind"] in seen:
            continue
        seen.add(r["kind"])
        cells = ", ".join(f"{s['setting']} {s['ratio']:.2f} @{s['compress_mb_per_s']:.0f}"
                          for s in r["settings"])
        lines.append(f"{r['kind']}: {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", default=",".join(LINKS))
    parser.add_argument("--data", default=",".join(KINDS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help="data per run, in seconds of the link at the best fixed ratio")
    args = parser.parse_args(argv)
    results = figures(tuple(args.link.split(",")), tuple(args.data.split(",")),
                      args.repeat, args.seconds)
    print(table(results))
    print(f"\nsettings (ratio @ one-core compress MB/s; zstd levels {ZSTD_LEVELS}):")
    print(settings_lines(results))


if __name__ == "__main__":
    main()
