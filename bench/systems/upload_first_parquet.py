"""Upload-first for a table to filter: copy the whole Parquet file, then filter it with pyarrow.

The file is served by plain HTTP (`python -m http.server`); the client saves
all of it, reads it with `pyarrow.parquet.read_table(filters=bucket < 10)`
(pyarrow's own pushdown, on the local copy) and cuts the matching rows into
batches. The time to the first batch includes the whole transfer and the read.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data import FILTERING
from ..filter_data import PARQUET, SELECTED
from .base import Address, Batch, System, rebatch


def _numpy(column) -> np.ndarray:
    """A column as numpy: fixed-size lists as [rows, size] arrays."""
    import pyarrow as pa

    column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
    return column.to_numpy()


class UploadFirstParquet(System):
    name = "upload-first (parquet)"
    family = FILTERING
    unit = "matching rows"

    def units(self, batch: Batch) -> int:
        return len(batch["bucket"])

    def start(self, dataset: Path, workdir: Path) -> Address:
        self.size = (dataset / PARQUET).stat().st_size
        line = self._spawn("http.server", "0", "--bind", "127.0.0.1", "--directory",
                           str(dataset))
        return ("127.0.0.1", int(line.split(" port ")[1].split()[0]))

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory(prefix="upload-first-") as tmp:
            copy = Path(tmp) / PARQUET
            url = f"http://{address[0]}:{address[1]}/{PARQUET}"
            with urllib.request.urlopen(url) as response, open(copy, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            table = pq.read_table(copy, filters=pc.field("bucket") < SELECTED)
        columns = {name: _numpy(table.column(name)) for name in table.column_names}
        del table
        return rebatch(iter([columns]), batch_size)

    def wire_bytes(self, dataset: Path) -> int:
        return self.size
