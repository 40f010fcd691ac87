"""Benchmark datasets: realistic mixes, written as folders of .npy columns.

Every system in a run reads the same folder, so they all move the same bytes.

- images: 64x64x3 uint8 patches cut from scikit-image's sample photos, with a label
- floats: 256 float32 features a row, with a label
- tokens: 512 int64 token ids a row, Zipf-distributed over a 50k vocabulary
- features: 256 float32 sensor-like features a row: each channel a slow random walk read
  by a 12-bit converter (steps of 1/64), so a value has at most 12 significant bits, as
  quantized readings or float16-born embeddings stored as float32 have; with a label
- tiles: 64x64x3 uint8 tiles cut from generated photo-like JPEGs (image_data.photo),
  decoded, with a label: natural-image pixels without the 5-photo repetition of `images`
- jpegs: a folder of JPEG files, a subfolder per class (image_data.py)
- text: token lists of varying length, as lists and pre-padded (text_data.py)
- filter: a Parquet table of 1 KB rows with a column that a 10%-selective filter reads
  (filter_data.py), for filter pushdown against filtering after the download
- table: a pandas-made Parquet with gaps, dates, text and categories (table_data.py),
  cleaned on the daemon against downloaded and cleaned with pandas
- any dataset a user points at, copied (up to the size asked) through Tether's own readers;
  an image folder is copied as files

Each kind belongs to a family (`FAMILIES`, `user_family`): the systems a
run compares are those of its data's family (System.family).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import filter_data, image_data, table_data, text_data

CHUNK_ROWS = 4096


def _photos() -> list[np.ndarray]:
    import skimage.data

    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
    return [getattr(skimage.data, n)() for n in names]


def _image_rows(rng: np.random.Generator, rows: int, photos: list[np.ndarray]) -> dict:
    patches = np.empty((rows, 64, 64, 3), np.uint8)
    for i in range(rows):
        photo = photos[rng.integers(len(photos))]
        y, x = rng.integers(0, photo.shape[0] - 64), rng.integers(0, photo.shape[1] - 64)
        patches[i] = photo[y:y + 64, x:x + 64]
    return {"image": patches, "label": rng.integers(0, 10, rows).astype(np.int64)}


def _float_rows(rng: np.random.Generator, rows: int, _=None) -> dict:
    return {"x": rng.standard_normal((rows, 256), dtype=np.float32),
            "label": rng.integers(0, 10, rows).astype(np.int64)}


def _token_rows(rng: np.random.Generator, rows: int, _=None) -> dict:
    ids = rng.zipf(1.2, (rows, 512)) - 1
    return {"tokens": np.minimum(ids, 49_999).astype(np.int64)}


FEATURE_LEVELS = 4096  # a 12-bit converter
FEATURE_STEP = 1 / 64  # exact in float32: values keep at most 12 significant bits


def _feature_rows(rng: np.random.Generator, rows: int, _=None) -> dict:
    walks = np.cumsum(rng.standard_normal((rows, 256), dtype=np.float32) * 4, axis=0)
    walks += rng.uniform(-FEATURE_LEVELS / 4, FEATURE_LEVELS / 4, 256).astype(np.float32)
    codes = np.clip(np.rint(walks), -FEATURE_LEVELS // 2, FEATURE_LEVELS // 2 - 1)
    return {"x": (codes * FEATURE_STEP).astype(np.float32),
            "label": rng.integers(0, 10, rows).astype(np.int64)}


TILE = 64


def _tile_rows(rng: np.random.Generator, rows: int, _=None) -> dict:
    """Non-overlapping tiles of fresh generated photos, a photo's tiles in a row."""
    import io

    from PIL import Image

    tiles = np.empty((rows, TILE, TILE, 3), np.uint8)
    filled = 0
    while filled < rows:
        pixels = np.asarray(Image.open(io.BytesIO(image_data.photo(rng))).convert("RGB"))
        across, down = pixels.shape[1] // TILE, pixels.shape[0] // TILE
        cut = pixels[:down * TILE, :across * TILE].reshape(down, TILE, across, TILE, 3)
        cut = cut.transpose(0, 2, 1, 3, 4).reshape(-1, TILE, TILE, 3)[:rows - filled]
        tiles[filled:filled + len(cut)] = cut
        filled += len(cut)
    return {"image": tiles, "label": rng.integers(0, 10, rows).astype(np.int64)}


_MAKERS: dict[str, tuple[Callable, int, Callable | None]] = {
    # name: (rows maker, bytes per row, shared setup)
    "images": (_image_rows, 64 * 64 * 3 + 8, _photos),
    "floats": (_float_rows, 256 * 4 + 8, None),
    "tokens": (_token_rows, 512 * 8, None),
    "features": (_feature_rows, 256 * 4 + 8, None),
    "tiles": (_tile_rows, TILE * TILE * 3 + 8, None),
}

# Kinds written as files of their own format: name -> writer(dataset folder, bytes, seed).
_FILE_WRITERS: dict[str, Callable[[Path, int, int], Path]] = {
    "jpegs": image_data.write_jpegs,
    "text": text_data.write,
    "filter": filter_data.write,
    "table": table_data.write,
}

TENSORS, IMAGES, TEXT, FILTERING, TABLES = "tensors", "images", "text", "filter", "table"
FAMILIES = {**dict.fromkeys(_MAKERS, TENSORS), "jpegs": IMAGES, "text": TEXT,
            "filter": FILTERING, "table": TABLES}
TENSOR_NAMES = ("images", "floats", "tokens")  # what `tether bench` runs without --data
NAMES = tuple(FAMILIES)


def user_family(path: Path) -> str:
    """The family of a user's dataset: an image folder is moved as files (IMAGES),
    anything else as .npy columns copied from it (TENSORS)."""
    return IMAGES if image_data.is_image_folder(path) else TENSORS


def write(kind: str, folder: Path, nbytes: int, seed: int = 0) -> Path:
    """Write about `nbytes` of dataset `kind` to `folder/kind/`, in bounded memory."""
    if kind in _FILE_WRITERS:
        return _FILE_WRITERS[kind](folder / kind, nbytes, seed)
    make, row_bytes, setup = _MAKERS[kind]
    shared = setup() if setup else None
    rows = max(1, nbytes // row_bytes)
    dataset = folder / kind
    dataset.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    outputs: dict[str, np.ndarray] = {}
    for start in range(0, rows, CHUNK_ROWS):
        chunk = make(rng, min(CHUNK_ROWS, rows - start), shared)
        for name, values in chunk.items():
            if name not in outputs:
                outputs[name] = np.lib.format.open_memmap(
                    dataset / f"{name}.npy", mode="w+", dtype=values.dtype,
                    shape=(rows, *values.shape[1:]))
            outputs[name][start:start + len(values)] = values
    for out in outputs.values():
        out.flush()
    return dataset


def copy_user_dataset(path: Path, name: str, folder: Path, nbytes: int) -> Path:
    """Copy up to `nbytes` of a user's dataset (any format Tether serves) to .npy columns;
    an image folder's files (up to `nbytes` of them) to an image folder."""
    from tether.daemon.prepare.catalog import Catalog

    if image_data.is_image_folder(path):
        return image_data.copy_image_folder(path, folder / name, nbytes)

    source = Catalog([path], folder / "cache").get(name)
    columns = source.select([])
    row_bytes = sum(c.row_bytes for c in columns)
    rows = min(source.num_rows, max(1, nbytes // row_bytes))
    dataset = folder / name
    dataset.mkdir(parents=True, exist_ok=True)
    outputs = {c.name: np.lib.format.open_memmap(dataset / f"{c.name}.npy", mode="w+",
                                                 dtype=c.dtype, shape=(rows, *c.shape))
               for c in columns}
    for start in range(0, rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, rows)
        for column, values in source.read(start, stop, columns).items():
            outputs[column][start:stop] = values
    return dataset


# Rows per Parquet row group: about 4 MiB of the bench's rows (images: 12 KiB).
PARQUET_GROUP_BYTES = 4 << 20


def write_parquet(dataset: Path, target: Path) -> Path:
    """A Parquet copy of a folder of .npy columns, one file, in bounded memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = load(dataset)
    rows = len(next(iter(columns.values())))
    row_bytes = sum(c[:1].nbytes for c in columns.values())
    group = max(1, PARQUET_GROUP_BYTES // row_bytes)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    for start in range(0, rows, group):
        arrays = {}
        for name, values in columns.items():
            chunk = np.ascontiguousarray(values[start:start + group])
            array = pa.array(chunk.reshape(-1))
            for size in reversed(chunk.shape[1:]):  # N-D as nested fixed-size lists
                array = pa.FixedSizeListArray.from_arrays(array, size)
            arrays[name] = array
        table = pa.table(arrays)
        writer = writer or pq.ParquetWriter(target, table.schema)
        writer.write_table(table, row_group_size=group)
    writer.close()
    return target


def load(dataset: Path) -> dict[str, np.ndarray]:
    """The dataset's columns, memory-mapped."""
    return {p.stem: np.load(p, mmap_mode="r") for p in sorted(dataset.glob("*.npy"))}
