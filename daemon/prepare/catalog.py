"""The datasets a daemon serves, by name, opened from the paths it was given.

A dataset that fails to open (a corrupt file, mismatched columns) is kept
with its error, so that asking for it says what is wrong while the rest are
served. A dataset whose files change on disk is reopened on its next use.
The paths are searched again (at most once a second) when a listing is asked
for or an unknown name is opened, so files added while the daemon runs are
served without a restart.

An image folder is one path here (the folder): checking it on every use is
one stat of each of its folders (the source's `outdated`), not of its
100,000 files; a file changed in place is caught by the per-shard check of
the rows read (`Source.unchanged`), which marks the source to be reopened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.wire.errors import DatasetError, DatasetNotFound
from tether.wire.v1 import tether_pb2 as pb

from ..sources import Found, Source, discover
from ..sources.base import fingerprint
from ..sources.images import MANIFEST_SUFFIXES
from .preparation import Preparation, derive
from .transforms import Preparing

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    found: Found
    source: Source | None = None
    error: str = ""
    opened_fingerprint: str = ""
    preparing: threading.Event | None = None  # set when its background snapshot is done


# How often the served paths may be searched again for new datasets.
RESCAN_SECONDS = 1.0
# How long asking for a dataset being prepared waits for it (under the
# loader's 30 s call timeout) before answering that it is not ready yet.
PREPARING_WAIT_SECONDS = 20.0


class Catalog:
    def __init__(self, paths: Sequence[Path | str], cache_dir: Path,
                 follow_symlinks: bool = False, images_column: str | None = None,
                 preparation: Preparation | None = None) -> None:
        self._cache_dir = cache_dir
        self._paths = [p for p in paths if not isinstance(p, str)]
        self._databases = [p for p in paths if isinstance(p, str)]  # database servers' URLs
        self.preparation = preparation or Preparation()
        self._follow_symlinks = follow_symlinks
        self._images_column = images_column
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._scanned = 0.0
        self._entries: dict[str, _Entry] = {}
        self.left_out: list[str] = []  # files no dataset serves, each "path: why"
        for path in self._paths:
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist")
        if images_column is not None and not any(
                p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES for p in paths):
            raise ValueError(f"--images {images_column} names the image column of a CSV or "
                             "Parquet file given on the command line (tether serve labels.csv "
                             "--images path), and none was given; an image folder needs no "
                             "--images")
        self._scan(strict=True)
        if not self._entries:
            seen = "; ".join(self.left_out[:10]) or "no files"
            raise ValueError(f"no dataset found in {', '.join(map(_shown, paths))}: {seen}")

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir

    def found(self) -> list[Found]:
        """The datasets that opened, as found (what a loader's query may read)."""
        self.refresh()
        return [entry.found for entry in self._entries.values() if entry.source is not None]

    def _scan(self, strict: bool = False) -> None:
        """Add the datasets the paths hold now (a folder's new parts reopen it).
        Two datasets of one name are an error at start (`strict`); found later,
        the newcomer is skipped with a warning."""
        seen: dict[str, Found] = {}
        left_out: list[str] = []
        on_disk = [found for path in self._paths
                   for found in discover(path, self._follow_symlinks, self._images_column,
                                         left_out)]
        for line in sorted(set(left_out) - set(self.left_out)):
            log.warning("not serving %s", line)
        self.left_out = left_out
        for found in derive(on_disk, self._databases, self.preparation):
            entry = self._entries.get(found.name)
            first = seen.get(found.name) or (entry.found if entry else None)
            if found.name in seen or (first is not None and _home(first) != _home(found)):
                message = (f"two datasets are named {found.name!r}: {_where(first)} and "
                           f"{_where(found)}; rename one, or serve them from separate folders")
                if strict:
                    raise ValueError(message)
                log.warning("%s (serving the first)", message)
                continue
            seen[found.name] = found
            if entry is None:
                if not strict:
                    log.info("new dataset %s in %s", found.name, _where(found))
                self._entries[found.name] = entry = _Entry(found)
                self._open(entry)
            elif entry.found != found:  # parts added to or gone from a folder
                log.info("the files of %s changed; reopening", found.name)
                with self._lock:
                    entry.found = found
                    self._open(entry)
        self._scanned = time.monotonic()

    def refresh(self) -> None:
        """Search the paths again for new datasets, at most once a second."""
        with self._scan_lock:
            if time.monotonic() - self._scanned < RESCAN_SECONDS:
                return
            try:
                self._scan()
            except OSError as exc:  # a served folder vanished: keep serving the rest
                log.warning("cannot search the served paths again: %s", exc)
                self._scanned = time.monotonic()

    def _open(self, entry: _Entry) -> None:
        name = entry.found.name
        try:
            entry.opened_fingerprint = fingerprint(entry.found.paths)
            entry.preparing = None
            entry.source = entry.found.open(self._cache_dir)
            entry.error = ""
            log.info("serving %s: %s, %d rows, columns %s", name, entry.source.format,
                     entry.source.num_rows, ", ".join(entry.source.columns))
        except Preparing as exc:  # a transform's snapshot: opened again once made
            entry.source, entry.error, entry.preparing = None, str(exc), exc.done
            log.info("%s: %s", name, exc)
        except Exception as exc:  # any failure to open one dataset spares the others
            entry.source = None
            entry.error = f"{type(exc).__name__}: {exc}"
            log.warning("cannot serve %s (%s): %s", name, _where(entry.found), entry.error)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str, wait: float = PREPARING_WAIT_SECONDS) -> Source:
        entry = self._entries.get(name)
        if entry is None:
            self.refresh()
            entry = self._entries.get(name)
        if entry is None:
            raise DatasetNotFound(f"dataset {name!r} not found; served: {', '.join(self.names)} "
                                  "(files added to the served paths are found within a second)")
        with self._lock:
            try:
                changed = (fingerprint(entry.found.paths) != entry.opened_fingerprint
                           or (entry.source is not None and entry.source.outdated()))
            except OSError as exc:
                raise DatasetError(f"dataset {name!r}: its files are gone: {exc}") from None
            if changed:
                log.info("files of %s changed on disk; reopening", name)
                self._open(entry)
            elif entry.preparing is not None and entry.preparing.is_set():
                self._open(entry)  # its snapshot is made (or failed)
        preparing = entry.preparing
        if entry.source is None and preparing is not None:
            if wait > 0 and preparing.wait(wait):
                return self.get(name, wait=0)
            raise DatasetError(f"dataset {name!r} is not ready yet ({entry.error}); try again "
                               "when `tether ls` lists its columns")
        if entry.source is None:
            raise DatasetError(
                f"dataset {name!r} cannot be served: {entry.error} "
                f"(from: {_where(entry.found)}); the other datasets are unaffected"
            )
        return entry.source

    def info(self, name: str) -> pb.DatasetInfo:
        try:
            source = self.get(name, wait=0)  # a listing shows one being prepared as such
        except DatasetError:
            entry = self._entries[name]
            return pb.DatasetInfo(name=name, format=entry.found.kind.format, error=entry.error)
        return pb.DatasetInfo(
            name=name,
            format=source.format,
            num_rows=source.num_rows,
            columns=[c.to_proto() for c in source.columns.values()],
            fingerprint=source.fingerprint,
            # An image folder's: its classes, images in each, files not served.
            classes=source.classes,
            class_counts=source.class_counts,
            skipped=source.skipped,
            snapshot_time=source.snapshot_time,
            left_out=[f"{column!r}: {why}" for column, why in source.left_out.items()],
        )

    def infos(self) -> list[pb.DatasetInfo]:
        self.refresh()
        return [self.info(name) for name in self.names]


def _shown(path: Path | str) -> str:
    """A served path, or a database's URL without its password."""
    if isinstance(path, str):
        from ..sources.postgres import redact

        return redact(path)
    return str(path)


def _where(found: Found) -> str:
    """Where a dataset comes from, for messages: its first file, or what derives it."""
    return str(found.paths[0]) if found.paths else found.origin


def _home(found: Found) -> str:
    """Datasets of one name from one home are versions of each other, not a clash."""
    return found.origin or str(found.paths[0].parent)  # (a query's files may change)
