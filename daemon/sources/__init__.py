"""Data sources by file suffix. Adding a format is one file and one line below.

`discover(path)` says which datasets a path given to `tether serve` holds;
`Found.open(cache_dir)` builds the Source of one.

A symbolic link inside a served folder is followed only while it stays
inside that folder (`follow_symlinks=True`, `tether serve --follow-symlinks`,
follows any): the folder you serve is what you serve, not what a link in it
points at. Each folder is visited once, so a link loop ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .arrow_ipc import ArrowIpcSource, FeatherSource
from .base import Column, Source
from .csv import CsvSource
from .npy import NpySource
from .npz import NpzSource
from .parquet import ParquetSource

_BY_SUFFIX: dict[str, type[Source]] = {
    ".parquet": ParquetSource,
    ".pq": ParquetSource,
    ".arrow": ArrowIpcSource,
    ".arrows": ArrowIpcSource,
    ".ipc": ArrowIpcSource,
    ".feather": FeatherSource,
    ".csv": CsvSource,
    ".npy": NpySource,
    ".npz": NpzSource,
}

log = logging.getLogger(__name__)

# Formats whose files in one folder make one dataset (parts, or columns).
_GROUPED = (ParquetSource, NpySource)


@dataclass
class Found:
    """A dataset found on disk, not yet opened."""

    name: str
    paths: list[Path]
    root: Path | None = None  # its files must stay inside (resolved); None: anywhere

    @property
    def kind(self) -> type[Source]:
        return _BY_SUFFIX[self.paths[0].suffix.lower()]

    def open(self, cache_dir: Path) -> Source:
        if self.root is not None:  # a link re-pointed since discovery
            for path in self.paths:
                if not _stays_inside(path, self.root):
                    raise ValueError(f"{path} now links out of the served folder {self.root} "
                                     "(tether serve --follow-symlinks serves such links)")
        return self.kind(self.name, self.paths, cache_dir)


def supported(path: Path) -> bool:
    return path.suffix.lower() in _BY_SUFFIX


def _stays_inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve(strict=True).is_relative_to(root)
    except (OSError, RuntimeError):  # a dangling link, a loop
        return False


def discover(path: Path, follow_symlinks: bool = False) -> list[Found]:
    """The datasets under `path`.

    A file is one dataset named by its stem. A folder whose files are all
    Parquet parts, or all .npy columns, is one dataset named by the folder.
    Any other folder holds one dataset per supported file, and its
    subfolders are searched the same way. Links leading out of `path` are
    skipped (with a warning) unless `follow_symlinks`.
    """
    if path.is_file():
        if not supported(path):
            known = ", ".join(sorted(_BY_SUFFIX))
            raise ValueError(f"{path}: unsupported file type; serve one of: {known}")
        return [Found(path.stem, [path])]
    root = None if follow_symlinks else path.resolve()
    return _discover(path, root, set())


def _discover(path: Path, root: Path | None, seen: set[Path]) -> list[Found]:
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
    files = [p for p in entries if p.is_file() and supported(p)]
    kinds = {_BY_SUFFIX[p.suffix.lower()] for p in files}
    if len(kinds) == 1 and kinds <= set(_GROUPED):
        return [Found(path.name, files, root)]
    found = [Found(p.stem, [p], root) for p in files]
    for sub in (p for p in entries if p.is_dir() and not p.name.startswith(".")):
        found.extend(_discover(sub, root, seen))
    return found


__all__ = ["Column", "Found", "Source", "discover", "supported"]
