"""The plan's shards with a disk cache in front of the stream (Loader(cache=...)).

The loader computes each shard's rows itself (the plan is a pure function of
the dataset's version, seed and epoch), looks them up in its RowCache, and
names to the daemon, ahead by the window, the shards it lacks rows of and
which rows it has. A shard whose rows are all here never touches the
network (nor needs the daemon to be up); the others arrive with only the
missing rows, which are merged back in order and kept for later epochs.
The shards come out exactly as without the cache.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from threading import Lock

import numpy as np

from ..pipeline.decoder import Decoder, Shard
from ..pipeline.resumable import ResumableStream
from ..wire.errors import DatasetError, ProtocolError
from ..wire.plan import Cursor, HostPlan
from ..wire.ragged import IMAGE
from ..wire.v1 import tether_pb2 as pb
from .row_cache import ColumnSpec, RowCache


@dataclass
class _Planned:
    cursor: Cursor
    rows: np.ndarray  # dataset rows, in delivery order
    slots: np.ndarray  # their cache slots (-1: not here), pinned until merged or read
    have: np.ndarray  # rows here
    read: Future[Shard] | None = None  # a whole shard's rows, being read from disk

    @property
    def whole(self) -> bool:
        return bool(self.have.all())


def cached_columns(plan: pb.StreamPlan, image_size: tuple[int, int] | None) -> list[ColumnSpec]:
    """What the cache keeps of each column: fixed-shape rows only."""
    variable = [c.name for c in plan.columns
                if c.kind and not (c.kind == IMAGE and image_size is not None)]
    if variable:
        raise DatasetError(f"columns {variable} vary in length: cache= keeps fixed-shape "
                           "columns only (images with image_size=...); pass columns=[...] "
                           "without them, or pad them on the daemon's side")
    return [ColumnSpec(c.name, c.dtype, c.shape) for c in plan.columns]


class CachedShards:
    def __init__(self, cache: RowCache, stream: ResumableStream, plan: HostPlan,
                 window: int) -> None:
        self.cache = cache
        self._stream = stream
        self._plan = plan
        self._window = window
        self._planned: dict[Cursor, _Planned] = {}  # wanted, not yet merged
        self._lock = Lock()
        self._decoder: Decoder | None = None
        self._orders = functools.lru_cache(maxsize=1)(plan.order)  # the epoch being planned
        # Whole shards are read from disk ahead, as the stream's are decoded ahead:
        # a step never waits on a read the window could have done before it.
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="tether-cache-read")

    def attach(self, decoder: Decoder) -> None:
        """The decoder of the stream's frames (built with `merge` as a step)."""
        self._decoder = decoder

    def merge(self, shard: Shard) -> Shard:
        """A streamed shard (its missing rows) made whole with the rows here;
        the new rows are kept. Runs in the decode threads."""
        cursor = Cursor(shard.epoch, shard.sequence)
        with self._lock:
            planned = self._planned.get(cursor)
        if planned is None:
            raise ProtocolError(f"the daemon sent shard {cursor.sequence} of epoch "
                                f"{cursor.epoch}, which was not asked for (a daemon older "
                                "than this loader ignores cache=: update it, or drop cache=)")
        missing = ~planned.have
        if shard.num_rows != int(missing.sum()):
            raise ProtocolError(f"shard {cursor.sequence} of epoch {cursor.epoch} has "
                                f"{shard.num_rows} rows; {int(missing.sum())} were asked for")
        self.cache.store(planned.rows[missing], shard.columns)
        with self._lock:  # stored: the next epoch may look its rows up
            del self._planned[cursor]
        if not planned.have.any():  # all of it came: nothing to merge
            self.cache.unpin(planned.slots)
            return shard
        here = self.cache.read(planned.slots[planned.have])
        self.cache.unpin(planned.slots)
        columns = {}
        for name, received in shard.columns.items():
            whole = np.empty((len(planned.rows), *received.shape[1:]), dtype=received.dtype)
            whole[missing] = received
            whole[planned.have] = here[name]
            columns[name] = whole
        return replace(shard, num_rows=len(planned.rows), columns=columns)

    def _may_plan(self, cursor: Cursor) -> bool:
        """Whether `cursor`'s rows can be looked up yet. Within an epoch every row
        comes once, so no shard needs rows still on their way; a new epoch waits
        for the last one's rows to be here, or it would ask for them again."""
        with self._lock:
            return all(wanted.epoch >= cursor.epoch for wanted in self._planned)

    def _plan_next(self, cursor: Cursor) -> _Planned:
        rows = self._plan.shard(cursor, self._orders(cursor.epoch))
        slots = self.cache.pin(rows)
        planned = _Planned(cursor, rows, slots, slots >= 0)
        if planned.whole:
            planned.read = self._readers.submit(self._from_disk, planned)
        else:
            with self._lock:
                self._planned[cursor] = planned
            packed = np.packbits(planned.have, bitorder="little").tobytes()
            self._stream.want(cursor, packed)
        return planned

    def _from_disk(self, planned: _Planned) -> Shard:
        columns = self.cache.read(planned.slots)
        self.cache.unpin(planned.slots)
        epoch, sequence = planned.cursor
        return Shard(epoch, sequence, len(planned.rows), columns,
                     sequence == self._plan.shards_in(epoch) - 1, streamed=False)

    def _read_back(self, planned: _Planned) -> Shard:
        """A whole shard from disk; the wait for it counts as the loader's."""
        started = time.perf_counter()
        shard = planned.read.result()
        waits = self._decoder.waits
        waits.loader += time.perf_counter() - started
        waits.raw_bytes += sum(column.nbytes for column in shard.columns.values())
        return shard

    def __iter__(self) -> Iterator[Shard]:
        cursors = self._plan.cursors()
        cursor = next(cursors, None)
        received = iter(self._decoder)
        ahead: deque[_Planned] = deque()
        while True:
            while cursor is not None and len(ahead) < self._window and self._may_plan(cursor):
                ahead.append(self._plan_next(cursor))
                cursor = next(cursors, None)
            if not ahead:
                return
            planned = ahead.popleft()
            if planned.whole:
                yield self._read_back(planned)
                continue
            shard = next(received, None)
            if shard is None:
                raise ProtocolError(f"the stream ended before shard {planned.cursor.sequence} "
                                    f"of epoch {planned.cursor.epoch}")
            if (shard.epoch, shard.sequence) != planned.cursor:
                raise ProtocolError(f"expected shard {planned.cursor.sequence} of epoch "
                                    f"{planned.cursor.epoch}, got shard {shard.sequence} of "
                                    f"epoch {shard.epoch}")
            yield shard

    def close(self) -> None:
        self._readers.shutdown(wait=True, cancel_futures=True)
        self.cache.close()


def then(first: Callable[[Shard], Shard] | None,
         second: Callable[[Shard], Shard]) -> Callable[[Shard], Shard]:
    """Two steps of a shard's decoding, one after the other."""
    if first is None:
        return second
    return lambda shard: second(first(shard))
