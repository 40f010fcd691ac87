"""The table on stdout and the plot people look at first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .measure import Measurement


def _mb(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 1e6:,.1f}"


def table(results: Sequence[Measurement]) -> str:
    """One block per (data, link): a row per system."""
    header = (f"{'system':<22} {'MB/s':>8} {'samples/s':>11} {'1st batch':>9} {'wire MB':>9} "
              f"{'ratio':>6} {'CPU s/GB c':>10} {'CPU s/GB s':>10} {'RSS MB c':>8} "
              f"{'RSS MB s':>8} {'waited':>7}")
    blocks: dict[tuple[str, str], list[Measurement]] = {}
    for r in results:
        blocks.setdefault((r.data, r.link), []).append(r)
    out = []
    for (data, link), rows in blocks.items():
        out.append(f"\n{data} over {link}")
        out.append(header)
        for r in rows:
            ratio = f"{r.ratio:.2f}" if r.ratio else "-"
            waited = "-" if r.waited_share is None else f"{100 * r.waited_share:.1f}%"
            out.append(
                f"{r.system:<22} {r.mb_per_s:>8,.1f} {r.samples_per_s:>11,.0f} "
                f"{r.first_batch_s:>8.2f}s {_mb(r.wire_bytes):>9} {ratio:>6} "
                f"{r.cpu_per_gb('client'):>10.2f} {r.cpu_per_gb('server'):>10.2f} "
                f"{r.client_peak_rss / 1e6:>8,.0f} {r.server_peak_rss / 1e6:>8,.0f} {waited:>7}")
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


def load(path: Path) -> list[Measurement]:
    """Measurements back from `tether bench --json`."""
    import dataclasses
    import json

    names = {f.name for f in dataclasses.fields(Measurement)}
    return [Measurement(**{k: v for k, v in row.items() if k in names})
            for row in json.loads(Path(path).read_text())]


def plot(results: Sequence[Measurement], path: Path) -> None:
    """Delivered MB/s against link bandwidth, one panel per dataset, a line per system."""
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
        for system in systems:
            points = sorted((r.link_rate_bps or loopback_x, r.mb_per_s) for r in results
                            if r.data == data and r.system == system)
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            style = "-o" if system.startswith("tether") else "--s"
            ax.plot(xs, ys, style, label=system, markersize=4, color=colors[system])
        if rates:
            ax.plot(rates, [r / 8e6 for r in rates], ":", color="grey", label="link rate")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [*rates, loopback_x]
        ax.set_xticks(ticks, [f"{r / 1e6:g} Mbit/s" for r in rates] + ["loopback"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # only the links
        ax.set_xlabel("link bandwidth")
        ax.set_ylabel("payload delivered as jax.Array (MB/s)")
        ax.set_title(data)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
