"""Writes one small dataset in every format the daemon serves, and what each must yield."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

ROWS = 1000


def columns(rows: int = ROWS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {
        "id": np.arange(rows, dtype=np.int64),
        "x": rng.standard_normal(rows),  # float64
        "vec": rng.standard_normal((rows, 3)).astype(np.float32),
        "img": rng.integers(0, 256, (rows, 4, 5), dtype=np.uint8),
        "flag": rng.random(rows) > 0.5,
        "half": rng.standard_normal(rows).astype(np.float16),
        "small": rng.integers(-100, 100, rows).astype(np.int16),
    }


def _list_array(values: np.ndarray) -> pa.Array:
    """Nested fixed-size lists for an N-D column."""
    array = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def arrow_table(data: dict[str, np.ndarray]) -> pa.Table:
    fields = {}
    for name, values in data.items():
        if name == "img":  # N-D via the canonical tensor extension type
            fields[name] = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))
        else:
            fields[name] = _list_array(values) if values.ndim > 1 else pa.array(values)
    return pa.table(fields)


def write_all(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Write every format under `root`; return dataset name -> expected columns."""
    data = columns()
    table = arrow_table(data)
    root.mkdir(parents=True, exist_ok=True)
    expected = {}

    pq.write_table(table, root / "single.parquet", row_group_size=300)
    expected["single"] = data
    (root / "parts").mkdir()
    pq.write_table(table.slice(0, 400), root / "parts" / "part-0.parquet", row_group_size=128)
    pq.write_table(table.slice(400), root / "parts" / "part-1.parquet", row_group_size=250)
    expected["parts"] = data

    with pa.OSFile(str(root / "table.arrow"), "wb") as sink, \
            pa.ipc.new_file(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=333):
            writer.write_batch(batch)
    expected["table"] = data
    with pa.OSFile(str(root / "stream.arrows"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=170):
            writer.write_batch(batch)
    expected["stream"] = data
    feather.write_feather(table.drop_columns(["img"]), root / "frame.feather", chunksize=256)
    expected["frame"] = {k: v for k, v in data.items() if k != "img"}

    flat = {k: data[k] for k in ("id", "x", "small")}
    pacsv.write_csv(pa.table(flat), root / "rows.csv")
    expected["rows"] = {"id": flat["id"], "x": flat["x"], "small": flat["small"].astype(np.int64)}

    (root / "columns").mkdir()
    for name, values in data.items():
        np.save(root / "columns" / f"{name}.npy", values)
    expected["columns"] = data
    np.save(root / "single_array.npy", np.asfortranarray(data["vec"]))
    expected["single_array"] = {"single_array": data["vec"]}
    np.savez(root / "stored.npz", **data)
    expected["stored"] = data
    np.savez_compressed(root / "packed.npz", **data)
    expected["packed"] = data
    return expected
