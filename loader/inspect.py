"""`tether ls URL` and `tether status URL`: what a daemon serves and how it is doing."""

from __future__ import annotations

import argparse

import numpy as np

from .client import connect
from .wire.v1 import tether_pb2 as pb


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    raise AssertionError


def format_dataset(info: pb.DatasetInfo) -> str:
    if info.error:
        return f"{info.name}  ({info.format})  ERROR: {info.error}"
    lines = [f"{info.name}  ({info.format}, {info.num_rows:,} rows)"]
    width = max((len(c.name) for c in info.columns), default=0)
    for column in info.columns:
        if column.unsupported:
            lines.append(f"  {column.name:<{width}}  unsupported: {column.unsupported}")
        else:
            dtype = np.dtype(column.dtype).name
            lines.append(f"  {column.name:<{width}}  {dtype:<8} shape {tuple(column.shape)}")
    return "\n".join(lines)


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
    return "\n".join(lines)


def _ls(args: argparse.Namespace) -> int:
    with connect(args.url) as daemon:
        print("\n".join(format_dataset(d) for d in daemon.datasets()))
    return 0


def _status(args: argparse.Namespace) -> int:
    with connect(args.url) as daemon:
        print(format_status(daemon.status()))
    return 0


URL_HELP = "the URL `tether serve` printed, in single quotes (a shell cuts it at &)"


def register(subparsers: argparse._SubParsersAction) -> None:
    ls = subparsers.add_parser("ls", help="list a daemon's datasets with columns and row counts")
    ls.add_argument("url", help=URL_HELP)
    ls.set_defaults(run=_ls)
    status = subparsers.add_parser("status", help="show a daemon's streams, throughput and queues")
    status.add_argument("url", help=URL_HELP)
    status.set_defaults(run=_status)
