"""Tether on a table to filter (bench.filter_data): the daemon filters, or the loader does.

- "pushdown": `tether.Loader(..., filter="bucket < 10")`; the daemon selects
  the matching rows (reading the filter's column first) and sends only them.
  `parquet` serves the Parquet copy of the same rows instead of the .npy
  columns: the daemon then decodes every row group a match lies in.
- "after": the same loader without `filter=`: every row crosses the link, and
  each batch is masked with numpy on arrival (`bucket < 10`) and the matches
  rebatched to full batches, as a training loop filtering its input would.

Both deliver every column of the matching rows, `bucket` included, so that
the pushdown's rows can be checked on arrival: a row that does not match
stops the run, and the bench checks the count against the file's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..data import FILTERING
from ..filter_data import COLUMNS, DATASET, FILTER, PARQUET, matches
from .base import Address, Batch, rebatch
from .tether_stream import TetherSystem


def _filtered(batches: Iterator[Batch]) -> Iterator[Batch]:
    for batch in batches:
        mask = matches(batch)
        if mask.any():
            yield {name: values[mask] for name, values in batch.items()}


def _checked(batches: Iterator[Batch]) -> Iterator[Batch]:
    for batch in batches:
        if not matches(batch).all():
            raise RuntimeError(f"filter={FILTER!r} delivered rows that do not match it")
        yield batch


PUSHDOWN = "tether filter pushdown"  # the name report.filter_speedups compares the others with


class TetherFilter(TetherSystem):
    family = FILTERING
    unit = "matching rows"  # every row delivered; the count is checked against the file's

    def __init__(self, pushdown: bool, parquet: bool = False) -> None:
        super().__init__("auto", parquet=parquet)
        self.pushdown = pushdown
        self.name = (PUSHDOWN if pushdown else "tether filter after") + \
            (" parquet" if parquet else "")

    def served(self, dataset: Path, workdir: Path) -> Path:
        return dataset / (PARQUET if self.parquet else COLUMNS)

    def dataset_name(self, dataset: Path) -> str:
        return DATASET

    def loader_options(self) -> dict[str, Any]:
        return {"filter": FILTER} if self.pushdown else {}

    def units(self, batch: Batch) -> int:
        return len(batch["bucket"])

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        batches = super().batches(dataset, address, batch_size)
        if self.pushdown:
            return _checked(batches)
        return rebatch(_filtered(batches), batch_size)
