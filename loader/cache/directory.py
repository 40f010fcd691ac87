"""The directories of the loader's disk cache: one per kind of rows, under one root.

Each is checked to be a real directory of this user's (never a symlink
someone planted in a shared root), locked for one loader at a time, and
its files are reserved on disk in full when made, so that a full disk is a
clear error at open rather than a SIGBUS when a memory-mapped page is first
written. Its record (meta.json) counts only once closed cleanly. Across
directories the root stays within the limit: other versions of the same
rows go first, then the least recently used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np

from ..wire.errors import TetherError
from ..wire.portable import is_real_dir, owned_by_me, reserve_space, try_lock

log = logging.getLogger(__name__)

_META = "meta.json"
_LOCK = "lock"
# Besides the reserved files: the record, the lock, and the file system's rounding.
OVERHEAD_BYTES = 64 << 10
# Left free on the disk whatever the limit says.
DISK_MARGIN_BYTES = 64 << 20


class CacheError(TetherError):
    """The cache directory cannot be used (in use, not ours, no room on disk)."""


def _ours(path: Path) -> bool:
    """A real directory (not a link) that belongs to this user."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return is_real_dir(info) and owned_by_me(info)


def _record(path: Path) -> dict:
    try:
        return json.loads((path / _META).read_text())
    except (OSError, ValueError):
        return {}


class CacheDirectory:
    def __init__(self, root: Path, key: str) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.path = root / key
            if not self.path.exists() and not self.path.is_symlink():
                self.path.mkdir(mode=0o700)
        except OSError as exc:
            raise CacheError(f"cannot make the cache directory {root / key}: {exc}") from None
        if not _ours(self.path):
            raise CacheError(f"{self.path} is not a directory of this user's (a link, or "
                             "someone else's); remove it or choose another cache directory")
        self._lock = self._take_lock()

    def _take_lock(self):
        handle = open(self.path / _LOCK, "w")  # noqa: SIM115 (held until close)
        if not try_lock(handle.fileno()):
            handle.close()
            raise CacheError(f"the cache {self.path} is in use by another loader of the same "
                             "data; give each loader its own cache directory") from None
        return handle

    def record(self) -> dict:
        return _record(self.path)

    def write_record(self, record: dict) -> None:
        path = self.path / _META
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)

    def wipe(self) -> None:
        for path in self.path.iterdir():
            if path.name != _LOCK:
                path.unlink()

    def make_room(self, name: str, wanted: int, limit: int) -> int:
        """Delete other directories until `wanted` bytes fit under `limit` with theirs:
        other versions of `name` always, then the least recently used. Returns the
        bytes this directory may take, also bounded by the disk's free space."""
        root = self.path.parent
        records = {path: _record(path) for path in root.iterdir()
                   if path != self.path and _ours(path) and (path / _META).exists()}
        order = sorted(records, key=lambda path: (records[path].get("name") != name,
                                                  (path / _META).stat().st_mtime))

        def taken() -> int:
            return sum(int(record.get("bytes", 0)) for record in records.values())

        for path in order:
            if records[path].get("name") != name and taken() + wanted <= limit:
                break
            if _delete_unless_locked(path):
                del records[path]
        free = shutil.disk_usage(root).free - DISK_MARGIN_BYTES
        return max(0, min(limit - taken(), free))

    def reserve(self, name: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A new .npy file of `shape`, memory-mapped, its blocks allocated now."""
        path = self.path / name
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype=dtype)
        array = None
        try:  # (Windows allocates, and so may fail, in open_memmap already)
            array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            with open(path, "r+b", buffering=0) as handle:
                reserve_space(handle.fileno(), array.offset, os.fstat(handle.fileno()).st_size)
        except OSError as exc:
            array = None  # unmapped first: Windows deletes no mapped file
            path.unlink(missing_ok=True)
            raise CacheError(f"no room for the cache in {self.path} ({exc.strerror}); free "
                             "some disk space or lower cache_limit") from None
        return array

    def open(self, name: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A file reserve() made, memory-mapped again."""
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype=dtype)
        path = self.path / name
        array = np.load(path, mmap_mode="r+")
        if array.dtype != np.dtype(dtype) or array.shape != shape:
            raise CacheError(f"cache file {path} holds {array.dtype} {array.shape}, expected "
                             f"{np.dtype(dtype)} {shape}; delete the cache directory")
        return array

    def close(self) -> None:
        self._lock.close()


def _delete_unless_locked(path: Path) -> bool:
    """Remove another loader's cache directory unless one holds it; whether its
    space is free. The record goes first, so a directory removed in part is
    never taken for a whole cache."""
    try:
        with open(path / _LOCK, "a") as handle:
            if not try_lock(handle.fileno()):
                return False
            (path / _META).unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True)  # (on Windows all but the open lock file)
    except OSError:  # gone meanwhile
        return False
    with contextlib.suppress(OSError):  # Windows: the lock file it kept, now closed
        if [entry.name for entry in path.iterdir()] == [_LOCK]:
            shutil.rmtree(path, ignore_errors=True)
    return not (path / _META).exists()
