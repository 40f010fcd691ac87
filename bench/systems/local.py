"""Baseline: read the files on this machine, no network: the other ceiling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tether.wire.aligned import aligned_empty

from .. import data
from .base import Address, Batch, System


class LocalRead(System):
    name = "local read"

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        columns = data.load(dataset)
        rows = len(next(iter(columns.values())))
        for start in range(0, rows, batch_size):
            batch = {}
            for name, values in columns.items():
                chunk = values[start:start + batch_size]
                batch[name] = aligned_empty(chunk.shape, chunk.dtype)
                batch[name][:] = chunk
            yield batch
