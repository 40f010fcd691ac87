"""`tether bench`: every system on the same data through the same link, in one run.

    tether bench                                   # loopback and 100mbit, all data, all systems
    tether bench --link home --data tokens --plot bench.png --json bench.json
    tether bench --bandwidth 80Mbit --rtt 40ms --systems tether-auto,flight-zstd
    tether bench --data ./my_data --dataset train
    tether bench --data jpegs --link 100mbit,1gbit --size 110MB   # image folder, decode places
    tether bench --data ./pets --link 100mbit                     # your own image folder
    tether bench --data text --link loopback                      # packed against pre-padded
    tether bench --data filter --link 100mbit --repeat 3          # filter pushdown
    tether bench --data transform --size 1GB                      # --transform: local vs Dask
    tether bench --epochs 3 --cache --link loopback,100mbit       # the loader's disk cache
    tether bench --targets --repeat 3 --plot targets.png          # issues 13 and 24's targets

Each kind of data has its own systems (tensors: Flight, raw TCP, ...; image
folders: tether decode=loader/daemon/auto and upload-first (tar); token lists:
tether pack and tether padded; a table to filter: tether filter pushdown (.npy
or Parquet), tether filter after and upload-first (parquet)); a run compares
those of its data's kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tether.wire.sizes import size_argument

from . import data, epochs, measure, report, targets
from .link import PRESETS, Link, custom_link
from .systems import DEFAULTS, REGISTRY, for_family
from .systems import NAMES as SYSTEMS

LOOPBACK_BYTES = 256 << 20
SECONDS_OF_LINK = 6  # shaped links: data sized to about this long at the link rate


def _size_for(link: Link, requested: int | None) -> int:
    if requested:
        return requested
    if link.rate is None:
        return LOOPBACK_BYTES
    return min(LOOPBACK_BYTES, int(link.rate / 8 * SECONDS_OF_LINK))


def _links(args: argparse.Namespace) -> list[Link]:
    if args.bandwidth:
        return [custom_link(args.bandwidth, args.rtt)]
    names = args.link.split(",")
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise SystemExit(f"unknown link {unknown}; presets: {', '.join(PRESETS)}")
    return [PRESETS[n] for n in names]


def _systems_by_kind(args: argparse.Namespace, kinds: dict[str, str]) -> dict[str, tuple]:
    """Each data kind's systems: those asked for (default all) of its family."""
    asked = tuple(args.systems.split(",")) if args.systems else DEFAULTS
    unknown = [s for s in asked if s not in REGISTRY]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    chosen = {kind: for_family(family, asked) for kind, family in kinds.items()}
    if empty := [kind for kind, systems in chosen.items() if not systems]:
        fits = {kind: ", ".join(for_family(kinds[kind])) for kind in empty}
        raise SystemExit("none of the systems asked for moves "
                         + "; ".join(f"{kind} (its systems: {fits[kind]})" for kind in empty))
    return chosen


def _data_argument(words: list[str]) -> str:
    """`--data` as one value: names, a path, or `imagefolder PATH` (a path that
    must be an image folder)."""
    if words[0] == "imagefolder":
        if len(words) != 2 or not data.image_data.is_image_folder(Path(words[1])):
            raise SystemExit("--data imagefolder PATH: name a folder of images (one subfolder "
                             "per class, or flat)")
        return words[1]
    if len(words) != 1:
        raise SystemExit(f"--data takes one value (or imagefolder PATH), got {words}")
    return words[0]


def _bench(args: argparse.Namespace) -> int:
    try:
        import jax  # noqa: F401
    except ImportError:
        print("tether bench measures delivery into jax.Array: pip install jax", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print(f"--repeat must be at least 1, got {args.repeat}", file=sys.stderr)
        return 2
    if args.targets:
        unknown = [p for p in args.targets.split(",") if p not in targets.PARTS]
        if unknown:
            raise SystemExit(f"unknown parts {unknown}; choose from {', '.join(targets.PARTS)}")
        return targets.run(args.targets.split(","), args.size or 1 << 30, args.repeat,
                           args.json, args.plot)
    if args.data == ["transform"]:
        from . import transform_prep

        return transform_prep.run(args.size or 1 << 30, args.repeat, args.json, args.plot)
    links = _links(args)
    if args.epochs:
        return _bench_epochs(args, links)
    args.data = _data_argument(args.data)
    user_path = Path(args.data) if Path(args.data).exists() else None
    if user_path:
        kinds = {args.dataset or user_path.stem: data.user_family(user_path)}
    else:
        unknown = [k for k in args.data.split(",") if k not in data.FAMILIES]
        if unknown:
            raise SystemExit(f"unknown data {unknown}; choose from {', '.join(data.NAMES)} "
                             "or give a path")
        kinds = {kind: data.FAMILIES[kind] for kind in args.data.split(",")}
    results = _measure_all(args, links, _systems_by_kind(args, kinds), user_path)
    print(report.table(results))
    for summary in (report.shuffle_costs(results), report.filter_speedups(results)):
        if summary:
            print(summary)
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in results], indent=2))
    if args.plot:
        report.plot(results, Path(args.plot))
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _measure_all(args: argparse.Namespace, links: list[Link],
                 systems_of: dict[str, tuple],
                 user_path: Path | None) -> list[measure.Measurement]:
    """Every system on every link and data kind, `--repeat` times alternating
    (so that drift hits every system alike); the median of each."""
    runs = len(links) * sum(map(len, systems_of.values())) * args.repeat
    results: list[measure.Measurement] = []
    done = 0
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        written: dict[tuple[str, int], Path] = {}  # links of one size share their data
        for link in links:
            size = _size_for(link, args.size)
            for kind, systems in systems_of.items():
                folder = Path(tmp) / f"data-{size}"
                if (kind, size) not in written:
                    written[kind, size] = (
                        data.copy_user_dataset(user_path, kind, folder, size) if user_path
                        else data.write(kind, folder, size))
                repeats: dict[str, list[measure.Measurement]] = {s: [] for s in systems}
                for _ in range(args.repeat):
                    for system_name in systems:
                        done += 1
                        print(f"[{done}/{runs}] {system_name}: {kind} ({size / 1e6:,.0f} MB) "
                              f"over {link.describe()}", file=sys.stderr, flush=True)
                        workdir = Path(tmp) / f"run{done}"
                        workdir.mkdir()
                        result = measure.run(system_name, written[kind, size], link, workdir,
                                             args.batch_size, args.step_ms / 1e3)
                        print(f"        {result.mb_per_s:,.1f} MB/s, {report.rate(result)}, "
                              f"first batch after {result.first_batch_s:.2f} s",
                              file=sys.stderr, flush=True)
                        repeats[system_name].append(result)
                results.extend(measure.median(measured) for measured in repeats.values())
    return results


def _bench_epochs(args: argparse.Namespace, links: list[Link]) -> int:
    """`--epochs N [--cache]`: each epoch's time, with and without the disk cache."""
    kind = args.data[0] if args.data != [",".join(data.TENSOR_NAMES)] else "floats"
    if data.FAMILIES.get(kind) != data.TENSORS:
        raise SystemExit(f"--epochs runs on tensor data ({', '.join(data.TENSOR_NAMES)}), "
                         f"not {kind!r}")
    variants = [False, True] if args.cache else [False]
    runs, done, total = [], 0, len(links) * len(variants) * args.repeat
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        for link in links:
            size = _size_for(link, args.size)
            dataset = data.write(kind, Path(tmp) / f"data-{size}", size)
            measured: dict[bool, list[epochs.EpochRun]] = {v: [] for v in variants}
            for _ in range(args.repeat):
                for cached in variants:
                    done += 1
                    print(f"[{done}/{total}] {args.epochs} epochs of {kind} ({size / 1e6:,.0f} "
                          f"MB) over {link.describe()}{' with the cache' if cached else ''}",
                          file=sys.stderr, flush=True)
                    workdir = Path(tmp) / f"run{done}"
                    workdir.mkdir()
                    run = epochs.run(dataset, link, workdir, args.epochs, cached,
                                     args.batch_size)
                    print("        " + ", ".join(f"{s:.2f} s" for s in run.epoch_seconds),
                          file=sys.stderr, flush=True)
                    measured[cached].append(run)
            runs.extend(epochs.median(m) for m in measured.values())
    print(epochs.table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps([vars(r) for r in runs], indent=2))
    if args.plot:
        epochs.plot(runs, Path(args.plot))
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench", help="measure Tether side by side with Flight, raw TCP and upload-first",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--link", default="loopback,100mbit",
                       help=f"comma-separated presets: {', '.join(PRESETS)} "
                            "(default: loopback,100mbit)")
    bench.add_argument("--bandwidth", help="a custom link instead, e.g. 80Mbit (with --rtt)")
    bench.add_argument("--rtt", default="40ms", help="round-trip time of the custom link")
    bench.add_argument("--data", nargs="+", default=[",".join(data.TENSOR_NAMES)],
                       help=f"comma-separated: {', '.join(data.NAMES)} (default: "
                            f"{','.join(data.TENSOR_NAMES)}); or a path to any dataset Tether "
                            "serves (with --dataset); or imagefolder PATH; or transform "
                            "(--transform on the local pool against Dask)")
    bench.add_argument("--dataset", help="which dataset under a --data path")
    bench.add_argument("--systems", default=None,
                       help=f"comma-separated: {', '.join(SYSTEMS)} (default: every one "
                            "that moves the data asked for)")
    bench.add_argument("--size", type=size_argument, default=None,
                       help="bytes of data per run, e.g. 1GB or 512MiB (default: 256MiB on "
                            f"loopback, {SECONDS_OF_LINK} s of the link rate on shaped links); "
                            "image folders: bytes of image files; text: bytes of int32 tokens; "
                            "filter: bytes of rows before filtering")
    bench.add_argument("--batch-size", type=int, default=1024)
    bench.add_argument("--step-ms", type=float, default=0.0,
                       help="simulated training step per batch; reports the share of steps "
                            "that waited on data")
    bench.add_argument("--repeat", type=int, default=1,
                       help="runs per system, alternating between systems; the table shows "
                            "each system's median run (by MB/s)")
    bench.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="draw delivered throughput against link bandwidth")
    bench.add_argument("--epochs", type=int, default=0,
                       help="train this many shuffled epochs per run and time each one "
                            "(tensor data); with --cache, also with Loader(cache=...)")
    bench.add_argument("--targets", nargs="?", const=",".join(targets.PARTS), default=None,
                       metavar="PARTS",
                       help="measure issues 13 and 24's targets, each against its baseline, in one "
                            f"table (parts: {', '.join(targets.PARTS)}; default all)")
    bench.add_argument("--cache", action="store_true",
                       help="with --epochs: compare the loader's disk cache with none")
    bench.set_defaults(run=_bench)
