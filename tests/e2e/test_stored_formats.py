"""The formats people store datasets in, through the real daemon and loader,
each delivering the rows its reference reader gives: JSON Lines (pyarrow.json),
WebDataset tar shards (tarfile), HDF5 (h5py), Hugging Face image Parquet
(decoded as `datasets` decodes with PIL), and a folder that mixes them with
files nobody serves."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

import tether

from ..conftest import DaemonProcess, collect

PIL = pytest.importorskip("PIL.Image")

ROWS = 300


def _png(i: int) -> bytes:
    pixels = np.full((6 + i % 5, 8, 3), i % 256, dtype=np.uint8)
    out = io.BytesIO()
    PIL.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def _write_jsonl(root: Path) -> list[dict]:
    rows = [{"id": i, "user": {"name": f"u{i}", "age": 20 + i % 50}, "tags": ["a", "b"][:i % 3],
             "score": i / 4} for i in range(ROWS)]
    (root / "events.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with gzip.open(root / "packed.jsonl.gz", "wt") as out:
        out.write("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def _write_shards(folder: Path) -> None:
    """Two WebDataset shards: an image, a class, a caption and metadata a sample;
    every seventh sample has no caption."""
    folder.mkdir()
    for shard in range(2):
        with tarfile.open(folder / f"shard-{shard:04d}.tar", "w") as tar:
            for i in range(shard * ROWS // 2, (shard + 1) * ROWS // 2):
                members = {"png": _png(i), "cls": str(i % 10).encode(),
                           "json": json.dumps({"i": i}).encode()}
                if i % 7:
                    members["txt"] = f"caption {i}".encode()
                for extension, data in members.items():
                    info = tarfile.TarInfo(f"samples/{i:06d}.{extension}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def _write_hdf5(path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(ROWS * 2, dtype=np.float32).reshape(ROWS, 2)  # contiguous: mapped
        f.create_dataset("labels/y", data=np.arange(ROWS) % 3, chunks=(64,),
                         compression="gzip")  # chunked, compressed: read a block at a time
        f["meta"] = np.arange(5)  # another first dimension: left out


def _write_hugging_face(path: Path) -> None:
    features = {"image": {"_type": "Image"},
                "label": {"names": ["cat", "dog"], "_type": "ClassLabel"},
                "text": {"dtype": "string", "_type": "Value"}}
    table = pa.table({
        "image": pa.array([{"bytes": _png(i), "path": f"{i}.png"} for i in range(ROWS)]),
        "label": pa.array(np.arange(ROWS) % 2, pa.int64()),
        "text": [f"t{i}" for i in range(ROWS)]})
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path, row_group_size=100)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("stored")
    data = root / "data"
    data.mkdir()
    rows = _write_jsonl(data)
    _write_shards(data / "shards")
    _write_hdf5(data / "arrays.h5")
    _write_hugging_face(data / "pets.parquet")
    (data / "notes.docx").write_bytes(b"PK")  # served by nobody: said so
    with DaemonProcess([data], root / "state") as daemon:
        yield daemon, data, rows
        assert daemon.stop() == 0


def _shuffled(url: str, dataset: str, **options) -> dict[str, np.ndarray]:
    _, got = collect(tether.Loader(url, dataset=dataset, batch_size=64, shuffle=True, seed=5,
                                   **options))
    key = next(k for k in ("id", "__key__", "text", "x") if k in got)
    order = np.argsort(got[key] if key != "x" else got[key][:, 0], kind="stable")
    return {name: values[order] for name, values in got.items()}


@pytest.mark.parametrize("dataset", ["events", "packed"])
def test_json_lines_deliver_what_pyarrow_json_reads(stored, dataset: str) -> None:
    daemon, data, _ = stored
    file = data / ("events.jsonl" if dataset == "events" else "packed.jsonl.gz")
    want = pajson.read_json(pa.input_stream(str(file), compression="detect"))
    got = _shuffled(daemon.url, dataset)
    assert got["id"].tolist() == want["id"].to_pylist()
    assert got["user.name"].tolist() == [u["name"] for u in want["user"].to_pylist()]
    assert got["user.age"].tolist() == [u["age"] for u in want["user"].to_pylist()]
    assert got["tags"].tolist() == want["tags"].to_pylist()
    assert got["score"].tolist() == want["score"].to_pylist()


def test_webdataset_shards_deliver_what_tarfile_reads(stored) -> None:
    daemon, data, _ = stored
    want: dict[str, dict[str, bytes]] = {}
    for shard in sorted((data / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, extension = member.name.split(".", 1)
                want.setdefault(key, {})[extension] = tar.extractfile(member).read()
    got = _shuffled(daemon.url, "shards", null_masks=["cls"])
    keys = sorted(want)
    assert got["__key__"].tolist() == keys  # one row a sample, each once, across both shards
    assert got["cls"].tolist() == [int(want[k]["cls"]) for k in keys]
    assert got["txt"].tolist() == [want[k]["txt"].decode() if "txt" in want[k] else None
                                   for k in keys]
    assert got["json"].tolist() == [want[k]["json"].decode() for k in keys]
    assert got["png"].tolist() == [want[k]["png"] for k in keys]
    sized = _shuffled(daemon.url, "shards", columns=["__key__", "png"], image_size=(4, 4))
    first = np.asarray(PIL.open(io.BytesIO(want[keys[0]]["png"])).convert("RGB"))
    assert np.array_equal(sized["png"][0], first[1:5, 2:6])  # the centre 4 x 4, as PIL gives


def test_hdf5_delivers_what_h5py_reads(stored) -> None:
    h5py = pytest.importorskip("h5py")
    daemon, data, _ = stored
    got = _shuffled(daemon.url, "arrays")
    with h5py.File(data / "arrays.h5") as f:
        assert np.array_equal(got["x"], f["x"][:])
        assert np.array_equal(got["labels/y"], f["labels/y"][:])
    assert "meta" not in got


def test_hugging_face_images_decode_as_datasets_does_and_ls_names_the_classes(stored) -> None:
    daemon, data, _ = stored
    got = _shuffled(daemon.url, "pets", image_size=(6, 8), columns=["image", "label", "text"])
    table = pq.read_table(data / "pets.parquet")
    order = np.argsort(table["text"].to_numpy(zero_copy_only=False), kind="stable")
    images = [table["image"][int(i)].as_py()["bytes"] for i in order]
    # `datasets`' Image feature: PIL.Image.open(BytesIO(bytes)), here converted to RGB
    reference = [np.asarray(PIL.open(io.BytesIO(b)).convert("RGB")) for b in images]
    for pixels, expected in zip(got["image"], reference, strict=True):
        top = (expected.shape[0] - 6) // 2
        assert np.array_equal(pixels, expected[top:top + 6])
    listing = subprocess.run([sys.executable, "-m", "tether.cli", "ls", daemon.url],
                             capture_output=True, text=True, timeout=60).stdout
    assert "classes: cat, dog" in listing
    assert "notes.docx: not a format Tether serves (.docx)" in listing
    assert "left out: 'meta': its first dimension is 5" in listing


def test_image_size_without_an_image_column_is_refused(stored) -> None:
    daemon, _, _ = stored
    with pytest.raises(tether.RequestError, match="no column streamed is an image"):
        next(iter(tether.Loader(daemon.url, dataset="pets", batch_size=8, image_size=(8, 8),
                                columns=["text"])))
