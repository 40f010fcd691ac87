"""What people do today: gzip the data as CSV, move the whole file, parse it, then train.

The file is served by plain HTTP (`python -m http.server`); the time to the
first batch includes the whole transfer and the parse.
"""

from __future__ import annotations

import gzip
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .. import data
from .base import Address, Batch, System, rebatch


def _flat_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One CSV column per scalar: image_0, image_1, ... for N-D columns."""
    flat = {}
    for name, values in columns.items():
        if values.ndim == 1:
            flat[name] = values
            continue
        matrix = values.reshape(len(values), -1)
        for i in range(matrix.shape[1]):
            flat[f"{name}_{i}"] = matrix[:, i]
    return flat


class UploadFirst(System):
    name = "upload-first (csv.gz)"

    def start(self, dataset: Path, workdir: Path) -> Address:
        columns = data.load(dataset)
        served = workdir / "http"
        served.mkdir(exist_ok=True)
        csv = served / "data.csv"
        rows = len(next(iter(columns.values())))
        with pacsv.CSVWriter(str(csv), pa.schema(
                [(n, pa.from_numpy_dtype(v.dtype)) for n, v in
                 _flat_columns({k: c[:1] for k, c in columns.items()}).items()])) as w:
            for start in range(0, rows, 4096):
                part = {k: v[start:start + 4096] for k, v in columns.items()}
                w.write_table(pa.table(_flat_columns(part)))
        with open(csv, "rb") as src, \
                gzip.open(served / "data.csv.gz", "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        csv.unlink()
        self.size = (served / "data.csv.gz").stat().st_size
        line = self._spawn("http.server", "0", "--bind", "127.0.0.1", "--directory", str(served))
        return ("127.0.0.1", int(line.split(" port ")[1].split()[0]))

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/data.csv.gz") as r:
            compressed = r.read()
        table = pacsv.read_csv(pa.py_buffer(gzip.decompress(compressed)))
        del compressed
        columns = {}
        for name, values in data.load(dataset).items():
            if values.ndim == 1:
                columns[name] = table.column(name).to_numpy().astype(values.dtype)
            else:
                names = [f"{name}_{i}" for i in range(int(np.prod(values.shape[1:])))]
                stacked = np.stack([table.column(n).to_numpy() for n in names], axis=1)
                columns[name] = stacked.astype(values.dtype).reshape(values.shape)
        del table
        return rebatch(iter([columns]), batch_size)

    def wire_bytes(self, dataset: Path) -> int:
        return self.size
