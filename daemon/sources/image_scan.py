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

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
CLASSES = "classes"
FLAT = "flat"


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
