"""Issue 13's and issue 24's targets, each with the figure reached, side by side in one run.

    tether bench --targets --json targets.json --plot targets.png

Runs the measurements (issue 13's: `bench/epochs.py`, `bench/cpu_per_byte.py`,
`bench/compression.py`, `bench/first_batch.py`; issue 24's: `bench/fresh_auto.py`
and the loopback systems against the first release, Flight and grpcio's own
floor), each against its baseline in the same run, and prints one table:
the target, the figure, met or not. `--targets fresh-auto,loopback` runs
issue 24's alone (about 12 minutes on two cores; all parts about 30).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .link import PRESETS

SCORE_CAP = 2.0  # a figure far past its target (0% of steps waiting) is drawn here


@dataclass
class Target:
    part: str
    what: str
    figure: float
    bound: float
    higher_is_better: bool
    unit: str = "x"
    command: str = ""

    @property
    def met(self) -> bool:
        return self.figure >= self.bound if self.higher_is_better else self.figure <= self.bound

    def cell(self, value: float) -> str:
        return f"{value:.1%}" if self.unit == "%" else f"{value:.2f}{self.unit}"


def cache_targets(size: int, repeat: int) -> list[Target]:
    from . import data, epochs

    command = "tether bench --epochs 3 --cache --link loopback,100mbit --repeat 3"
    found: dict[tuple[str, bool], epochs.EpochRun] = {}
    with tempfile.TemporaryDirectory(prefix="tether-targets-") as tmp:
        for link in (PRESETS["100mbit"], PRESETS["loopback"]):
            dataset = data.write("floats", Path(tmp) / f"data-{link.name}", size)
            runs: dict[bool, list] = {False: [], True: []}
            for attempt in range(repeat):
                for cached in (False, True):
                    workdir = Path(tmp) / f"{link.name}-{cached}-{attempt}"
                    workdir.mkdir()
                    runs[cached].append(epochs.run(dataset, link, workdir, 3, cached, 1024))
            for cached, measured in runs.items():
                found[link.name, cached] = epochs.median(measured)
    slow = found["100mbit", True]
    return [
        Target("cache", "100mbit: epochs 2 and 3 each at most this share of epoch 1's time",
               slow.later_share(), 0.2, False, command=command),
        Target("cache", "loopback: 3 epochs' speed with the cache over without",
               found["loopback", False].total / found["loopback", True].total, 1.0, True,
               command=command),
    ]


def cpu_targets(size: int, repeat: int) -> list[Target]:
    from .cpu_per_byte import cpu_per_byte_figures

    figures = cpu_per_byte_figures(size, repeat)
    command = "python -m tether.bench.cpu_per_byte --size 1GB --repeat 3"
    targets = []
    for variant in ("plain", "tls"):
        pair = figures.get(variant)
        if pair is None:
            continue
        targets.append(Target("CPU per byte", f"loopback {variant}: Tether over Arrow Flight, "
                              "GB/s into jax arrays", pair["throughput_ratio"], 1.0, True,
                              command=command))
        targets.append(Target("CPU per byte", f"loopback {variant}: daemon CPU s/GB over "
                              "Flight server's", pair["server_cpu_ratio"], 1.2, False,
                              command=command))
    return targets


def compression_targets(repeat: int) -> list[Target]:
    from .compression import figures as compression_figures

    results = compression_figures(repeat=repeat)
    command = "python -m tether.bench.compression --repeat 3"
    targets = []
    for key, r in results.items():
        targets.append(Target("compression", f"{key}: default over link x best ratio",
                              r["auto_vs_link_best_ratio"], 0.95, True, command=command))
        targets.append(Target("compression", f"{key}: default over the best setting the "
                              "cores can run", r["auto_vs_fixed"], 0.95, True, command=command))
        targets.append(Target("compression", f"{key}: default over Flight with zstd",
                              r["auto_vs_flight_zstd"], 1.1, True, command=command))
    return targets


def _targets(part: str, figures: dict, command: str,
             rows: list[tuple[str, str, float, bool, str]]) -> list[Target]:
    """Targets from (what, the figure's key, bound, higher is better, unit) rows."""
    return [Target(part, what, figures[key], bound, higher, unit=unit, command=command)
            for what, key, bound, higher, unit in rows]


def first_batch_targets(repeat: int) -> list[Target]:
    from .first_batch import first_batch_figures

    figures = first_batch_figures(PRESETS["100mbit"], repeats=max(repeat, 3))
    return _targets("first batch", figures, "python -m tether.bench.first_batch", [
        ("round trips from iter() to the first batch (20 ms, TLS)", "first_iter_round_trips",
         5, False, ""),
        ("seconds from iter() to the first batch", "first_iter_s", 0.2, False, " s"),
        ("steps waiting, at 90% of the link, from the first step", "waited_share", 0.01,
         False, "%"),
    ])


def fresh_auto_targets(repeat: int) -> list[Target]:
    from .fresh_auto import fresh_auto_figures

    figures = fresh_auto_figures(PRESETS["100mbit"], repeats=max(repeat, 3))
    return _targets("fresh auto", figures, "python -m tether.bench.fresh_auto --repeat 3", [
        ("fresh daemon, auto, TLS, 20 ms: iter() to the first batch", "iter_first_s", 0.25,
         False, " s"),
        ("fresh daemon's 4 s stream over Flight with zstd", "vs_flight_zstd", 1.05, True, "x"),
        ("fresh daemon's 4 s stream over link x zstd-1 ratio", "vs_link_zstd1", 1.0, True,
         "x"),
    ])


# (system, its baseline, bound): Tether's loopback GB/s over the baseline's.
LOOPBACK_PAIRS = (("tether-none", "tether-release", 1.15), ("tether-none", "flight-none", 0.6),
                  ("tether-none-tls", "flight-tls", 1.0))
CPU_FLOOR = ("tether-none", "raw-grpc", 1.6)  # daemon CPU s/GB over grpcio's own floor


def loopback_targets(size: int, repeat: int) -> list[Target]:
    from .cpu_per_byte import alternating_runs, median_figure

    names = list(dict.fromkeys(n for pair in LOOPBACK_PAIRS for n in pair[:2]))
    runs = alternating_runs(names + [CPU_FLOOR[1]], size, max(repeat, 3))
    command = "tether bench --targets loopback --repeat 3"

    def ratio(system: str, baseline: str, figure: str) -> float:
        return median_figure(runs[system], figure) / median_figure(runs[baseline], figure)

    targets = [Target("loopback", f"{system} GB/s over {baseline}'s",
                      ratio(system, baseline, "gb_s"), bound, True, command=command)
               for system, baseline, bound in LOOPBACK_PAIRS]
    system, floor, bound = CPU_FLOOR
    targets.append(Target("loopback", f"{system} daemon CPU s/GB over {floor} server's",
                          ratio(system, floor, "server"), bound, False, command=command))
    return targets


PARTS: dict[str, Callable[[int, int], list[Target]]] = {
    "cache": lambda size, repeat: cache_targets(min(size, 75_000_000), repeat),
    "cpu": cpu_targets,
    "compression": lambda size, repeat: compression_targets(repeat),
    "first-batch": lambda size, repeat: first_batch_targets(repeat),
    # issue 24's
    "fresh-auto": lambda size, repeat: fresh_auto_targets(repeat),
    "loopback": loopback_targets,
}


def table(targets: list[Target]) -> str:
    width = max(len(t.what) for t in targets)
    lines = [f"{'part':<13} {'target':<{width}} {'bound':>9} {'reached':>9}  met",
             "-" * (width + 40)]
    for t in targets:
        sign = ">=" if t.higher_is_better else "<="
        lines.append(f"{t.part:<13} {t.what:<{width}} {sign}{t.cell(t.bound):>7} "
                     f"{t.cell(t.figure):>9}  {'yes' if t.met else 'NO'}")
    met = sum(t.met for t in targets)
    lines.append(f"{met} of {len(targets)} targets met")
    return "\n".join(lines)


def plot(targets: list[Target], path: Path) -> None:
    """Each figure as a share of its bound (1 = exactly at the target), met in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [min(SCORE_CAP, t.figure / t.bound if t.higher_is_better
                  else t.bound / max(t.figure, 1e-9)) for t in targets]
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(targets) + 1.2))
    ax.barh(range(len(targets)), scores, color=["tab:green" if t.met else "tab:red"
                                                for t in targets])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(targets)), [f"{t.part}: {t.what}" for t in targets], fontsize=7)
    ax.invert_yaxis()
    for row, (score, t) in enumerate(zip(scores, targets, strict=True)):
        ax.text(score + 0.02, row, t.cell(t.figure), va="center", fontsize=7)
    ax.set_xlim(0, SCORE_CAP + 0.3)
    ax.set_xlabel(f"how far past the target (1 = at it, right of the line: met; capped at "
                  f"{SCORE_CAP:g})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(parts: list[str], size: int, repeat: int, json_path: str | None,
        plot_path: str | None) -> int:
    targets: list[Target] = []
    for part in parts:
        print(f"measuring: {part}", file=sys.stderr, flush=True)
        targets.extend(PARTS[part](size, repeat))
    print(table(targets))
    if json_path:
        Path(json_path).write_text(json.dumps([asdict(t) | {"met": t.met} for t in targets],
                                              indent=2))
    if plot_path:
        plot(targets, Path(plot_path))
        print(f"plot written to {plot_path}", file=sys.stderr)
    return 0


def replot(json_path: Path, plot_path: Path) -> None:
    """The table and plot of a run's --json, again (python -m tether.bench.targets A.json B.png)."""
    targets = [Target(**{k: v for k, v in row.items() if k != "met"})
               for row in json.loads(json_path.read_text())]
    print(table(targets))
    plot(targets, plot_path)


if __name__ == "__main__":
    replot(Path(sys.argv[1]), Path(sys.argv[2]))
