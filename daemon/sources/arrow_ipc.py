"""Arrow IPC (Feather v2), file or stream format, memory-mapped.

Record batches are zero-copy views of the mapped file, so reading is lazy:
the OS pages in only the rows that are sent. Any row is as cheap to reach
as any other, so the shuffle is a true permutation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import arrow_columns
from .arrow_types import huggingface_classes, pandas_index
from .base import Column, Source
from .column_facts import with_facts
from .row_blocks import BlockCache, RowBlocks


def _batches(path: Path) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    mapped = pa.memory_map(str(path))
    try:
        reader = pa.ipc.open_file(mapped)
        return reader.schema, [reader.get_batch(i) for i in range(reader.num_record_batches)]
    except pa.ArrowInvalid:
        mapped.seek(0)
        reader = pa.ipc.open_stream(mapped)  # stream format: walk it once
        return reader.schema, list(reader)


class ArrowIpcSource(Source):
    format = "arrow"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        self._schema, self._batches = _batches(paths[0])
        schema = self._schema
        self._blocks = RowBlocks([b.num_rows for b in self._batches])
        sample = self._batches[0] if self._batches else schema.empty_table()
        columns = arrow_columns.describe_schema(schema, arrow_columns.table_row_bytes(sample))
        # Null counts are in the file's metadata: counting them reads no data.
        columns = with_facts(columns, self.filter_blocks, lambda column: False, cheap=True)
        super().__init__(name, paths, self._blocks.num_rows, columns)
        self.left_out = pandas_index(schema)
        _, self.classes = huggingface_classes(schema)  # a Hugging Face ClassLabel's names

    def filter_blocks(self, names: Sequence[str]) -> Iterator[pa.Table]:
        for batch in self._batches:
            yield pa.Table.from_batches([batch.select(list(names))])

    def arrow_block(self, block: int, names: Sequence[str]) -> pa.Table:
        return pa.Table.from_batches([self._batches[block].select(list(names))])

    def arrow_schema(self) -> pa.Schema:
        return self._schema

    def table_blocks(self) -> int:
        return len(self._batches)

    def filter_types(self) -> dict[str, pa.DataType]:
        schema = self._batches[0].schema if self._batches else pa.schema([])
        return {f.name: f.type for f in schema if f.nullable}

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray]:
        names = arrow_columns.read_names(columns)

        def load(block: int) -> dict[str, np.ndarray]:  # mostly views of the mapped file
            return arrow_columns.table_to_numpy(self.arrow_block(block, names), columns)

        cache = cache or BlockCache()
        return self._blocks.gather(rows, lambda block: cache.get((block, *names),
                                                                 lambda: load(block)))


class FeatherSource(ArrowIpcSource):
    """Feather v2 is the Arrow IPC file format under another name."""

    format = "feather"
