"""Token lists for the bench: the same sequences in two Parquet layouts.

- `lists.parquet`: column `tokens` list<int32>, one sequence a row, as text
  tokenised for training is stored; the loader pads or packs it.
- `padded.parquet`: column `tokens` fixed_size_list<int32, 512> (each row cut
  to 512 and padded with 0) and `tokens_length` int32, the pre-padded layout
  that any tensor loader can serve.

Ids are Zipf-distributed (a = 1.2) below a 50k vocabulary; lengths are
lognormal (sigma 1) with mean L/4 = 128, at least 1, so some pass L and a
packer splits them while the padded layout cuts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LENGTH = 512  # L: the row length of both layouts
VOCABULARY = 50_000
MEAN_LENGTH = LENGTH / 4
SIGMA = 1.0
GROUP_ROWS = 8192  # sequences per Parquet row group


def lengths(rng: np.random.Generator, count: int) -> np.ndarray:
    """Lognormal lengths of mean MEAN_LENGTH: mean = exp(mu + sigma^2 / 2)."""
    mu = np.log(MEAN_LENGTH) - SIGMA ** 2 / 2
    return np.maximum(1, rng.lognormal(mu, SIGMA, count).round()).astype(np.int64)


def write(dataset: Path, nbytes: int, seed: int = 0) -> Path:
    """About `nbytes` of int32 tokens as both layouts in `dataset/`, in bounded memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    sequences = max(1, int(nbytes // (MEAN_LENGTH * 4)))
    dataset.mkdir(parents=True, exist_ok=True)
    writers: dict[str, pq.ParquetWriter] = {}
    for start in range(0, sequences, GROUP_ROWS):
        sizes = lengths(rng, min(GROUP_ROWS, sequences - start))
        ids = np.minimum(rng.zipf(1.2, int(sizes.sum())) - 1, VOCABULARY - 1).astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        kept = np.minimum(sizes, LENGTH)
        padded = np.zeros((len(sizes), LENGTH), np.int32)
        padded[np.arange(LENGTH) < kept[:, None]] = np.concatenate(
            [ids[o:o + k] for o, k in zip(offsets[:-1], kept, strict=True)])
        tables = {
            "lists": pa.table({"tokens": pa.ListArray.from_arrays(offsets, ids)}),
            "padded": pa.table({
                "tokens": pa.FixedSizeListArray.from_arrays(padded.reshape(-1), LENGTH),
                "tokens_length": kept.astype(np.int32)}),
        }
        for name, table in tables.items():
            if name not in writers:
                writers[name] = pq.ParquetWriter(dataset / f"{name}.parquet", table.schema)
            writers[name].write_table(table)
    for writer in writers.values():
        writer.close()
    return dataset
