"""Image folders and image manifests as sources: discovery, rows, changed files, --images."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tether.daemon.prepare.catalog import Catalog
from tether.daemon.sources import discover
from tether.daemon.sources.images import ImageFolderSource
from tether.inspect import format_classes, format_dataset
from tether.wire.ragged import BINARY, IMAGE, UTF8, Ragged

MODES = ("RGB", "L", "P", "RGBA")


def write_image(path: Path, seed: int) -> bytes:
    """A small real image, its mode, size and format varying with `seed`."""
    rng = np.random.default_rng(seed)
    height, width = 3 + seed % 7, 4 + seed % 5
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(MODES[seed % len(MODES)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image = image.convert("RGB" if image.mode in ("P", "RGBA") else image.mode)
        image.save(path, format="JPEG")
    else:
        image.save(path, format="PNG")
    return path.read_bytes()


def write_pets(root: Path) -> dict[str, bytes]:
    """pets/{cat,dog,emu}/..., mixed modes, sizes, PNG and JPEG (some in upper
    case, one nested), a stray .txt and .json, hidden files: relative path -> bytes."""
    names = {
        "dog": ["b.png", "a.JPG", "c.jpeg"],
        "cat": ["2.png", "1.PNG", "indoor/3.jpg"],
        "emu": ["x.png"],
    }
    written = {}
    seed = 0
    for label, files in names.items():
        for name in files:
            written[f"{label}/{name}"] = write_image(root / label / name, seed)
            seed += 1
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "meta.json").write_text("{}")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "cat" / ".hidden.png").write_bytes(b"not even a png")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"no")
    return written


@pytest.fixture
def pets(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "pets"
    return root, write_pets(root)


def open_one(path: Path, tmp_path: Path, **kwargs):
    found = discover(path, **kwargs)
    assert len(found) == 1, found
    return found[0].open(tmp_path / "cache")


def test_a_folder_of_class_folders_is_one_dataset(pets, tmp_path: Path) -> None:
    root, written = pets
    source = open_one(root, tmp_path)
    assert source.name == "pets" and source.format == "images"
    assert list(source.columns) == ["image", "label", "path"]
    image, label, path = source.columns.values()
    assert (image.kind, image.dtype) == (IMAGE, np.dtype(np.uint8))
    assert (label.kind, label.dtype) == ("", np.dtype(np.int64))
    assert (path.kind, path.dtype) == (UTF8, np.dtype(np.uint8))
    assert image.mean_row_bytes == round(np.mean([len(b) for b in written.values()]))
    assert source.classes == ["cat", "dog", "emu"]
    assert source.class_counts == [3, 3, 1]
    assert source.num_rows == 7
    rows = source.take(np.arange(7), [path, label])
    # Sorted by (class, relative path); the nested cat/indoor/3.jpg is a cat.
    assert [rows["path"][i] for i in range(7)] == [
        "cat/1.PNG", "cat/2.png", "cat/indoor/3.jpg", "dog/a.JPG", "dog/b.png", "dog/c.jpeg",
        "emu/x.png"]
    assert rows["label"].tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert source.skipped == "3 files that are not images (.txt ×2, .json ×1)"


def test_take_returns_the_exact_file_bytes_in_shuffled_order(pets, tmp_path: Path) -> None:
    root, written = pets
    source = open_one(root, tmp_path)
    rows = np.random.default_rng(1).permutation(source.num_rows)
    rows = np.concatenate([rows, rows[:3]])  # a row twice is read twice
    got = source.take(rows, list(source.columns.values()))
    assert isinstance(got["image"], Ragged) and got["image"].kind == BINARY
    assert isinstance(got["path"], Ragged) and got["path"].kind == UTF8
    classes = source.classes
    for i in range(len(rows)):
        relative = got["path"][i]
        assert got["image"][i] == written[relative]
        assert classes[got["label"][i]] == relative.split("/")[0]
    assert got["label"].dtype == np.int64


def test_a_flat_folder_serves_image_and_path(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    written = {f"{i}.{'png' if i % 2 else 'JPEG'}": write_image(
        root / f"{i}.{'png' if i % 2 else 'JPEG'}", i) for i in range(5)}
    (root / "README.txt").write_text("hi")
    source = open_one(root, tmp_path)
    assert list(source.columns) == ["image", "path"]
    assert source.classes == [] and source.class_counts == []
    assert source.skipped == "1 file that is not an image (.txt ×1)"
    got = source.take(np.array([4, 0, 2]), list(source.columns.values()))
    for i in range(3):
        assert got["image"][i] == written[got["path"][i]]


def test_an_image_folder_beside_other_datasets(pets, tmp_path: Path) -> None:
    root, _ = pets
    data = root.parent
    pacsv.write_csv(pa.table({"x": [1, 2]}), data / "table.csv")
    found = {f.name: f for f in discover(data)}
    assert set(found) == {"pets", "table"}
    assert found["pets"].kind is ImageFolderSource


def test_images_beside_class_folders_are_skipped_and_counted(pets, tmp_path: Path) -> None:
    root, _ = pets
    write_image(root / "cover.png", 3)
    source = open_one(root, tmp_path)
    assert source.num_rows == 7
    assert source.skipped.endswith("and 1 image beside the class folders, in no class")


def test_a_folder_with_data_files_is_not_an_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    write_image(root / "a.png", 0)
    np.save(root / "x.npy", np.arange(3))
    # The .npy makes it a folder of columns (its own rule); the image is not served.
    assert [(f.name, f.kind.format) for f in discover(root)] == [("mixed", "npy")]


def test_a_changed_or_deleted_file_fails_only_the_rows_that_read_it(pets, tmp_path) -> None:
    root, _ = pets
    source = open_one(root, tmp_path)
    version = source.fingerprint
    everything = np.arange(source.num_rows)
    assert source.unchanged(everything, version)
    assert not source.unchanged(everything, "another version")
    assert not source.outdated()
    changed = root / "dog" / "b.png"  # row 4
    stat = changed.stat()
    changed.write_bytes(changed.read_bytes() + b"more")
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert source.unchanged(np.array([0, 1, 6]), version)  # only the rows' files are checked
    assert not source.unchanged(np.array([0, 4]), version)
    assert source.outdated()  # the catalog reopens it on its next use
    source = open_one(root, tmp_path)
    assert source.fingerprint != version
    (root / "cat" / "1.PNG").unlink()  # row 0
    assert not source.unchanged(np.array([0]), source.fingerprint)


def test_the_catalog_reopens_an_image_folder_that_changed(pets, tmp_path: Path) -> None:
    root, _ = pets
    catalog = Catalog([root], tmp_path / "cache")
    first = catalog.get("pets")
    assert catalog.get("pets") is first  # nothing changed: the same source
    time.sleep(0.01)  # a folder's mtime must move
    write_image(root / "emu" / "y.png", 9)  # a file added to a class folder
    second = catalog.get("pets")
    assert second is not first and second.num_rows == first.num_rows + 1
    assert second.fingerprint != first.fingerprint
    info = catalog.info("pets")
    assert list(info.classes) == ["cat", "dog", "emu"]
    assert list(info.class_counts) == [3, 3, 2]
    assert info.skipped == "3 files that are not images (.txt ×2, .json ×1)"
    kinds = {c.name: (c.kind, c.mean_row_bytes > 0) for c in info.columns}
    assert kinds == {"image": (IMAGE, True), "label": ("", False), "path": (UTF8, True)}


def test_tether_ls_shows_classes_and_skipped_files(pets, tmp_path: Path) -> None:
    root, _ = pets
    text = format_dataset(Catalog([root], tmp_path / "cache").info("pets"))
    assert "pets  (images, 7 rows)" in text
    assert "  classes: cat 3, dog 3, emu 1" in text
    assert "  skipped: 3 files that are not images (.txt ×2, .json ×1)" in text
    assert "  image  image    encoded images" in text


def test_hundreds_of_classes_are_summed_up() -> None:
    names = [f"c{i:03}" for i in range(300)]
    line = format_classes(names, list(range(1, 301)))
    assert line.startswith("c000 1, c001 2,") and "c012" not in line
    assert line.endswith("... and 288 more (300 classes, 1 to 300 images each)")


def test_fingerprint_of_20k_files_is_computed_once(tmp_path: Path, capsys) -> None:
    root = tmp_path / "many"
    for label in range(4):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(5000):
            (folder / f"{i}.png").write_bytes(b"x" * (1 + i % 7))
    start = time.perf_counter()
    catalog = Catalog([root], tmp_path / "cache")
    opened = time.perf_counter() - start
    source = catalog.get("many")
    assert source.num_rows == 20_000
    start = time.perf_counter()
    for _ in range(10):
        assert catalog.get("many") is source
        fingerprint = source.fingerprint
    checked = (time.perf_counter() - start) / 10
    start = time.perf_counter()
    assert source.unchanged(np.arange(1000), fingerprint)
    shard = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n20k image files: discover+scan+open {opened * 1000:.0f} ms; "
              f"catalog.get + fingerprint {checked * 1000:.2f} ms; "
              f"unchanged() of a 1000-row shard {shard * 1000:.1f} ms")


# Manifests: a table with a column of image paths (tether serve labels.csv --images path).

def write_manifest(folder: Path, suffix: str) -> tuple[Path, dict[str, bytes], pa.Table]:
    images = {f"img/{i}.png": write_image(folder / "img" / f"{i}.png", i) for i in range(6)}
    table = pa.table({
        "path": list(images),
        "label": pa.array([3, 1, 4, 1, 5, 9], pa.int64()),
        "score": pa.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5], pa.float64()),
    })
    manifest = folder / f"labels{suffix}"
    if suffix == ".csv":
        pacsv.write_csv(table, manifest)
    else:
        pq.write_table(table, manifest, row_group_size=4)
    return manifest, images, table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_manifest_serves_its_columns_and_the_images(tmp_path: Path, suffix: str) -> None:
    manifest, images, table = write_manifest(tmp_path / "data", suffix)
    source = open_one(manifest, tmp_path, images="path")
    assert source.name == "labels"
    assert list(source.columns) == ["path", "label", "score", "image"]
    assert source.columns["image"].kind == IMAGE
    assert source.columns["path"].kind == UTF8
    rows = np.array([5, 0, 3, 2])
    got = source.take(rows, list(source.columns.values()))
    assert got["label"].tolist() == [table["label"][int(r)].as_py() for r in rows]
    assert got["score"].tolist() == [table["score"][int(r)].as_py() for r in rows]
    for i, row in enumerate(rows.tolist()):
        relative = table["path"][row].as_py()
        assert got["path"][i] == relative
        assert got["image"][i] == images[relative]
    only = source.take(np.array([1]), [source.columns["image"]])
    assert list(only) == ["image"] and only["image"][0] == images["img/1.png"]
    assert source.unchanged(rows, source.fingerprint)
    (manifest.parent / "img" / "2.png").write_bytes(b"changed")
    assert source.unchanged(np.array([0, 1]), source.fingerprint)
    assert not source.unchanged(np.array([2]), source.fingerprint)


@pytest.mark.parametrize("bad", ["../outside.png", "ABSOLUTE", "link.png"])
def test_a_manifest_path_leading_out_of_its_folder_is_refused(tmp_path: Path, bad: str) -> None:
    outside = tmp_path / "outside.png"
    write_image(outside, 1)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "link.png").symlink_to(outside)
    bad = str(outside) if bad == "ABSOLUTE" else bad
    manifest = folder / "labels.csv"
    pacsv.write_csv(pa.table({"path": [bad], "label": [1]}), manifest)
    with pytest.raises(ValueError, match=r"labels.csv row 0: image .* --follow-symlinks"):
        open_one(manifest, tmp_path, images="path")
    source = open_one(manifest, tmp_path, images="path", follow_symlinks=True)
    image = source.take(np.array([0]), [source.columns["image"]])["image"]
    assert image[0] == outside.read_bytes()


def test_a_manifest_naming_a_missing_file_says_which_row(tmp_path: Path) -> None:
    manifest, _, _ = write_manifest(tmp_path / "data", ".csv")
    (manifest.parent / "img" / "4.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels.csv row 4: image 'img/4.png' not found"):
        open_one(manifest, tmp_path, images="path")


def test_images_names_a_column_the_manifest_has(tmp_path: Path) -> None:
    manifest, _, _ = write_manifest(tmp_path / "data", ".parquet")
    with pytest.raises(ValueError, match="has no column 'file'.*columns: path, label, score"):
        open_one(manifest, tmp_path, images="file")


def test_images_needs_a_table_named_on_the_command_line(pets, tmp_path: Path) -> None:
    root, _ = pets
    with pytest.raises(ValueError, match="--images path names the image column of a CSV"):
        Catalog([root], tmp_path / "cache", images_column="path")
    manifest, _, _ = write_manifest(tmp_path / "data", ".csv")
    catalog = Catalog([root, manifest], tmp_path / "cache", images_column="path")
    assert set(catalog.names) == {"pets", "labels"}
    assert catalog.info("labels").format == "csv+images"


def test_a_link_out_of_an_image_folder_is_not_served(pets, tmp_path: Path) -> None:
    root, _ = pets
    outside = tmp_path / "secret.png"
    write_image(outside, 5)
    (root / "cat" / "secret.png").symlink_to(outside)
    (root / "cat" / "inside.png").symlink_to(root / "dog" / "b.png")
    source = open_one(root, tmp_path)
    paths = list(source.take(np.arange(source.num_rows), [source.columns["path"]])["path"])
    assert "cat/secret.png" not in paths and "cat/inside.png" in paths
    source = open_one(root, tmp_path, follow_symlinks=True)
    paths = list(source.take(np.arange(source.num_rows), [source.columns["path"]])["path"])
    assert "cat/secret.png" in paths
