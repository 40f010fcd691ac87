"""A table to filter, for the filter-pushdown scenario: rows of about 1 KB, in two formats.

- `bucket` int32, uniform in 0..99: `FILTER` (`bucket < 10`) selects 10% of the rows
- `label` int32 in 0..9, `score` float32 uniform in [0, 1)
- `x` float32 [252]: the features, standard normal

1,020 bytes a row, written twice with the same rows: `rows/` (a folder of .npy
columns) and `rows.parquet` (row groups of 4,096 rows, 4 MiB; `x` a
fixed_size_list). Tether serves either as dataset `rows`; upload-first
copies the Parquet file, the form a table is usually shipped in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = "rows"  # the folder of .npy columns, and the name Tether serves either under
PARQUET = "rows.parquet"
DATASET = COLUMNS
BUCKETS = 100
SELECTED = 10  # buckets FILTER keeps, of BUCKETS
FILTER = f"bucket < {SELECTED}"
FEATURES = 252
ROW_BYTES = 4 + 4 + 4 + FEATURES * 4
GROUP_ROWS = 4096


def matches(batch: dict[str, np.ndarray]) -> np.ndarray:
    """FILTER as a numpy mask over a batch: what filtering on arrival computes."""
    return batch["bucket"] < SELECTED


def write(dataset: Path, nbytes: int, seed: int = 0) -> Path:
    """About `nbytes` of rows as `dataset/rows/*.npy` and `dataset/rows.parquet`,
    in bounded memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = max(1, nbytes // ROW_BYTES)
    (dataset / COLUMNS).mkdir(parents=True, exist_ok=True)
    shapes = {"bucket": (), "label": (), "score": (), "x": (FEATURES,)}
    outputs = {name: np.lib.format.open_memmap(
        dataset / COLUMNS / f"{name}.npy", mode="w+",
        dtype=np.float32 if name in ("score", "x") else np.int32, shape=(rows, *shape))
        for name, shape in shapes.items()}
    writer = None
    for start in range(0, rows, GROUP_ROWS):
        count = min(GROUP_ROWS, rows - start)
        chunk = {"bucket": rng.integers(0, BUCKETS, count).astype(np.int32),
                 "label": rng.integers(0, 10, count).astype(np.int32),
                 "score": rng.random(count, dtype=np.float32),
                 "x": rng.standard_normal((count, FEATURES), dtype=np.float32)}
        for name, values in chunk.items():
            outputs[name][start:start + count] = values
        table = pa.table({name: pa.FixedSizeListArray.from_arrays(values.reshape(-1), FEATURES)
                          if values.ndim == 2 else values for name, values in chunk.items()})
        writer = writer or pq.ParquetWriter(dataset / PARQUET, table.schema)
        writer.write_table(table, row_group_size=GROUP_ROWS)
    writer.close()
    for out in outputs.values():
        out.flush()
    return dataset


def matching_rows(dataset: Path) -> int:
    """How many rows FILTER selects: what every system must deliver."""
    bucket = np.load(dataset / COLUMNS / "bucket.npy", mmap_mode="r")
    return int(np.count_nonzero(bucket < SELECTED))
