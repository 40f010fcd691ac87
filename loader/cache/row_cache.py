"""Rows kept on the remote side's disk, so later epochs need not cross the link.

One directory per (dataset version, what is delivered of it), under the
cache root (cache_directory.py keeps those safe and within the limit). Each
column is one memory-mapped file of fixed-size slots; a map from dataset
row to slot says which rows are here. Slots hold rows as delivered
(decoded, at their full width): the global shuffle reads single rows in a
new order every epoch, and a compressed block would have to be
decompressed whole for every row taken from it.

When the slots are full, the least recently used rows give theirs up, a
sixteenth of the cache at a time (so that finding them, a pass over the use
stamps, is rare). Rows a shard in flight still counts on are pinned, and
rows being written are not written twice. A directory is only trusted if it
was closed cleanly: a process killed while writing leaves one that the
next loader wipes.

Each slot keeps a checksum of its row (`row_sums`), checked when the row is
looked up: a row changed on disk since it was stored (another program, a
bad disk) is dropped, with a warning, and fetched again, never delivered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .directory import OVERHEAD_BYTES, CacheDirectory, CacheError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CACHE_LIMIT", "CacheError", "ColumnSpec", "RowCache", "cache_key"]

_ROW_SLOTS = "row_slots.npy"
_STAMPS = "stamps.npy"
_SUMS = "sums.npy"
_SUM_BYTES = 8  # a slot's checksum
SUMS_VERSION = 1  # a directory's record says which checksums its slots hold
_FREE = np.int32(-1)
_POISONED = -2  # a slot's owner while its changed bytes wait for their last pin to go
_STAMP_BYTES = 8  # a slot's last use
_SLOT_INDEX_BYTES = 4  # a dataset row's slot
DEFAULT_CACHE_LIMIT = "10GB"


class ColumnSpec:
    """A cached column: its name, dtype and the shape of one row."""

    def __init__(self, name: str, dtype: str, shape: Sequence[int]) -> None:
        self.name, self.dtype, self.shape = name, np.dtype(dtype), tuple(int(n) for n in shape)
        self.row_bytes = math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> list:
        return [self.name, self.dtype.str, list(self.shape)]


def cache_key(identity: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


class RowCache:
    """`identity` says what the rows are (dataset, version, columns, ...);
    `name` what they are of, so that a new version replaces the old one."""

    def __init__(self, root: str | os.PathLike, limit: int, name: str,
                 identity: Mapping[str, object], columns: Sequence[ColumnSpec],
                 num_rows: int) -> None:
        self.columns = list(columns)
        self.num_rows = num_rows
        key = cache_key({**identity, "columns": [c.describe() for c in self.columns]})
        self._directory = CacheDirectory(Path(root).expanduser(), key)
        self.directory = self._directory.path
        self.hits = self.misses = 0  # rows served from here, rows that had to come
        self.dropped = 0  # rows found changed on disk, fetched again
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # no store under way
        self._storing = 0
        self._in_flight: list[np.ndarray] = []  # rows being written
        self._closed = False
        try:
            self._open(limit, name)
        except BaseException:
            self._directory.close()
            raise

    def _open(self, limit: int, name: str) -> None:
        record = self._directory.record()
        trusted = record.get("clean") and record.get("num_rows") == self.num_rows and \
            record.get("limit") == limit and record.get("sums") == SUMS_VERSION
        if record and not trusted:
            log.info("cache %s was not closed cleanly, or its limit changed; starting it "
                     "afresh", self.directory)
        if not trusted:
            self._directory.wipe()
            record = {"name": name, "num_rows": self.num_rows, "limit": limit,
                      "sums": SUMS_VERSION, **self._plan_capacity(limit, name)}
        self.capacity = int(record["capacity"])
        self._record = {**record, "clean": False}
        self._directory.write_record(self._record)  # until close: a crash leaves it untrusted
        files = self._directory.open if trusted else self._directory.reserve
        self._slots = {c.name: files(f"column{i}.npy", c.dtype, (self.capacity, *c.shape))
                       for i, c in enumerate(self.columns)}
        self._stamps = files(_STAMPS, np.int64, (self.capacity,))
        self._sums = files(_SUMS, np.uint64, (self.capacity,))
        if self.capacity:
            self._row_slots = files(_ROW_SLOTS, np.int32, (self.num_rows,))
            if not trusted:
                self._row_slots[:] = _FREE
        else:  # nothing can be kept: no index either, whatever the rows
            self._row_slots = np.broadcast_to(_FREE, (self.num_rows,))
        self._owner = np.full(self.capacity, -1, dtype=np.int64)  # slot -> row
        held = np.flatnonzero(self._row_slots >= 0)
        self._owner[self._row_slots[held]] = held
        self._free = list(np.flatnonzero(self._owner < 0)[::-1])  # popped from the end
        self._clock = int(self._stamps.max(initial=0))
        self._pins = np.zeros(self.capacity, dtype=np.int32)

    def _plan_capacity(self, limit: int, name: str) -> dict[str, int]:
        """How many rows fit: each takes its columns' bytes and a stamp, and the
        index takes 4 bytes a dataset row (none at all when no row fits)."""
        slot_bytes = sum(c.row_bytes for c in self.columns) + _STAMP_BYTES + _SUM_BYTES
        index_bytes = self.num_rows * _SLOT_INDEX_BYTES
        wanted = self.num_rows * slot_bytes + index_bytes + OVERHEAD_BYTES
        room = self._directory.make_room(name, min(wanted, limit), limit)
        capacity = max(0, min(self.num_rows,
                              (room - index_bytes - OVERHEAD_BYTES) // max(slot_bytes, 1)))
        if capacity == 0:
            log.warning("cache %s: no row fits in %d bytes (the index alone takes %d); "
                        "raise cache_limit", self.directory, room, index_bytes)
            return {"capacity": 0, "bytes": 0}
        return {"capacity": int(capacity), "bytes": int(capacity * slot_bytes + index_bytes)}

    # -- rows ---------------------------------------------------------------

    def pin(self, rows: np.ndarray) -> np.ndarray:
        """The slot of each row (-1 where it is not here, or changed on disk
        since stored); those found stay until `unpin`, whatever else arrives
        meanwhile."""
        with self._lock:
            slots = self._row_slots[rows].astype(np.int64)
            found = slots[slots >= 0]
            np.add.at(self._pins, found, 1)
            self._clock += 1
            self._stamps[found] = self._clock
        changed = found[row_sums([c[found] for c in self._slots.values()]) != self._sums[found]]
        if len(changed):
            self._drop(changed)
            slots[np.isin(slots, changed)] = -1
        return slots

    def _drop(self, slots: np.ndarray) -> None:
        """Slots whose bytes changed on disk (each pinned here once per time it
        was found): their rows forgotten now; a slot is free again once no
        shard pins it (another may have found it before the change)."""
        if not self.dropped:  # once; close() says how many in all
            log.warning("cache %s: rows changed on disk since they were stored (another "
                        "program, or the disk); fetching them again", self.directory)
        with self._lock:
            np.subtract.at(self._pins, slots, 1)
            slots = np.unique(slots)
            mine = slots[self._owner[slots] >= 0]  # (another pin may have dropped it)
            self._row_slots[self._owner[mine]] = _FREE
            self._owner[mine] = _POISONED
            self.dropped += len(mine)
            self._free_unpinned_poisoned(slots)

    def _free_unpinned_poisoned(self, slots: np.ndarray) -> None:
        """(Under the lock.) Of `slots`, the poisoned ones no shard pins: free."""
        done = slots[(self._owner[slots] == _POISONED) & (self._pins[slots] == 0)]
        self._owner[done] = -1
        self._free.extend(done.tolist())

    def unpin(self, slots: np.ndarray) -> None:
        with self._lock:
            held = slots[slots >= 0]
            np.subtract.at(self._pins, held, 1)
            self._free_unpinned_poisoned(held)

    def read(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """The rows in `slots` (pinned, all present), column by column."""
        self.hits += len(slots)
        return {name: column[slots] for name, column in self._slots.items()}

    def store(self, rows: np.ndarray, data: Mapping[str, np.ndarray]) -> None:
        """Keep rows that arrived (those here, being written, or without room are left)."""
        self.misses += len(rows)
        with self._lock:
            if self._closed:
                return
            new = self._row_slots[rows] < 0
            if self._in_flight:
                new &= ~np.isin(rows, np.concatenate(self._in_flight))
            rows = rows[new]
            slots = self._take_slots(len(rows)) if len(rows) else np.zeros(0, np.int64)
            if not len(slots):
                return
            rows, picked = rows[:len(slots)], np.flatnonzero(new)[:len(slots)]
            self._in_flight.append(rows)
            self._storing += 1
        try:
            whole = len(picked) == len(new)  # every row new, and room for all: no gather
            kept = [data[name] if whole else data[name][picked] for name in self._slots]
            for column, values in zip(self._slots.values(), kept, strict=True):
                column[slots] = values
            self._sums[slots] = row_sums(kept)
        finally:
            with self._lock:  # only now do the rows count as here
                self._owner[slots] = rows
                self._row_slots[rows] = slots
                self._clock += 1
                self._stamps[slots] = self._clock
                self._in_flight = [r for r in self._in_flight if r is not rows]
                self._storing -= 1
                self._idle.notify_all()

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
                "cache_rows_held": self.rows_held, "cache_capacity_rows": self.capacity,
                "cache_rows_changed": self.dropped}

    def close(self) -> None:
        """Wait for stores under way, flush, and mark the directory clean (trusted
        by the next loader). Stores after this keep nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while self._storing:
                self._idle.wait()
            for array in (*self._slots.values(), self._row_slots, self._stamps, self._sums):
                if isinstance(array, np.memmap):
                    array.flush()
            self._directory.write_record({**self._record, "clean": True})
        self._directory.close()
        if self.dropped:
            log.warning("cache %s: %d rows had changed on disk and were fetched again",
                        self.directory, self.dropped)


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: a changed word always changes its term


def row_sums(columns: Sequence[np.ndarray]) -> np.ndarray:
    """A 64-bit checksum of each row across `columns` (rows first): each
    column's bytes as 64-bit words, weighted by position with odd weights
    and summed, modulo 2**64. Any one word changed changes it; more than one,
    all but surely. Vectorized: a pass over the rows' bytes."""
    count = len(columns[0]) if columns else 0
    total = np.zeros(count, dtype=np.uint64)
    if not count:
        return total
    for column in columns:
        raw = np.ascontiguousarray(column).reshape(count, -1).view(np.uint8)
        width = -(-raw.shape[1] // 8) * 8
        if width != raw.shape[1]:  # whole words: pad the row with zeros
            padded = np.zeros((count, width), dtype=np.uint8)
            padded[:, :raw.shape[1]] = raw
            raw = padded
        words = raw.view(np.uint64)
        weights = (np.arange(words.shape[1], dtype=np.uint64) * np.uint64(2) + np.uint64(1)) \
            * _MIX
        # (wraps: modulo 2**64; a matrix product is 2-3x the multiply-and-sum
        # on wide rows, and much slower on rows of a word or a few)
        weighted = words @ weights if words.shape[1] > 4 else \
            (words * weights).sum(axis=1, dtype=np.uint64)
        total = total * np.uint64(1_000_003) + weighted
    return total
