"""Upload-first for a table to filter: copy the whole Parquet file, then filter it with pyarrow.

The file is served by plain HTTP (`python -m http.server`); the client saves
all of it, reads it with `pyarrow.parquet.read_table(filters=bucket < 10)`
(pyarrow's own pushdown, on the local copy) and cuts the matching rows into
batches. The time to the first batch includes the whole transfer and the read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data import FILTERING
from ..filter_data import PARQUET, SELECTED
from .base import Address, Batch, rebatch
from .http_copy import HttpCopy


def _numpy(column) -> np.ndarray:
    """A column as numpy: fixed-size lists as [rows, size] arrays."""
    import pyarrow as pa

    column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
    return column.to_numpy()


class UploadFirstParquet(HttpCopy):
    name = "upload-first (parquet)"
    family = FILTERING
    unit = "matching rows"
    file_name = PARQUET

    def units(self, batch: Batch) -> int:
        return len(batch["bucket"])

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with self.downloaded(address) as copy:
            table = pq.read_table(copy, filters=pc.field("bucket") < SELECTED)
        columns = {name: _numpy(table.column(name)) for name in table.column_names}
        del table
        return rebatch(iter([columns]), batch_size)
