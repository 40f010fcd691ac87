"""Data sources by file suffix. Adding a format is one file and one line below.

`discover(path)` says which datasets a path given to `tether serve` holds;
`Found.open(cache_dir)` builds the Source of one.
"""

from __future__ import annotations

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

# Formats whose files in one folder make one dataset (parts, or columns).
_GROUPED = (ParquetSource, NpySource)


@dataclass
class Found:
    """A dataset found on disk, not yet opened."""

    name: str
    paths: list[Path]

    @property
    def kind(self) -> type[Source]:
        return _BY_SUFFIX[self.paths[0].suffix.lower()]

    def open(self, cache_dir: Path) -> Source:
        return self.kind(self.name, self.paths, cache_dir)


def supported(path: Path) -> bool:
    return path.suffix.lower() in _BY_SUFFIX


def discover(path: Path) -> list[Found]:
    """The datasets under `path`.

    A file is one dataset named by its stem. A folder whose files are all
    Parquet parts, or all .npy columns, is one dataset named by the folder.
    Any other folder holds one dataset per supported file, and its
    subfolders are searched the same way.
    """
    if path.is_file():
        if not supported(path):
            known = ", ".join(sorted(_BY_SUFFIX))
            raise ValueError(f"{path}: unsupported file type; serve one of: {known}")
        return [Found(path.stem, [path])]
    files = sorted(p for p in path.iterdir() if p.is_file() and supported(p))
    kinds = {_BY_SUFFIX[p.suffix.lower()] for p in files}
    if len(kinds) == 1 and kinds <= set(_GROUPED):
        return [Found(path.name, files)]
    found = [Found(p.stem, [p]) for p in files]
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found.extend(discover(sub))
    return found


__all__ = ["Column", "Found", "Source", "discover", "supported"]
