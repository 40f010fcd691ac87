"""Images as rows: an image folder (image_scan.py says which folders are),
or a table whose column names image files (`tether serve labels.csv --images path`)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tether.wire.ragged import IMAGE, UTF8, Ragged

from .base import Column, Source, numpy_column
from .image_files import ImageFiles
from .image_scan import CLASSES, FLAT, SUFFIXES, layout, scan
from .row_blocks import BlockCache

__all__ = ["CLASSES", "IMAGE_COLUMN", "MANIFEST_SUFFIXES", "ImageFiles", "ImageFolderSource",
           "ImageManifestSource", "layout"]

log = logging.getLogger(__name__)

IMAGE_COLUMN = "image"


def _text_column(name: str, texts: Ragged) -> Column:
    mean = len(texts.values) / max(len(texts), 1)
    return Column(name, np.dtype(np.uint8), (), kind=UTF8, mean_row_bytes=max(1, round(mean)))


def _texts(texts: list[str]) -> Ragged:
    """All rows' texts in one Ragged, encoded once: a shard takes its rows from it."""
    return Ragged.from_rows(texts, kind=UTF8) if texts else \
        Ragged.from_lengths(np.zeros(0, np.uint8), np.zeros(0, np.int64), UTF8)


class ImageFolderSource(Source):
    """A folder of images (see the module's docstring)."""

    format = "images"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path, layout: str = FLAT,
                 root: Path | None = None) -> None:
        listing = scan(paths[0], layout, root)
        if not listing.files:
            raise ValueError(f"{paths[0]} holds no image ({', '.join(sorted(SUFFIXES))})")
        self._listing = listing
        self._images = ImageFiles(listing.files)
        self._fingerprint = self._images.digest(listing.relative)[:24]
        self._labels = np.array(listing.labels, dtype=np.int64)
        self._relative = _texts(listing.relative)
        columns = {IMAGE_COLUMN: Column(IMAGE_COLUMN, np.dtype(np.uint8), (), kind=IMAGE,
                                        mean_row_bytes=self._images.mean_bytes)}
        if layout == CLASSES:
            columns["label"] = numpy_column("label", np.dtype(np.int64), ())
        columns["path"] = _text_column("path", self._relative)
        super().__init__(name, paths, len(listing.files), columns)
        # Shown by `tether ls` (DatasetInfo.classes, class_counts, skipped).
        self.classes = listing.classes
        self.class_counts = np.bincount(self._labels, minlength=len(self.classes)).tolist() \
            if layout == CLASSES else []
        self.skipped = listing.summary()
        self.row_name_column = "path"
        if self.skipped:
            log.warning("%s: skipped %s", name, self.skipped)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint  # of the scan's listing: stat-ing 100k files per call is slow

    def unchanged(self, rows: np.ndarray, version: str) -> bool:
        return version == self._fingerprint and self._images.unchanged(rows)

    def row_name(self, row: int) -> str:
        return self._relative[row]

    def outdated(self) -> bool:
        """Whether a new scan would list other files: a file seen changed, or
        a folder whose entries changed (one stat per folder, not per file)."""
        if self._images.stale:
            return True
        for folder, mtime in self._listing.folders.items():
            try:
                if os.stat(folder).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray | Ragged]:
        rows = np.asarray(rows, dtype=np.int64)
        out: dict[str, np.ndarray | Ragged] = {}
        for column in columns:
            if column.name == IMAGE_COLUMN:
                out[column.name] = self._images.read(rows)
            elif column.name == "label":
                out[column.name] = self._labels[rows]
            else:
                out[column.name] = self._relative.take(rows)
        return out


MANIFEST_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})


def _path_column(manifest: Path, column: str) -> list[str]:
    if manifest.suffix.lower() == ".csv":
        options = pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()})
        table = pacsv.read_csv(manifest, convert_options=options)
    else:
        table = pq.read_table(manifest, columns=[column])
    values = table.column(column).cast(pa.string())
    if values.null_count:
        row = values.to_pylist().index(None)
        raise ValueError(f"{manifest.name}: row {row} has no image path in column {column!r}; "
                         "fill it or drop the row")
    return values.to_pylist()


def _image_path(folder: Path, text: str, root: Path | None, manifest: Path, row: int,
                real_folders: dict[str, str]) -> str:
    """Where row `row`'s image is; refused when it leads out of `root`."""
    where = f"{manifest.name} row {row}: image {text!r}"
    follow = "(tether serve --follow-symlinks serves such paths)"
    relative = Path(text)
    if root is not None and (relative.is_absolute() or ".." in relative.parts):
        raise ValueError(f"{where} is outside {folder}; give paths relative to the "
                         f"manifest's folder {follow}")
    path = os.path.join(folder, text)
    try:
        status = os.lstat(path)
        if stat.S_ISLNK(status.st_mode):
            status = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        raise FileNotFoundError(f"{where} not found ({path}); fix the path or drop the row") \
            from None
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"{where} is not a file ({path})")
    if root is not None:
        parent = os.path.dirname(path)
        real_parent = real_folders.get(parent)
        if real_parent is None:  # resolved once per folder, not per row
            real_parent = real_folders[parent] = os.path.realpath(parent)
        real = os.path.realpath(path) if os.path.islink(path) else \
            os.path.join(real_parent, os.path.basename(path))
        if not Path(real).is_relative_to(root):
            raise ValueError(f"{where} links out of {root} {follow}")
    return path


class ImageManifestSource(Source):
    """A table whose `column` holds image paths relative to its folder: its
    columns (`column` served as text) and `image`, the files' bytes."""

    def __init__(self, table: Source, manifest: Path, column: str,
                 root: Path | None) -> None:
        if column not in table.columns:
            raise ValueError(f"{manifest.name} has no column {column!r} (tether serve --images); "
                             f"its columns: {', '.join(table.columns)}")
        if IMAGE_COLUMN in table.columns:
            raise ValueError(f"{manifest.name} already has a column {IMAGE_COLUMN!r}, where "
                             "--images puts the image bytes; rename it")
        self.format = f"{table.format}+images"
        self._table = table
        self._column = column
        self.row_name_column = column
        paths = _path_column(manifest, column)
        folder = manifest.parent
        real_folders: dict[str, str] = {}
        files = [_image_path(folder, text, root, manifest, row, real_folders)
                 for row, text in enumerate(paths)]
        self._images = ImageFiles(files)
        self._digest = self._images.digest(paths)
        self._paths = _texts(paths)
        columns = dict(table.columns)
        columns[column] = _text_column(column, self._paths)
        columns[IMAGE_COLUMN] = Column(IMAGE_COLUMN, np.dtype(np.uint8), (), kind=IMAGE,
                                       mean_row_bytes=self._images.mean_bytes)
        super().__init__(table.name, table.paths, table.num_rows, columns)

    @property
    def fingerprint(self) -> str:
        # The table's (a stat of the manifest) with the images' as scanned.
        text = f"{self._table.fingerprint}\0{self._digest}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def unchanged(self, rows: np.ndarray, version: str) -> bool:
        return (version == self.fingerprint
                and self._table.unchanged(rows, self._table.fingerprint)
                and self._images.unchanged(rows))

    def outdated(self) -> bool:
        return self._images.stale

    def row_name(self, row: int) -> str:
        return self._paths[row]

    def layout(self, window_bytes: int):
        return self._table.layout(window_bytes)

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray | Ragged]:
        rows = np.asarray(rows, dtype=np.int64)
        ours = (IMAGE_COLUMN, self._column)
        theirs = [c for c in columns if c.name not in ours]
        table = self._table.take(rows, theirs, cache) if theirs else {}
        out: dict[str, np.ndarray | Ragged] = {}
        for column in columns:
            if column.name == IMAGE_COLUMN:
                out[column.name] = self._images.read(rows)
            elif column.name == self._column:
                out[column.name] = self._paths.take(rows)
            else:
                out[column.name] = table[column.name]
        return out

    def close(self) -> None:
        self._table.close()
