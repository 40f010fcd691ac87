"""Images as rows: a folder of image files, or a table (CSV, Parquet) whose
column names them (`tether serve labels.csv --images path`).

Which folders are image folders (`layout`), decided from a folder's own
entries and one peek into each subfolder, so discovery stays cheap:

- CLASSES: the folder directly holds no data file of another format, has at
  least one non-hidden subfolder, and every non-hidden subfolder directly
  holds an image. Each subfolder is a class (torchvision's ImageFolder):
  columns `image`, `label` (index in the sorted class names) and `path`.
  Inside a class folder the scan recurses (`cat/indoor/1.jpg` is a cat).
- FLAT: otherwise, a folder that directly holds images and no data file of
  another format: its own images, columns `image` and `path`; its
  subfolders are searched as usual, each maybe a dataset of its own.

So `data/` holding `pets/cat/*.jpg` and `pets/dog/*.jpg` serves `pets`
(data/ directly holds no image), while `data/` holding flat folders `a/`
and `b/` is read as two classes: serve `data/a` and `data/b` by path to get
two datasets. Images are `.jpg .jpeg .png .webp .bmp .gif`, in any case.
Hidden files and folders are ignored. Any other file in an image folder,
and an image beside the class folders, is skipped and counted: one log line
and `DatasetInfo.skipped` say so (`tether ls` shows it). Rows are sorted by
(class, path relative to the folder): the order is stable.

Files are read whole with plain reads, not memory-mapped, so a file changed
under a read cannot kill the daemon; `unchanged` therefore checks only the
files of the rows about to be read, against the sizes and modification
times recorded by the scan. Pillow is not needed: rows are the encoded bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tether.wire.errors import DataCorrupted
from tether.wire.ragged import BINARY, IMAGE, UTF8, Ragged
from tether.wire.rpc import MAX_SHARD_BYTES

from .base import Column, Source, numpy_column
from .row_blocks import BlockCache

log = logging.getLogger(__name__)

SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
CLASSES = "classes"
FLAT = "flat"
IMAGE_COLUMN = "image"
# A file must fit a frame; one larger is refused before it is read.
MAX_FILE_BYTES = MAX_SHARD_BYTES


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in SUFFIXES


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _holds_an_image(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(not _hidden(e.name) and is_image(e.name) and e.is_file()
                       for e in entries)
    except OSError:
        return False


def layout(entries: Sequence[Path], data_file: Callable[[Path], bool]) -> str | None:
    """CLASSES, FLAT or None (not an image folder) for a folder of these
    entries (see the module's docstring); `data_file` says which files
    another source serves."""
    visible = [e for e in entries if not _hidden(e.name)]
    files = [e for e in visible if e.is_file()]
    if any(data_file(f) for f in files):
        return None
    folders = [e for e in visible if e.is_dir()]
    if folders and all(_holds_an_image(f) for f in folders):
        return CLASSES
    if any(is_image(f.name) for f in files):
        return FLAT
    return None


@dataclass
class Listing:
    """The images of a folder as the scan found them, in row order."""

    files: list[str] = field(default_factory=list)  # to open
    relative: list[str] = field(default_factory=list)  # to the folder, with /
    labels: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    folders: dict[str, int] = field(default_factory=dict)  # scanned folder -> mtime_ns
    not_images: Counter = field(default_factory=Counter)  # suffix -> files skipped
    outside_classes: int = 0  # images beside the class folders, skipped

    def summary(self) -> str:
        """The files skipped, in one line ("" when none):
        `3 files that are not images (.txt ×2, .json ×1)`."""
        parts = []
        if self.not_images:
            count = sum(self.not_images.values())
            kinds = ", ".join(f"{suffix} ×{n}" for suffix, n in
                              sorted(self.not_images.items(), key=lambda kv: (-kv[1], kv[0])))
            what = "1 file that is not an image" if count == 1 else \
                f"{count} files that are not images"
            parts.append(f"{what} ({kinds})")
        if self.outside_classes:
            n = self.outside_classes
            parts.append(f"{n} image{'s' * (n != 1)} beside the class folders, in no class")
        return " and ".join(parts)


def _inside(path: str, root: Path | None) -> bool:
    if root is None:
        return True
    try:
        return Path(path).resolve(strict=True).is_relative_to(root)
    except (OSError, RuntimeError):
        return False


def scan(folder: Path, kind: str, root: Path | None) -> Listing:
    """List an image folder. Links leading out of `root` are skipped with a
    warning (None: followed); each real folder is visited once."""
    listing = Listing()
    seen: set[str] = set()
    found: list[tuple[int, str, str]] = []  # (label, relative, path)

    def walk(directory: str, relative: str, label: int, recurse: bool) -> None:
        real = os.path.realpath(directory)
        if real in seen:  # a link back to a folder already listed
            return
        seen.add(real)
        listing.folders[directory] = os.stat(directory).st_mtime_ns
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if _hidden(entry.name):
                continue
            if entry.is_symlink() and not _inside(entry.path, root):
                log.warning("not serving %s: a link out of %s (tether serve --follow-symlinks "
                            "follows it)", entry.path, root)
                continue
            name = f"{relative}{entry.name}"
            if entry.is_dir():
                if recurse:
                    walk(entry.path, f"{name}/", label, recurse)
            elif entry.is_file():
                if not is_image(entry.name):
                    listing.not_images[os.path.splitext(entry.name)[1].lower() or
                                       "(no extension)"] += 1
                elif label < 0:
                    listing.outside_classes += 1
                else:
                    found.append((label, name, entry.path))

    if kind == CLASSES:
        with os.scandir(folder) as it:
            classes = sorted(e.name for e in it if not _hidden(e.name) and e.is_dir()
                             and _inside(e.path, root))
        listing.classes = classes
        walk(str(folder), "", -1, False)  # the folder's own files: skipped, counted
        for label, name in enumerate(classes):
            walk(str(folder / name), f"{name}/", label, True)
    else:
        walk(str(folder), "", 0, False)
    found.sort(key=lambda item: (item[0], item[1]))
    listing.labels = [label for label, _, _ in found]
    listing.relative = [name for _, name, _ in found]
    listing.files = [path for _, _, path in found]
    return listing


class ImageFiles:
    """Image files read by row: their sizes and modification times as first
    seen, the checks against them, and the reads."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        stats = [os.stat(f) for f in files]
        self.sizes = np.array([s.st_size for s in stats], dtype=np.int64)
        self.mtimes = np.array([s.st_mtime_ns for s in stats], dtype=np.int64)
        self.stale = False  # set once a file is seen to have changed

    def digest(self, names: Sequence[str]) -> str:
        """Of every file's name, size and mtime: hashed once, not per call."""
        text = "".join(f"{n}\0{s}\0{m}\n" for n, s, m in
                       zip(names, self.sizes.tolist(), self.mtimes.tolist(), strict=True))
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def unchanged(self, rows: np.ndarray) -> bool:
        for row in np.unique(rows).tolist():
            try:
                now = os.stat(self.files[row])
            except OSError:
                self.stale = True
                return False
            if now.st_size != self.sizes[row] or now.st_mtime_ns != self.mtimes[row]:
                self.stale = True
                return False
        return True

    def read(self, rows: np.ndarray) -> Ragged:
        """The files of `rows`, whole, as one Ragged of bytes: each read
        straight into its place in one buffer."""
        lengths = self.sizes[rows]
        if len(lengths) and int(lengths.max()) > MAX_FILE_BYTES:
            row = int(rows[int(np.argmax(lengths))])
            raise DataCorrupted(f"image {self.files[row]} is {int(self.sizes[row]) >> 20} MiB, "
                                f"over the {MAX_FILE_BYTES >> 20} MiB limit of a row; remove it")
        values = np.empty(int(lengths.sum()), dtype=np.uint8)
        view = memoryview(values)
        start = 0
        for row, length in zip(rows.tolist(), lengths.tolist(), strict=True):
            end = start + length
            with _open_regular(self.files[row]) as f:
                done = start
                while done < end:
                    got = f.readinto(view[done:end])
                    if not got:
                        break
                    done += got
                if done != end or f.read(1):
                    self.stale = True
                    raise OSError(f"{self.files[row]} changed size while being read "
                                  f"(was {length} bytes); open the loader again")
            start = end
        return Ragged.from_lengths(values, lengths, BINARY)

    @property
    def mean_bytes(self) -> int:
        return max(1, round(float(self.sizes.mean()))) if len(self.sizes) else 1


def _open_regular(path: str) -> io.FileIO:
    """`path` opened for reading if it is still a plain file: opening a FIFO put
    in an image's place would block forever, so it is opened without blocking
    and refused by its type."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is no longer a plain file; open the loader again")
        os.set_blocking(fd, True)
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


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
