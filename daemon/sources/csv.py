"""CSV: converted once to Arrow IPC (converted.py). An empty field is a null
in every column kind, as pandas reads it, and as DuckDB does for --sql over
the same file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from .converted import ConvertedSource


class CsvSource(ConvertedSource):
    format = "csv"
    conversion = "nulls"  # empty fields are nulls (before: empty strings in text columns)

    @classmethod
    def record_batches(cls, path: Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(
            strings_can_be_null=True))
        return reader.schema, iter(reader)
