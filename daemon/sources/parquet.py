"""Parquet: one file, or a folder of files read as one dataset in name order.

Only footers are read at start-up; rows are read a row group at a time,
projected to the requested columns, so unneeded columns never leave the disk.
Row groups are compressed as wholes, so the shuffle is windowed: row groups
are permuted and rows shuffled across a window of many of them, each row
group read once per epoch into the stream's cache (tether.wire.plan).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tether.wire.plan import Layout

from . import arrow_columns
from .arrow_types import huggingface_classes, pandas_index
from .base import Column, Source
from .column_facts import with_facts
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
        metadata = [files[i].metadata.row_group(g) for i, g in self._groups]
        self._blocks = RowBlocks([m.num_rows for m in metadata])
        # Uncompressed bytes of whole rows: sizes the shuffle window the same
        # whichever columns a stream reads, so the order never depends on them.
        self._row_bytes = sum(m.total_byte_size for m in metadata) / max(self._blocks.num_rows, 1)
        self._local = threading.local()  # a ParquetFile is not shared across threads
        self.paths = paths  # (read by filter_blocks before Source.__init__)
        counted = _null_counts(metadata, schema)
        columns = arrow_columns.describe_schema(schema, _column_row_bytes(metadata, schema),
                                                counted)
        # Footers count nulls (pyarrow and pandas write the statistics); columns
        # whose footers do not are counted from the data, once.
        columns = with_facts(columns, self.filter_blocks,
                             counted=lambda column: ".".join(column.path) in counted)
        super().__init__(name, paths, self._blocks.num_rows, columns)
        self.left_out = pandas_index(schema)
        _, self.classes = huggingface_classes(schema)  # a Hugging Face ClassLabel's names

    def layout(self, window_bytes: int) -> Layout:
        window_rows = max(1, int(window_bytes / max(self._row_bytes, 1e-9)))
        return Layout(tuple(self._blocks.sizes), window_rows)

    def _file(self, index: int) -> pq.ParquetFile:
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = {}
        if index not in files:
            files[index] = pq.ParquetFile(self.paths[index], memory_map=True)
        return files[index]

    def filter_blocks(self, names: Sequence[str]) -> Iterator[pa.Table]:
        for block in range(len(self._groups)):
            yield self.arrow_block(block, names)

    def arrow_block(self, block: int, names: Sequence[str]) -> pa.Table:
        file_index, group = self._groups[block]
        return self._file(file_index).read_row_group(group, columns=list(names))

    def arrow_schema(self) -> pa.Schema:
        return self._file(0).schema_arrow

    def table_blocks(self) -> int:
        return len(self._groups)

    def filter_types(self) -> dict[str, pa.DataType]:
        schema = self._file(0).schema_arrow
        return {f.name: f.type for f in schema if f.nullable}

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray]:
        names = tuple(arrow_columns.read_names(columns))
        cache = cache or BlockCache()

        def load(block: int) -> dict[str, np.ndarray]:
            return arrow_columns.table_to_numpy(self.arrow_block(block, names), columns)

        return self._blocks.gather(rows, lambda block: cache.get((block, names),
                                                                 lambda: load(block)))


def _null_counts(metadata: list, schema: pa.Schema) -> dict[str, int]:
    """Nulls of each leaf column (by its dotted path) that every row group's
    statistics count; a column of a non-nullable field has none."""
    counts: dict[str, int] = {}
    unknown: set[str] = set()
    for group in metadata:
        for index in range(group.num_columns):
            chunk = group.column(index)
            stats = chunk.statistics
            path = chunk.path_in_schema
            if stats is None or not stats.has_null_count:
                unknown.add(path)
            else:
                counts[path] = counts.get(path, 0) + stats.null_count
    for field in schema:
        if not field.nullable:
            counts[field.name] = 0
    return {path: count for path, count in counts.items() if path not in unknown}


def _column_row_bytes(metadata: list, schema) -> dict[str, float]:
    """Uncompressed bytes a row of each top-level column, from the footers
    (a list column is stored as its leaves: "tokens.list.element")."""
    totals = dict.fromkeys(schema.names, 0)
    rows = max(sum(m.num_rows for m in metadata), 1)
    for group in metadata:
        for index in range(group.num_columns):
            chunk = group.column(index)
            top = chunk.path_in_schema.split(".", 1)[0]
            if top in totals:
                totals[top] += chunk.total_uncompressed_size
    return {name: total / rows for name, total in totals.items()}
