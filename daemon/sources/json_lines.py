"""JSON Lines (.jsonl, .ndjson, and either gzipped): one JSON object a row,
converted once to Arrow IPC (converted.py); nested objects become structs
(served flattened, outer.inner), arrays lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson

from .converted import ConvertedSource

SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


class JsonLinesSource(ConvertedSource):
    format = "jsonl"

    @classmethod
    def record_batches(cls, path: Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        stream = pa.input_stream(str(path), compression="detect")
        if hasattr(pajson, "open_json"):  # pyarrow 19 and later: a batch at a time
            reader = pajson.open_json(stream)
            return reader.schema, iter(reader)
        table = pajson.read_json(stream)  # older pyarrow: the whole file at once
        return table.schema, iter(table.to_batches())
