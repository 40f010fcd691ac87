"""Rows kept on the remote side's disk, so later epochs need not cross the link.

One directory per (dataset version, what is delivered of it), under the
cache root. Each column is one memory-mapped file of fixed-size slots; a map
from dataset row to slot says which rows are here. Slots hold rows as
delivered (decoded, at their full width): the global shuffle reads single
rows in a new order every epoch, and a compressed block would have to be
decompressed whole for every row taken from it.

When the slots are full, the least recently used rows give theirs up, a
sixteenth of the cache at a time (so that finding them, a pass over the use
stamps, is rare). Rows a shard in flight still counts on are pinned. A
directory is only trusted if it was closed cleanly: a process killed while
writing leaves one that the next loader wipes. Across directories, the
least recently used are deleted to keep the whole cache within its limit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .wire.errors import TetherError

log = logging.getLogger(__name__)

_META = "meta.json"
_LOCK = "lock"
_ROW_SLOTS = "row_slots.npy"
_STAMPS = "stamps.npy"
_FREE = np.int32(-1)
DEFAULT_CACHE_LIMIT = "10GB"


class CacheError(TetherError):
    """The cache directory cannot be used (in use, unwritable)."""


class ColumnSpec:
    """A cached column: its name, dtype and the shape of one row."""

    def __init__(self, name: str, dtype: str, shape: Sequence[int]) -> None:
        self.name, self.dtype, self.shape = name, np.dtype(dtype), tuple(int(n) for n in shape)
        self.row_bytes = math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> list:
        return [self.name, self.dtype.str, list(self.shape)]


def cache_key(identity: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.iterdir() if f.is_file())


class RowCache:
    """`identity` says what the rows are (dataset, version, columns, ...);
    `name` what they are of, so that a new version replaces the old one."""

    def __init__(self, root: str | os.PathLike, limit: int, name: str,
                 identity: Mapping[str, object], columns: Sequence[ColumnSpec],
                 num_rows: int) -> None:
        self.root = Path(root).expanduser()
        self.columns = list(columns)
        self.num_rows = num_rows
        row_bytes = sum(c.row_bytes for c in self.columns)
        self.directory = self.root / cache_key({**identity, "columns":
                                                [c.describe() for c in self.columns]})
        self.hits = self.misses = 0  # rows served from here, rows that had to come
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_lock()
        meta = self._read_meta()
        fresh = meta is None
        if fresh:
            self._wipe()
            capacity = self._room_for(min(num_rows, max(limit // max(row_bytes, 1), 0)),
                                      row_bytes, limit, name)
            meta = {"name": name, "capacity": capacity, "num_rows": num_rows}
        self.capacity = int(meta["capacity"])
        self._meta = {**meta, "clean": False}
        self._write_meta()  # until close: a crash mid-write leaves it untrusted
        self._slots = {c.name: self._mapped(f"column{i}.npy", c.dtype, (self.capacity, *c.shape))
                       for i, c in enumerate(self.columns)}
        self._row_slots = self._mapped(_ROW_SLOTS, np.int32, (num_rows,))
        if fresh:
            self._row_slots[:] = _FREE
        self._owner = np.full(self.capacity, -1, dtype=np.int64)  # slot -> row
        held = np.flatnonzero(self._row_slots >= 0)
        self._owner[self._row_slots[held]] = held
        self._free = list(np.flatnonzero(self._owner < 0)[::-1])  # popped from the end
        stamps = self.directory / _STAMPS
        self._stamps = np.load(stamps) if stamps.exists() and not fresh \
            else np.zeros(self.capacity, dtype=np.int64)
        self._clock = int(self._stamps.max(initial=0))
        self._pins = np.zeros(self.capacity, dtype=np.int32)
        self._closed = False

    # -- the directory ------------------------------------------------------

    def _take_lock(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / _LOCK, "w")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise CacheError(f"the cache {self.directory} is in use by another loader of "
                             "the same data; give each loader its own cache directory") from None
        return handle

    def _read_meta(self) -> dict | None:
        """The directory's record, if it was closed cleanly and is what we want."""
        try:
            meta = json.loads((self.directory / _META).read_text())
        except (OSError, ValueError):
            return None
        if not meta.get("clean") or meta.get("num_rows") != self.num_rows:
            log.warning("cache %s was not closed cleanly; starting it afresh", self.directory)
            return None
        return meta

    def _write_meta(self) -> None:
        path = self.directory / _META
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._meta))
        os.replace(temporary, path)

    def _wipe(self) -> None:
        for path in self.directory.iterdir():
            if path.name != _LOCK:
                path.unlink()

    def _room_for(self, rows: int, row_bytes: int, limit: int, name: str) -> int:
        """Make room under `limit` for `rows` rows here, and return how many fit.
        Other versions of the same data go first (a changed dataset invalidates
        them), then the least recently used other directories."""
        others = []
        for path in self.root.iterdir():
            if path != self.directory and (path / _META).exists():
                others.append((_meta_name(path) != name, (path / _META).stat().st_mtime, path))
        index_bytes = self.num_rows * np.dtype(np.int32).itemsize

        def used() -> int:
            return sum(_directory_bytes(path) for _, _, path in others if path.exists())

        for other_data, _, path in sorted(others):
            if other_data and used() + rows * row_bytes + index_bytes <= limit:
                break
            _delete_unless_locked(path)
        room = max(0, limit - used() - index_bytes)
        return int(min(rows, room // max(row_bytes, 1)))

    def _mapped(self, name: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
        path = self.directory / name
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype=dtype)
        mode = "r+" if path.exists() else "w+"
        return np.lib.format.open_memmap(path, mode=mode, dtype=dtype, shape=shape) \
            if mode == "w+" else _open_existing(path, dtype, shape)

    # -- rows ---------------------------------------------------------------

    def pin(self, rows: np.ndarray) -> np.ndarray:
        """The slot of each row (-1 where it is not here); those found stay
        until `unpin`, whatever else arrives meanwhile."""
        with self._lock:
            slots = self._row_slots[rows].astype(np.int64)
            found = slots[slots >= 0]
            np.add.at(self._pins, found, 1)
            self._clock += 1
            self._stamps[found] = self._clock
        return slots

    def unpin(self, slots: np.ndarray) -> None:
        with self._lock:
            np.subtract.at(self._pins, slots[slots >= 0], 1)

    def read(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The rows in `slots` (pinned, all present), column by column."""
        self.hits += len(slots)
        return {name: column[slots] for name, column in self._slots.items()}

    def store(self, rows: np.ndarray, data: Mapping[str, np.ndarray]) -> None:
        """Keep rows that arrived (those already here, or without room, are left)."""
        self.misses += len(rows)
        with self._lock:
            new = self._row_slots[rows] < 0
            rows = rows[new]
            if not len(rows):
                return
            slots = self._take_slots(len(rows))
            rows, picked = rows[:len(slots)], np.flatnonzero(new)[:len(slots)]
        whole = len(picked) == len(new)  # every row new, and room for all: no gather
        for name, column in self._slots.items():
            column[slots] = data[name] if whole else data[name][picked]
        with self._lock:  # only now do the rows count as here
            if self._closed:
                return
            self._owner[slots] = rows
            self._row_slots[rows] = slots
            self._clock += 1
            self._stamps[slots] = self._clock

    def _take_slots(self, count: int) -> np.ndarray:
        if len(self._free) < count:
            self._evict(count - len(self._free))
        taken = self._free[-count:] if count <= len(self._free) else self._free[:]
        del self._free[len(self._free) - len(taken):]
        return np.asarray(taken, dtype=np.int64)

    def _evict(self, needed: int) -> None:
        """Free the least recently used unpinned slots: at least `needed`, and a
        sixteenth of the cache, so that this pass over the stamps is rare."""
        candidates = np.flatnonzero((self._owner >= 0) & (self._pins == 0))
        count = min(len(candidates), max(needed, self.capacity // 16))
        if not count:
            return
        oldest = candidates[np.argpartition(self._stamps[candidates], count - 1)[:count]]
        self._row_slots[self._owner[oldest]] = _FREE
        self._owner[oldest] = -1
        self._free.extend(oldest.tolist())

    @property
    def rows_held(self) -> int:
        return self.capacity - len(self._free)

    def figures(self) -> dict[str, int]:
        """For loader.stats(): rows read from here, rows that had to come, rows kept."""
        return {"cache_rows_read": self.hits, "cache_rows_fetched": self.misses,
                "cache_rows_held": self.rows_held, "cache_capacity_rows": self.capacity}

    def close(self) -> None:
        """Flush and mark the directory clean (trusted by the next loader)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for column in (*self._slots.values(), self._row_slots):
                if isinstance(column, np.memmap):
                    column.flush()
            np.save(self.directory / _STAMPS, self._stamps)
            self._meta["clean"] = True
            self._write_meta()
        self._lock_file.close()


def _open_existing(path: Path, dtype, shape: tuple[int, ...]) -> np.ndarray:
    array = np.load(path, mmap_mode="r+")
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise CacheError(f"cache file {path} holds {array.dtype} {array.shape}, expected "
                         f"{np.dtype(dtype)} {shape}; delete the cache directory")
    return array


def _meta_name(path: Path) -> str | None:
    try:
        return json.loads((path / _META).read_text()).get("name")
    except (OSError, ValueError):
        return None


def _delete_unless_locked(path: Path) -> bool:
    try:
        with open(path / _LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path)
            return True
    except (BlockingIOError, FileNotFoundError):
        return False
