"""Parquet: one file, or a folder of files read as one dataset in name order.

Only footers are read at start-up; rows are read a row group at a time,
projected to the requested columns, so unneeded columns never leave the disk.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import arrow_columns
from .base import Column, Source
from .row_blocks import BlockCache, RowBlocks


class ParquetSource(Source):
    format = "parquet"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        files = [pq.ParquetFile(p) for p in paths]
        schema = files[0].schema_arrow
        for path, f in zip(paths[1:], files[1:], strict=True):
            if not f.schema_arrow.equals(schema):
                raise ValueError(f"{path.name} has another schema than {paths[0].name}")
        self._groups = [(i, g) for i, f in enumerate(files) for g in range(f.num_row_groups)]
        self._blocks = RowBlocks(
            [files[i].metadata.row_group(g).num_rows for i, g in self._groups]
        )
        super().__init__(name, paths, self._blocks.num_rows, arrow_columns.describe_schema(schema))
        self._cache = BlockCache()
        self._local = threading.local()  # a ParquetFile is not shared across threads

    def _file(self, index: int) -> pq.ParquetFile:
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = {}
        if index not in files:
            files[index] = pq.ParquetFile(self.paths[index], memory_map=True)
        return files[index]

    def read(self, start: int, stop: int, columns: Sequence[Column]) -> dict[str, np.ndarray]:
        names = tuple(c.name for c in columns)

        def load(block: int):
            file_index, group = self._groups[block]
            return self._cache.get(
                (block, names),
                lambda: self._file(file_index).read_row_group(group, columns=list(names)),
            )

        return arrow_columns.table_to_numpy(self._blocks.read(start, stop, load), columns)
