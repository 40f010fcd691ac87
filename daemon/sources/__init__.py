"""Data sources by file suffix. Adding a format is one file and one line below.

`discover(path)` says which datasets a path given to `tether serve` holds;
`Found.open(cache_dir)` builds the Source of one.

A symbolic link inside a served folder is followed only while it stays
inside that folder (`follow_symlinks=True`, `tether serve --follow-symlinks`,
follows any): the folder you serve is what you serve, not what a link in it
points at. Each folder is visited once, so a link loop ends.

Image folders (a folder per class, or a flat one) are datasets too, and a
CSV or Parquet file named on the command line with `images=COLUMN`
(`tether serve labels.csv --images path`) is a manifest of images: see
images.py. `--images` applies only to such files named directly; the
CSV and Parquet files found inside a served folder stay plain tables.

A SQLite file (.sqlite, .sqlite3, .db) is several datasets, one per table,
named `<stem>.<table>`: see sqlite.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .arrow_ipc import ArrowIpcSource, FeatherSource
from .base import Column, Source
from .csv import CsvSource
from .hdf5 import SUFFIXES as HDF5_SUFFIXES
from .hdf5 import Hdf5Source
from .image_scan import is_image
from .images import CLASSES, MANIFEST_SUFFIXES, ImageFolderSource, ImageManifestSource
from .images import layout as image_layout
from .json_lines import SUFFIXES as JSON_LINES_SUFFIXES
from .json_lines import JsonLinesSource
from .npy import NpySource
from .npz import NpzSource
from .parquet import ParquetSource
from .sqlite import SUFFIXES as SQLITE_SUFFIXES
from .sqlite import discover as sqlite_tables
from .sqlite import is_database as is_sqlite
from .webdataset import WebDatasetSource

_BY_SUFFIX: dict[str, type[Source]] = {
    ".parquet": ParquetSource,
    ".pq": ParquetSource,
    ".arrow": ArrowIpcSource,
    ".arrows": ArrowIpcSource,
    ".ipc": ArrowIpcSource,
    ".feather": FeatherSource,
    ".csv": CsvSource,
    **dict.fromkeys(JSON_LINES_SUFFIXES, JsonLinesSource),
    ".npy": NpySource,
    ".npz": NpzSource,
    ".tar": WebDatasetSource,
    **dict.fromkeys(HDF5_SUFFIXES, Hdf5Source),
}
# Suffixes of more than one part (`x.jsonl.gz`), matched before a plain one.
_COMPOUND = sorted((s for s in _BY_SUFFIX if s.count(".") > 1), key=len, reverse=True)

log = logging.getLogger(__name__)

# Formats whose files in one folder make one dataset (parts, or columns).
_GROUPED = (ParquetSource, NpySource, WebDatasetSource)


@dataclass
class Found:
    """A dataset found on disk, not yet opened."""

    name: str
    paths: list[Path]
    root: Path | None = None  # its files must stay inside (resolved); None: anywhere
    reader: type[Source] | None = None  # None: by the first path's suffix
    options: dict = field(default_factory=dict)  # the reader's keyword arguments
    images: str | None = None  # a manifest's column of image paths (--images)
    images_root: Path | None = None  # where they must stay (resolved); None: anywhere
    origin: str = ""  # what derives a dataset that has no files (a query, a server)

    @property
    def kind(self) -> type[Source]:
        return self.reader or _BY_SUFFIX[suffix(self.paths[0])]

    def open(self, cache_dir: Path) -> Source:
        if self.root is not None:  # a link re-pointed since discovery
            for path in self.paths:
                if not _stays_inside(path, self.root):
                    raise ValueError(f"{path} now links out of the served folder {self.root} "
                                     "(tether serve --follow-symlinks serves such links)")
        source = self.kind(self.name, self.paths, cache_dir, **self.options)
        if self.images is None:
            return source
        try:
            return ImageManifestSource(source, self.paths[0], self.images, self.images_root)
        except BaseException:
            source.close()
            raise


def suffix(path: Path) -> str:
    """The file's format suffix, lower case: `.jsonl.gz` for x.jsonl.gz."""
    name = path.name.lower()
    return next((s for s in _COMPOUND if name.endswith(s)), path.suffix.lower())


def dataset_name(path: Path) -> str:
    """A file's dataset name: its name without the format suffix."""
    return path.name[:len(path.name) - len(suffix(path))] or path.name


def supported(path: Path) -> bool:
    return suffix(path) in _BY_SUFFIX


def _stays_inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve(strict=True).is_relative_to(root)
    except (OSError, RuntimeError):  # a dangling link, a loop
        return False


def discover(path: Path, follow_symlinks: bool = False, images: str | None = None,
             left_out: list[str] | None = None) -> list[Found]:
    """The datasets under `path`.

    A file is one dataset named by its stem; with `images`, a CSV or Parquet
    file is a manifest whose column `images` names image files. A folder
    whose files are all Parquet parts, or all .npy columns, is one dataset
    named by the folder; so is an image folder (images.py says which are).
    Any other folder holds one dataset per supported file, and its
    subfolders are searched the same way. Links leading out of `path` are
    skipped (with a warning) unless `follow_symlinks`.
    """
    if path.is_file():
        if path.suffix.lower() in SQLITE_SUFFIXES:
            if not is_sqlite(path):
                raise ValueError(f"{path}: not a SQLite database (its first bytes are not "
                                 "SQLite's); serve a .sqlite, .sqlite3 or .db file SQLite wrote")
            return sqlite_tables(path)
        if not supported(path):
            known = ", ".join(sorted((*_BY_SUFFIX, *SQLITE_SUFFIXES)))
            raise ValueError(f"{path}: unsupported file type; serve one of: {known}")
        if images is not None and path.suffix.lower() in MANIFEST_SUFFIXES:
            inside = None if follow_symlinks else path.parent.resolve()
            return [Found(path.stem, [path], images=images, images_root=inside)]
        return [Found(dataset_name(path), [path])]
    root = None if follow_symlinks else path.resolve()
    return _discover(path, root, set(), left_out if left_out is not None else [])


def _discover(path: Path, root: Path | None, seen: set[Path],
              left_out: list[str]) -> list[Found]:
    real = path.resolve()
    if real in seen:  # a link back to a folder already searched
        return []
    seen.add(real)
    entries = []
    for entry in sorted(path.iterdir()):
        if root is None or not entry.is_symlink() or _stays_inside(entry, root):
            entries.append(entry)
        else:
            log.warning("not serving %s: a link out of %s (tether serve --follow-symlinks "
                        "follows it)", entry, root)
    images = image_layout(entries, supported)
    if images is not None:
        found = [Found(path.name, [path], root, ImageFolderSource,
                       {"layout": images, "root": root})]
        if images == CLASSES:  # the subfolders are its classes
            return found
        return found + _subfolders(entries, root, seen, left_out)
    _note_left_out(path, entries, left_out)
    files = [p for p in entries if p.is_file() and supported(p)]
    databases = [table for p in entries if p.is_file() and is_sqlite(p)
                 for table in _tables(p, root)]
    kinds = {_BY_SUFFIX[suffix(p)] for p in files}
    if len(kinds) == 1 and kinds <= set(_GROUPED):
        return [Found(path.name, files, root), *databases]
    return ([Found(dataset_name(p), [p], root) for p in files] + databases
            + _subfolders(entries, root, seen, left_out))


def _tables(path: Path, root: Path | None) -> list[Found]:
    try:
        return sqlite_tables(path, root)
    except ValueError as exc:  # one unreadable database spares the folder's other datasets
        log.warning("not serving %s", exc)
        return []


def _subfolders(entries: list[Path], root: Path | None, seen: set[Path],
                left_out: list[str]) -> list[Found]:
    found = []
    for sub in (p for p in entries if p.is_dir() and not p.name.startswith(".")):
        found.extend(_discover(sub, root, seen, left_out))
    return found


def _note_left_out(folder: Path, entries: list[Path], left_out: list[str]) -> None:
    """Say which files of a (non-image) folder no dataset serves, and why."""
    images = [p for p in entries if p.is_file() and is_image(p.name)]
    tables = [p for p in entries if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES]
    if images:
        join = (f"; if {tables[0].name} lists them, tether serve {tables[0]} --images COLUMN "
                "serves them with its rows") if tables else ""
        left_out.append(f"{folder}: {len(images)} image files beside data files (a folder of "
                        f"images is served only when it holds nothing else){join}")
    for entry in entries:
        if entry.is_file() and not entry.name.startswith(".") and not supported(entry) \
                and not is_image(entry.name) and not is_sqlite(entry):
            kind = suffix(entry) or "no suffix"
            left_out.append(f"{entry}: not a format Tether serves ({kind})")


__all__ = ["Column", "Found", "ImageFolderSource", "ImageManifestSource", "Source", "discover",
           "supported"]
