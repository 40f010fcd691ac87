"""Formats without random access (CSV, JSON Lines), converted once, streaming,
to an Arrow IPC file in the daemon's cache, then served memory-mapped like
any Arrow file.

A lazy read of such a file needs an index; an IPC copy is the simplest one,
costs one pass, and is reused until the file changes (its fingerprint is in
the copy's name, with the conversion's own version).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..private import create_private, make_private, private_dir
from .arrow_ipc import ArrowIpcSource
from .base import fingerprint

log = logging.getLogger(__name__)


class ConvertedSource(ArrowIpcSource):
    """A file read once into the cache as Arrow IPC; subclasses say how to read it."""

    conversion = "v1"  # in the copy's name: a copy made another way is not reused

    @classmethod
    def record_batches(cls, path: Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        raise NotImplementedError

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        private_dir(cache_dir)
        stem = paths[0].name.split(".", 1)[0]
        cached = cache_dir / f"{stem}-{fingerprint(paths)}-{self.conversion}.arrow"
        if not cached.exists():
            log.info("indexing %s for random access (once per version of the file)", paths[0])
            self._convert(paths[0], cached)
        make_private(cached)  # one an older version left readable by all
        super().__init__(name, [cached], cache_dir)
        self.paths = paths  # the fingerprint follows the file, not the copy

    @classmethod
    def _convert(cls, path: Path, target: Path) -> None:
        partial = target.with_suffix(".partial")
        os.close(create_private(partial))  # 0600 before a byte of the file is in it
        schema, batches = cls.record_batches(path)
        rows = 0
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(partial, target)  # atomic: a crash never leaves a half copy
        log.info("converted %s (%d rows) to %s", path.name, rows, target)
