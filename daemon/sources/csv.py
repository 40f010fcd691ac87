"""CSV: converted once, streaming, to an Arrow IPC file in the daemon's cache,
then served memory-mapped like any Arrow file.

CSV has no random access, so a lazy read needs an index; an IPC copy is the
simplest one, costs one pass, and is reused until the CSV changes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from ..private import create_private, make_private, private_dir
from .arrow_ipc import ArrowIpcSource
from .base import fingerprint

log = logging.getLogger(__name__)

CONVERSION = "nulls"  # empty fields are nulls (before: empty strings in text columns)


def _convert(path: Path, target: Path) -> None:
    partial = target.with_suffix(".partial")
    os.close(create_private(partial))  # 0600 before a byte of the CSV is in it
    # An empty field is a null in every column kind, as pandas reads it, and as
    # DuckDB does for --sql over the same file.
    reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(
        strings_can_be_null=True))
    rows = 0
    with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    os.replace(partial, target)  # atomic: a crash never leaves a half cache
    log.info("converted %s (%d rows) to %s", path.name, rows, target)


class CsvSource(ArrowIpcSource):
    format = "csv"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        private_dir(cache_dir)
        # The name says how it was converted: a file converted another way is not reused.
        cached = cache_dir / f"{paths[0].stem}-{fingerprint(paths)}-{CONVERSION}.arrow"
        if not cached.exists():
            log.info("indexing %s for random access (once per version of the file)", paths[0])
            _convert(paths[0], cached)
        make_private(cached)  # one an older version left readable by all
        super().__init__(name, [cached], cache_dir)
        self.paths = paths  # the fingerprint follows the CSV, not the cache
