"""The table on stdout and the plot people look at first.

    python -m tether.bench.report a.json b.json --plot both.png --json both.json

puts the runs of several `tether bench --json` files in one table and plot
(a run per link kept under a few minutes, shown together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .measure import Measurement


def _mb(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 1e6:,.1f}"


def rate(r: Measurement) -> str:
    """What a run delivered per second in its own terms: samples, or its units."""
    if r.unit:
        return f"{r.units_per_s:,.0f} {r.unit}/s"
    return f"{r.samples_per_s:,.0f} samples/s"


def _extra(rows: Sequence[Measurement]) -> list[tuple[str, int, Callable]]:
    """Columns only some data has: (header, width, cell of a row)."""
    extra = []
    if unit := next((r.unit for r in rows if r.unit), ""):
        extra.append((f"{unit}/s", 12, lambda r: f"{r.units_per_s:,.0f}" if r.unit else "-"))
    if any(r.file_bytes is not None for r in rows):
        extra.append(("files MB/s", 10, lambda r: _mb(
            r.file_bytes / r.seconds if r.file_bytes is not None else None)))
        extra.append(("link use", 8, lambda r: "-" if r.link_use is None
                      else f"{100 * r.link_use:.0f}%"))
    return extra


def table(results: Sequence[Measurement]) -> str:
    """One block per (data, link): a row per system."""
    width = max([22, *(len(r.system) for r in results)])
    header = (f"{'system':<{width}} {'MB/s':>8} {'samples/s':>11} {'1st batch':>9} {'wire MB':>9} "
              f"{'ratio':>6} {'CPU s/GB c':>10} {'CPU s/GB s':>10} {'RSS MB c':>8} "
              f"{'RSS MB s':>8} {'waited':>7}")
    blocks: dict[tuple[str, str], list[Measurement]] = {}
    for r in results:
        blocks.setdefault((r.data, r.link), []).append(r)
    out = []
    for (data, link), rows in blocks.items():
        extra = _extra(rows)
        out.append(f"\n{data} over {link}")
        out.append(header + "".join(f" {name:>{width}}" for name, width, _ in extra))
        for r in rows:
            ratio = f"{r.ratio:.2f}" if r.ratio else "-"
            waited = "-" if r.waited_share is None else f"{100 * r.waited_share:.1f}%"
            out.append(
                f"{r.system:<{width}} {r.mb_per_s:>8,.1f} {r.samples_per_s:>11,.0f} "
                f"{r.first_batch_s:>8.2f}s {_mb(r.wire_bytes):>9} {ratio:>6} "
                f"{r.cpu_per_gb('client'):>10.2f} {r.cpu_per_gb('server'):>10.2f} "
                f"{r.client_peak_rss / 1e6:>8,.0f} {r.server_peak_rss / 1e6:>8,.0f} {waited:>7}"
                + "".join(f" {cell(r):>{width}}" for _, width, cell in extra))
    return "\n".join(out)


def shuffle_costs(results: Sequence[Measurement]) -> str:
    """Each shuffled system's throughput over its unshuffled twin's, same data and link."""
    from .systems.tether_stream import SHUFFLED

    by_key = {(r.data, r.link, r.system): r for r in results}
    lines = []
    for (data, link, system), shuffled in by_key.items():
        plain = by_key.get((data, link, system.removesuffix(SHUFFLED)))
        if system.endswith(SHUFFLED) and plain is not None:
            lines.append(f"shuffle cost, {data} over {link}: {system} / {plain.system} = "
                         f"{shuffled.mb_per_s / plain.mb_per_s:.2f}x")
    return "\n".join(lines)


def filter_speedups(results: Sequence[Measurement]) -> str:
    """How much sooner filter pushdown reaches its last batch than each other system
    that delivers the same rows, same data and link."""
    from .systems.tether_filter import PUSHDOWN

    lines = []
    for pushdown in (r for r in results if r.system.startswith(PUSHDOWN)):
        for other in results:
            if (other.data, other.link) == (pushdown.data, pushdown.link) and \
                    not other.system.startswith(PUSHDOWN) and other.unit == pushdown.unit:
                lines.append(f"filter pushdown, {pushdown.data} over {pushdown.link}: last batch "
                             f"after {pushdown.seconds:.2f} s against {other.seconds:.2f} s for "
                             f"{other.system}: {other.seconds / pushdown.seconds:.1f}x sooner")
    return "\n".join(lines)


def load(path: Path) -> list[Measurement]:
    """Measurements back from `tether bench --json`."""
    import dataclasses
    import json

    names = {f.name for f in dataclasses.fields(Measurement)}
    return [Measurement(**{k: v for k, v in row.items() if k in names})
            for row in json.loads(Path(path).read_text())]


Metric = tuple[Callable[[Measurement], float], str, Callable[[float], float] | None]


def _metric(rows: Sequence[Measurement]) -> Metric:
    """What a panel plots: (value of a run, its label, the link's rate in the same
    unit or None). A system's units/s (real tokens); images/s for image folders
    (the pixels are a fixed size, the files are not), against the link's rate in
    files of the average size; else payload MB/s against the link's rate."""
    if unit := next((r.unit for r in rows if r.unit), ""):
        return (lambda r: r.units_per_s or 0.0), f"{unit}/s delivered as jax.Array", None
    if files := [r for r in rows if r.file_bytes is not None]:
        file_size = files[0].file_bytes / files[0].rows
        return ((lambda r: r.samples_per_s), "images/s delivered as jax.Array [B, 224, 224, 3]",
                lambda rate: rate / 8 / file_size)
    return (lambda r: r.mb_per_s), "payload delivered as jax.Array (MB/s)", lambda rate: rate / 8e6


def plot(results: Sequence[Measurement], path: Path) -> None:
    """Throughput against link bandwidth, one panel per dataset, a line per system:
    payload MB/s, or images/s or tokens/s for the data measured in those (`_metric`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    datasets = sorted({r.data for r in results})
    rates = sorted({r.link_rate_bps for r in results if r.link_rate_bps})
    loopback_x = (max(rates) * 4) if rates else 1e10  # unshaped links plot right of the rest
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.6), squeeze=False)
    systems = sorted({r.system for r in results})
    colors = dict(zip(systems, plt.get_cmap("tab20").colors, strict=False))  # one per system
    for ax, data in zip(axes[0], datasets, strict=True):
        value, label, link_rate = _metric([r for r in results if r.data == data])
        for system in systems:
            points = sorted((r.link_rate_bps or loopback_x, value(r)) for r in results
                            if r.data == data and r.system == system)
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            style = "-o" if system.startswith("tether") else "--s"
            ax.plot(xs, ys, style, label=system, markersize=4, color=colors[system])
        if rates and link_rate:
            ax.plot(rates, [link_rate(r) for r in rates], ":", color="grey", label="link rate")
        ax.set_xscale("log")
        ax.set_yscale("log")
        unshaped = any(not r.link_rate_bps for r in results)
        ax.set_xticks([*rates, *[loopback_x][:unshaped]],
                      [f"{r / 1e6:g} Mbit/s" for r in rates] + ["loopback"][:unshaped])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # only the links
        ax.set_xlabel("link bandwidth")
        ax.set_ylabel(label)
        ax.set_title(data)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[0]:  # each panel's own systems: the families differ
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="JSON written by tether bench")
    parser.add_argument("--plot", type=Path, help="draw them into this PNG")
    parser.add_argument("--json", type=Path, help="write them as one JSON file")
    args = parser.parse_args(argv)
    results = [r for path in args.files for r in load(path)]
    print(table(results))
    for summary in (shuffle_costs(results), filter_speedups(results)):
        if summary:
            print(summary)
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
