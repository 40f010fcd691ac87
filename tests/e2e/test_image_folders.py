"""Image folders and --images manifests through the real daemon: `tether ls`, a client, a loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import tether

from ..unit.test_image_folders import write_image, write_pets

TETHER = [sys.executable, "-m", "tether.cli"]


def test_tether_ls_shows_an_image_folder(serve, tmp_path: Path) -> None:
    write_pets(tmp_path / "pets")
    daemon = serve(tmp_path / "pets")
    ls = subprocess.run([*TETHER, "ls", daemon.url], capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert "pets  (images, 7 rows)" in ls.stdout
    assert "  classes: cat 3, dog 3, emu 1" in ls.stdout
    assert "  skipped: 3 files that are not images (.txt ×2, .json ×1)" in ls.stdout
    assert "pets: skipped 3 files that are not images (.txt ×2, .json ×1)" in \
        daemon.stderr_text()
    with daemon.client() as client:
        info = client.describe("pets")
    assert {c.name: c.kind for c in info.columns} == {"image": "image", "label": "", "path": "utf8"}
    assert all(c.mean_row_bytes > 0 for c in info.columns if c.kind)
    assert (list(info.classes), list(info.class_counts)) == (["cat", "dog", "emu"], [3, 3, 1])


def test_serve_images_flag_makes_a_csv_a_manifest(serve, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    for i in range(4):
        write_image(folder / "img" / f"{i}.png", i)
    pacsv.write_csv(pa.table({"path": [f"img/{i}.png" for i in range(4)],
                              "label": pa.array([0, 1, 0, 1], pa.int64())}),
                    folder / "labels.csv")
    daemon = serve(folder / "labels.csv", args=("--images", "path"))
    with daemon.client() as client:
        info = client.describe("labels")
    assert info.format == "csv+images" and info.num_rows == 4
    assert [(c.name, c.kind) for c in info.columns] == [
        ("path", "utf8"), ("label", ""), ("image", "image")]


def test_serve_images_without_a_table_is_refused(tmp_path: Path) -> None:
    write_pets(tmp_path / "pets")
    result = subprocess.run([*TETHER, "serve", str(tmp_path / "pets"), "--images", "path",
                             "--state-dir", str(tmp_path / "state")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--images path names the image column of a CSV or Parquet file" in result.stderr


def test_a_loader_gets_every_image_once_with_its_label_and_path(serve, tmp_path: Path) -> None:
    written = write_pets(tmp_path / "pets")
    daemon = serve(tmp_path / "pets")
    loader = tether.Loader(daemon.url, dataset="pets", batch_size=3, shuffle=True, seed=1,
                           columns=["label", "path", "image"])
    seen = []
    for batch in loader:
        for label, path, image in zip(batch["label"], batch["path"], batch["image"], strict=True):
            assert image == written[path]
            assert ["cat", "dog", "emu"][label] == path.split("/")[0]
            seen.append(path)
    assert sorted(seen) == sorted(written)
    assert seen != sorted(seen)  # shuffled


def test_a_loader_reads_a_parquet_manifest(serve, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    images = {f"img/{i}.png": write_image(folder / "img" / f"{i}.png", i) for i in range(5)}
    pq.write_table(pa.table({"path": list(images), "score": np.arange(5, dtype=np.float32)}),
                   folder / "scores.parquet", row_group_size=2)
    daemon = serve(folder / "scores.parquet", args=("--images", "path"))
    loader = tether.Loader(daemon.url, dataset="scores", batch_size=2,
                           columns=["score", "image", "path"])
    rows = [(s, i, p) for b in loader for s, i, p in zip(b["score"], b["image"], b["path"],
                                                          strict=True)]
    assert [p for _, _, p in rows] == list(images)
    assert [s for s, _, _ in rows] == [0, 1, 2, 3, 4]
    assert all(image == images[path] for _, image, path in rows)


def test_an_image_changed_in_place_fails_the_stream_then_is_served_anew(serve, tmp_path) -> None:
    written = write_pets(tmp_path / "pets")
    daemon = serve(tmp_path / "pets")
    with daemon.client() as client:
        before = client.describe("pets").fingerprint
    changed = tmp_path / "pets" / "cat" / "1.PNG"  # row 0
    changed.write_bytes(written["cat/1.PNG"] + b"trailing")
    loader = tether.Loader(daemon.url, dataset="pets", batch_size=7, columns=["image"])
    with pytest.raises(tether.DatasetError, match="changed on disk"):
        list(loader)
    loader = tether.Loader(daemon.url, dataset="pets", batch_size=7, columns=["path", "image"])
    batch = next(iter(loader))  # the daemon rescanned the folder: a new version
    assert batch["path"][0] == "cat/1.PNG" and batch["image"][0] == changed.read_bytes()
    with daemon.client() as client:
        assert client.describe("pets").fingerprint != before
