"""`tether ls URL` and `tether status URL`: what a daemon serves and how it is doing."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .client import connect
from .wire.v1 import tether_pb2 as pb


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    raise AssertionError


# Classes listed by `tether ls` before it sums up the rest: a folder of
# ImageNet's 1000 would bury the columns.
SHOWN_CLASSES = 12


def format_classes(names: list[str], counts: list[int]) -> str:
    """`cat 120, dog 180`; past SHOWN_CLASSES, the first ones and a summary.

    >>> format_classes(["cat", "dog"], [120, 180])
    'cat 120, dog 180'
    """
    if not counts:  # named by the file's metadata (Hugging Face), not counted
        more = f", ... ({len(names):,} classes)" if len(names) > SHOWN_CLASSES else ""
        return ", ".join(names[:SHOWN_CLASSES]) + more
    shown = ", ".join(f"{n} {c:,}" for n, c in zip(names[:SHOWN_CLASSES], counts, strict=False))
    if len(names) <= SHOWN_CLASSES:
        return shown
    return (f"{shown}, ... and {len(names) - SHOWN_CLASSES:,} more ({len(names):,} classes, "
            f"{min(counts):,} to {max(counts):,} images each)")


def _column_line(column: pb.ColumnInfo, width: int) -> str:
    if column.unsupported:
        return f"  {column.name:<{width}}  unsupported: {column.unsupported}"
    dtype = np.dtype(column.dtype).name
    if column.logical == "category":
        what = f"int32    category codes, {column.category_count:,} categories"
    elif column.logical == "list<string>":
        what = f"lists    lists of strings, {_size(column.mean_row_bytes)} a row on average"
    elif column.kind:  # rows of varying length: their kind and mean size say more than a shape
        kind = {"image": "encoded images", "utf8": "text", "binary": "bytes"}.get(
            column.kind, f"{dtype} lists")
        what = f"{column.kind:<8} {kind}, {_size(column.mean_row_bytes)} a row on average"
    elif column.logical:
        zone = f", {column.timezone} (values in UTC)" if column.timezone else ""
        what = f"{dtype:<8} {column.logical} ({column.source_type}{zone})"
    else:
        what = f"{dtype:<8} shape {tuple(column.shape)}"
    nulls = {0: "", -1: ", nulls not counted"}.get(column.null_count,
                                                   f", {column.null_count:,} nulls")
    return f"  {column.name:<{width}}  {what}{nulls}"


def format_dataset(info: pb.DatasetInfo) -> str:
    if info.error:
        return f"{info.name}  ({info.format})  ERROR: {info.error}"
    lines = [f"{info.name}  ({info.format}, {info.num_rows:,} rows)"]
    if info.snapshot_time:
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.snapshot_time))
        lines[0] += f"  snapshot of {taken}"
    width = max((len(c.name) for c in info.columns), default=0)
    lines += [_column_line(column, width) for column in info.columns]
    if info.classes:
        lines.append(f"  classes: {format_classes(list(info.classes), list(info.class_counts))}")
    if info.skipped:
        lines.append(f"  skipped: {info.skipped}")
    lines += [f"  left out: {line}" for line in info.left_out]
    return "\n".join(lines)


def format_split(s: pb.StreamStatus) -> str:
    """Where a stream's time went, as the daemon saw it, and what that means."""
    parts = {"reading and encoding": s.producing_seconds,
             "waiting for the loader's credits": s.credit_wait_seconds,
             "sending": s.sending_seconds}
    total = sum(parts.values())
    if not total:
        return "no time spent yet"
    shares = ", ".join(f"{name} {seconds / total:.0%}" for name, seconds in parts.items())
    limit = max(parts, key=parts.__getitem__)
    meaning = {"reading and encoding": "the daemon (disk, decoding, transforms) is the limit",
               "waiting for the loader's credits": "the training loop is the limit",
               "sending": "the network is the limit"}[limit]
    return f"time: {shares}: {meaning}"


def format_status(status: pb.StatusResponse) -> str:
    rate = status.bytes_sent / max(status.uptime_seconds, 1e-9)
    lines = [
        f"tether daemon {status.version}, up {status.uptime_seconds:.0f} s",
        f"streams: {len(status.streams)} open, {status.streams_total} since start; "
        f"errors: {status.errors}",
        f"sent: {status.shards_sent:,} shards, {_size(status.bytes_sent)} "
        f"({_size(rate)}/s on average); read: {status.rows_read:,} rows, "
        f"{_size(status.bytes_read)}",
    ]
    for s in status.streams:
        lines.append(
            f"  {s.peer}  {s.dataset}: {s.shards_sent} shards, {_size(s.bytes_sent)} "
            f"at {_size(s.bytes_sent / max(s.seconds, 1e-9))}/s; "
            f"in flight {s.in_flight}, credits {s.credits}, acked {s.shards_acked}"
        )
        lines.append("    " + format_split(s))
    return "\n".join(lines)


def _ls(args: argparse.Namespace) -> int:
    with connect(args.url) as daemon:
        if args.filter is None:
            listing = daemon.listing()
            print("\n".join(format_dataset(d) for d in listing.datasets))
            for line in listing.left_out:
                print(f"not served: {line}")
            return 0
        names = [args.dataset] if args.dataset else [d.name for d in daemon.datasets()
                                                     if not d.error]
        for name in names:
            info = daemon.describe(name, filter=args.filter)
            print(f"{name}: {info.matching_rows:,} of {info.num_rows:,} rows match "
                  f"{args.filter!r}")
    return 0


def _status(args: argparse.Namespace) -> int:
    with connect(args.url) as daemon:
        print(format_status(daemon.status()))
    return 0


URL_HELP = "the URL `tether serve` printed, in single quotes (a shell cuts it at &)"


def register(subparsers: argparse._SubParsersAction) -> None:
    ls = subparsers.add_parser("ls", help="list a daemon's datasets with columns and row counts")
    ls.add_argument("url", help=URL_HELP)
    ls.add_argument("dataset", nargs="?", help="only this dataset (with --filter)")
    ls.add_argument("--filter", default=None, metavar="EXPR",
                    help="print how many rows EXPR selects, e.g. 'label >= 3 and score < 0.5'")
    ls.set_defaults(run=_ls)
    status = subparsers.add_parser("status", help="show a daemon's streams, throughput and queues")
    status.add_argument("url", help=URL_HELP)
    status.set_defaults(run=_status)
