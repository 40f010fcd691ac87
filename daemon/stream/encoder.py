"""Builds one shard frame: gather the plan's rows, encode each tensor."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from tether.wire import framing, rpc, tensors
from tether.wire.errors import DataCorrupted, DatasetError, TetherError
from tether.wire.images.columns import decode_shard_images
from tether.wire.plan import Cursor, EpochOrder, HostPlan, ShardTask
from tether.wire.ragged import Ragged
from tether.wire.v1 import tether_pb2 as pb

from ..sources import Column, Source
from ..sources.row_blocks import CACHE_BYTES, BlockCache
from .codec_policy import AutoCodec, FixedCodec
from .decode_policy import DAEMON, DecodePlace
from .stats import Stats

# Seconds each shard's encoding is stretched by (TETHER_TEST_ENCODE_DELAY): a
# test hook standing for a slow disk or transform; 0 in any real use.
_TEST_ENCODE_DELAY = float(os.environ.get("TETHER_TEST_ENCODE_DELAY") or 0)


# Shards of an unshuffled stream encoded at once, at most (the encode workers and
# the one being sent): its block cache holds their blocks, not CACHE_BYTES; and
# never less than IN_ORDER_FLOOR, since row sizes are estimates (a filter's
# matching rows, dictionary-coded text) and a block read twice costs a read.
IN_ORDER_SHARDS = 8
IN_ORDER_FLOOR = 32 << 20


def cache_bytes(plan: HostPlan, row_bytes: int, floor: int = CACHE_BYTES) -> int:
    """What a stream's block cache must hold so that each block is read once per
    epoch. A windowed shuffle: the window being sent, the next one (loaded
    ahead), and the blocks at their edges. In order: the blocks of the shards
    in flight, since a block passed is not read again this epoch (holding
    CACHE_BYTES there grew the daemon by that much of converted columns)."""
    layout = plan.layout
    if len(layout.chunk_rows) == 1:
        return floor
    if not plan.shuffle:
        needed = (IN_ORDER_SHARDS * plan.shard_rows + 2 * max(layout.chunk_rows)) * row_bytes
        return max(needed, min(floor, IN_ORDER_FLOOR))
    windows = 2 if layout.windowed else 1
    window = min(layout.window_rows or layout.num_rows, layout.num_rows)
    return max(floor, (windows * window + 2 * max(layout.chunk_rows)) * row_bytes)


@dataclass(frozen=True)
class ImageDecoding:
    """A stream's images: decoded to `size` where `place` says, shard by shard."""

    columns: tuple[str, ...]
    size: tuple[int, int]
    skip_bad: bool
    place: DecodePlace
    max_pixels: int | None = None  # an image's budget: the loader's, if below the daemon's


class ShardEncoder:
    def __init__(self, source: Source, columns: Sequence[Column], plan: HostPlan,
                 codec: FixedCodec | AutoCodec, narrow: bool, checksum: str,
                 stats: Stats, pool: Executor | None = None, fingerprint: str = "",
                 images: ImageDecoding | None = None) -> None:
        self.source = source
        self.images = images
        self.columns = list(columns)
        self.plan = plan
        self.codec = codec
        self.narrow = narrow
        self.checksum = checksum
        self.stats = stats
        self.cache = BlockCache(cache_bytes(plan, sum(c.row_bytes for c in self.columns)))
        self._pool = pool  # loads the next shuffle window while this one is sent
        self._fingerprint = fingerprint  # the files' version the stream was planned on
        self._warmed: set[tuple[int, int]] = set()  # (epoch, window) loaded ahead
        self._orders: dict[int, EpochOrder] = {}
        self._lock = threading.RLock()

    def _order(self, epoch: int) -> EpochOrder:
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:  # kept for this epoch and the next: shards cross into it
                order = self._orders[epoch] = self.plan.order(epoch)
                for old in [e for e in self._orders if e < epoch - 1]:
                    del self._orders[old]
            return order

    def _take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        # Files are memory-mapped: one truncated under a read would kill the
        # daemon (SIGBUS). So look first (a stat of each file): a changed
        # dataset fails this stream with a clear error, at once.
        if self._fingerprint and not self.source.unchanged(rows, self._fingerprint):
            raise DatasetError(
                f"dataset {self.source.name!r} changed on disk while it was being streamed; "
                "open the loader again (a saved state resumes only with "
                "allow_changed_data=True)")
        try:
            return self.source.take(rows, self.columns, self.cache)
        except TetherError:
            raise
        except Exception as exc:  # a corrupt or vanished file, found mid-stream
            raise DataCorrupted(
                f"dataset {self.source.name!r}: reading {len(rows)} rows between "
                f"{rows.min()} and {rows.max()} failed: {type(exc).__name__}: {exc}"
            ) from None

    def _load_next_window(self, cursor: Cursor) -> None:
        """Read the blocks of the window after this shard's, in the background,
        so that crossing into it (or into the next epoch) does not stall."""
        order = self._order(cursor.epoch)
        first = self.plan.global_positions(cursor.epoch, [cursor.sequence * self.plan.shard_rows])
        window = order.window_at(int(first[0]))
        following = (cursor.epoch, window + 1) if window + 1 < order.num_windows \
            else (cursor.epoch + 1, 0)
        with self._lock:
            if following in self._warmed or self.plan.finished(Cursor(following[0], 0)):
                return
            self._warmed = {w for w in self._warmed if w[0] >= cursor.epoch} | {following}
        current = order.window_chunk_rows(window)
        ahead = self._order(following[0]).window_chunk_rows(following[1])
        if len(ahead):
            self._pool.submit(self._read_ahead, current, ahead)

    def _read_ahead(self, current: np.ndarray, ahead: np.ndarray) -> None:
        """Load the blocks of `ahead` (a row of each) into the cache. First touch
        this window's blocks: blocks the read-ahead loaded a while ago are the
        cache's least recently used, and must not be what the new ones evict."""
        if len(current):
            self._take(current)
        self._take(ahead)

    def _decode_images(self, data: dict, rows: np.ndarray) -> tuple[dict, Sequence[int],
                                                                    np.ndarray]:
        """Decode the shard's images here, if that is where they are cheaper."""
        images = self.images
        files = data[images.columns[0]]
        if images.place.choose(files, images.size) != DAEMON:
            return data, (), rows
        data, dropped, seconds, count = decode_shard_images(
            data, images.columns, images.size, images.skip_bad,
            lambda row: self.source.row_name(int(rows[row])), images.max_pixels)
        images.place.observe_daemon(seconds, count)
        return data, dropped.tolist(), np.delete(rows, dropped)

    def _oversized(self, rows: np.ndarray, data: dict, size: int) -> str:
        """Why a shard cannot be sent: its rows are larger than the plan's mean."""
        largest = max(data, key=lambda name: data[name].nbytes)
        which = self.source.row_name(int(rows[0])) if len(rows) == 1 else \
            f"{len(rows)} rows of {self.source.name!r}"
        return (f"{which} take {size >> 20} MiB (most in column {largest!r}), over the "
                f"{rpc.MAX_SHARD_BYTES >> 20} MiB frame limit; leave the column out "
                "(columns=[...]), ask for a smaller image_size, or remove the oversized rows")

    def encode(self, task: ShardTask) -> bytes:
        started = time.perf_counter()
        if _TEST_ENCODE_DELAY:  # a slow source, for the tests of where loaders wait
            time.sleep(_TEST_ENCODE_DELAY)
        epoch, sequence = task.cursor
        rows = task.rows
        if rows is None:
            rows = self.plan.shard(task.cursor, self._order(epoch))
            if self._pool is not None and self.plan.layout.windowed and self.plan.shuffle:
                self._load_next_window(task.cursor)
        data = self._take(rows)
        for column in self.columns:
            _check_shape(column, data[column.name], len(rows))
        skipped = ()
        if self.images is not None:
            data, skipped, rows = self._decode_images(data, rows)
        headers, parts, offset, read_bytes = [], [], 0, 0
        for column in self.columns:
            array = data[column.name]
            values = array.values if isinstance(array, Ragged) else array
            encoded = tensors.encode_column(column.name, array,
                                            self.codec.setting(column.name, values),
                                            byte_shuffle=True, narrow=self.narrow,
                                            checksum="")  # summed in the frame
            parts.extend(encoded.place(offset))
            offset += encoded.nbytes
            headers.append(encoded.header)
            read_bytes += array.nbytes
        if max(offset, read_bytes) > rpc.MAX_SHARD_BYTES:
            raise DataCorrupted(self._oversized(rows, data, max(offset, read_bytes)))
        self.stats.read(len(rows), read_bytes)
        header = pb.ShardHeader(epoch=epoch, sequence=sequence, num_rows=len(rows),
                                tensors=headers, last_in_epoch=task.last_in_epoch,
                                skipped_rows=skipped,
                                produce_seconds=time.perf_counter() - started)
        return framing.encode_shard(header, parts, checksum=self.checksum)


def _check_shape(column: Column, array: np.ndarray | Ragged, rows: int) -> None:
    """A column read as the rows asked for, in the shape (or kind) announced."""
    if isinstance(array, Ragged):
        shape, expected = (len(array), *array.values.shape[1:]), (rows, *column.shape)
        ok = column.variable and shape == expected
    else:
        shape, expected = array.shape, (rows, *column.shape)
        ok = not column.variable and shape == expected
    if not ok:
        raise DataCorrupted(f"column {column.name!r} read as shape {shape}, expected "
                            f"{expected}; the file may have changed")
