"""A table as pandas users keep it, for `tether bench --data table`: gaps,
dates, text and categories, written by pandas' to_parquet.

    id int64 · age Int64 (10% missing) · score float64 (10% NaN) · city text (10%
    missing, 200 values) · when datetime64 (10% NaT) · plan category · ok boolean
    (10% missing) · x float32 [8]

About 100 bytes a row in memory. `CLEANING` is what a training job wants of
it: nulls filled, text and categories as codes; both the pushdown (the
daemon fills and codes) and the download (pandas on the remote side) do it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PARQUET = "people.parquet"
DATASET = "people"
ROW_BYTES = 100
CHUNK_ROWS = 500_000
CITIES = [f"city-{i:03d}" for i in range(200)]
PLANS = ["free", "team", "pro", "gold"]
FILL = {"age": -1, "ok": False, "when": "2000-01-01"}
CATEGORIES = ["city"]  # the text column the daemon numbers (plan is a category already)


def _chunk(rng: np.random.Generator, start: int, rows: int):
    import pandas as pd

    def gaps() -> np.ndarray:
        return rng.random(rows) < 0.1

    age = pd.array(rng.integers(18, 90, rows), dtype="Int64")
    age[gaps()] = pd.NA
    score = rng.standard_normal(rows)
    score[gaps()] = np.nan
    city = pd.Series(rng.choice(CITIES, rows), dtype=object)
    city[gaps()] = None
    when = pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(
        rng.integers(0, 10**7, rows), unit="s"))
    when[gaps()] = pd.NaT
    ok = pd.array(rng.random(rows) < 0.5, dtype="boolean")
    ok[gaps()] = pd.NA
    plan = pd.Categorical(rng.choice(PLANS, rows), categories=PLANS)
    x = rng.standard_normal((rows, 8), dtype=np.float32)
    return pd.DataFrame({"id": np.arange(start, start + rows), "age": age, "score": score,
                         "city": city, "when": when, "plan": plan, "ok": ok,
                         "x": list(x)})


def write(dataset: Path, nbytes: int, seed: int = 0) -> Path:
    """About `nbytes` of rows as `dataset/people.parquet`, written by pandas a
    chunk (one row group) at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = max(1, nbytes // ROW_BYTES)
    dataset.mkdir(parents=True, exist_ok=True)
    writer = None
    for start in range(0, rows, CHUNK_ROWS):
        frame = _chunk(rng, start, min(CHUNK_ROWS, rows - start))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        x = pa.FixedSizeListArray.from_arrays(np.stack(frame["x"]).reshape(-1), 8)
        table = table.set_column(table.schema.get_field_index("x"), "x", x)
        writer = writer or pq.ParquetWriter(dataset / PARQUET, table.schema)
        writer.write_table(table)
    writer.close()
    return dataset


def clean_with_pandas(frame) -> dict[str, np.ndarray]:
    """What the download path computes on the remote side: CLEANING, in pandas."""
    import pandas as pd

    filled = frame.fillna({"age": FILL["age"], "ok": FILL["ok"]})
    return {
        "id": frame["id"].to_numpy(), "age": filled["age"].to_numpy(np.int64),
        "score": frame["score"].to_numpy(np.float64),
        "city": frame["city"].astype(pd.CategoricalDtype(sorted(CITIES))).cat.codes
        .to_numpy(np.int32),
        "when": frame["when"].fillna(pd.Timestamp(FILL["when"])).to_numpy(),
        "plan": frame["plan"].cat.codes.to_numpy(np.int32),
        "ok": filled["ok"].to_numpy(bool),
        "x": np.stack(frame["x"].to_numpy()),
    }
