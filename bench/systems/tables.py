"""A pandas-made table (bench.table_data), cleaned for training two ways.

- "tether table": `tether.Loader(..., fill_null=..., categories=["city"])`: the
  daemon fills the nulls and codes the text, and the ready columns stream.
- "download + pandas": copy the Parquet file over the link (plain HTTP), read
  it with pandas, clean it there (fillna, category codes), cut it into batches;
  the first batch waits for the whole file.
- "tether read + pandas": `tether.connect(url).read(...)` (the table as stored,
  zstd-compressed Arrow) into pandas, then cleaned as the download path does:
  the same DataFrame without copying the file first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tether

from ..data import TABLES
from ..table_data import CATEGORIES, DATASET, FILL, PARQUET, clean_with_pandas
from .base import Address, Batch, rebatch
from .http_copy import HttpCopy
from .tether_stream import TetherSystem, endpoint_of


class TetherTable(TetherSystem):
    family = TABLES

    def __init__(self) -> None:
        super().__init__("auto")
        self.name = "tether table"

    def served(self, dataset: Path, workdir: Path) -> Path:
        return dataset / PARQUET

    def dataset_name(self, dataset: Path) -> str:
        return DATASET

    def loader_options(self) -> dict[str, Any]:
        return {"fill_null": FILL, "categories": CATEGORIES}


class DownloadPandas(HttpCopy):
    name = "download + pandas"
    family = TABLES
    file_name = PARQUET

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        import pandas as pd

        with self.downloaded(address) as copy:
            columns = clean_with_pandas(pd.read_parquet(copy))
        return rebatch(iter([columns]), batch_size)


class TetherReadPandas(TetherTable):
    """`client.read()` into pandas: the DataFrame path, where download + pandas
    is the baseline (zstd asked for: the bench's link is a proxy on this machine,
    where "auto" would send the table uncompressed)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "tether read + pandas"

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        with tether.connect(endpoint_of(address)) as client:
            frame = client.read(self.dataset_name(dataset), codec="zstd").to_pandas()
        return rebatch(iter([clean_with_pandas(frame)]), batch_size)
