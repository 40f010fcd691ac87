"""Snapshots: a query's result, a database table or a transform's output,
written once into an Arrow IPC file in the daemon's cache and served from it.

A database keeps changing while it is streamed; a plan, exactly-once and a
resume need rows that do not. So a derived dataset is materialized, record
batch by record batch (never whole in memory), into
`CACHE/snapshots/NAME-KEY.arrow`, and streamed from that file like any
Arrow IPC dataset. `KEY` is a digest of what the rows depend on (the query,
the source files' fingerprint): a new file version makes a new snapshot; a
database server's tables are reused until `tether serve --refresh`. The file
is written under a temporary name and renamed, so a crash leaves no half
snapshot, and its time is its modification time (`tether ls` shows it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa

from ..private import make_private, private_dir
from .arrow_ipc import ArrowIpcSource

log = logging.getLogger(__name__)

Batches = Callable[[], tuple[pa.Schema, Iterable[pa.RecordBatch]]]


def snapshot_key(*parts: str) -> str:
    """A short digest of what a snapshot's rows depend on."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def materialize(target: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Write `batches` to `target` as an Arrow IPC file; the rows written."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    rows = 0
    try:
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in batches:
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        make_private(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def snapshot(cache_dir: Path, name: str, key: str, batches: Batches,
             refresh: bool = False) -> Path:
    """The snapshot of `name` at `key`, made now if there is none (or `refresh`)."""
    folder = private_dir(cache_dir / "snapshots")
    target = folder / f"{_safe(name)}-{key}.arrow"
    if target.exists() and not refresh:
        return target
    _remove_orphans(target)
    started = time.monotonic()
    log.info("taking a snapshot of %s", name)
    schema, stream = batches()
    rows = materialize(target, schema, stream)
    earlier = re.compile(re.escape(_safe(name)) + r"-[0-9a-f]{16}\.arrow")
    for old in folder.iterdir():  # earlier versions of this dataset (not of "name-b")
        if old != target and earlier.fullmatch(old.name):
            old.unlink(missing_ok=True)
    log.info("snapshot of %s: %d rows, %.1f MB in %.1f s", name, rows,
             target.stat().st_size / 1e6, time.monotonic() - started)
    return target


def _remove_orphans(target: Path) -> None:
    """Partial files of `target` left by a daemon stopped mid-snapshot."""
    for partial in target.parent.glob(f".{target.name}.*.partial"):
        pid = partial.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            partial.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


class SnapshotSource(ArrowIpcSource):
    """A derived dataset, served from its snapshot file."""

    format = "snapshot"

    def __init__(self, name: str, snapshot_path: Path, origin: list[Path],
                 format_name: str) -> None:
        super().__init__(name, [snapshot_path], snapshot_path.parent)
        self.format = format_name
        self.origin = origin  # what the rows were derived from, for messages
        self.snapshot_time = snapshot_path.stat().st_mtime
