"""Builds one shard frame: gather the plan's rows, encode each tensor."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from tether.wire import framing, tensors
from tether.wire.errors import DataCorrupted, TetherError
from tether.wire.plan import EpochOrder, HostPlan, ShardTask
from tether.wire.v1 import tether_pb2 as pb

from .codec_policy import AutoCodec, FixedCodec
from .sources import Column, Source
from .sources.row_blocks import CACHE_BYTES, BlockCache
from .stats import Stats


def cache_bytes(plan: HostPlan, row_bytes: int) -> int:
    """What a stream's block cache must hold so that a windowed shuffle reads
    each block once per epoch: a window, and the blocks at its edges."""
    layout = plan.layout
    if not plan.shuffle or len(layout.chunk_rows) == 1:
        return CACHE_BYTES
    window = min(layout.window_rows or layout.num_rows, layout.num_rows)
    return max(CACHE_BYTES, (window + 2 * max(layout.chunk_rows)) * row_bytes)


class ShardEncoder:
    def __init__(self, source: Source, columns: Sequence[Column], plan: HostPlan,
                 codec: FixedCodec | AutoCodec, narrow: bool, checksum: str,
                 stats: Stats) -> None:
        self.source = source
        self.columns = list(columns)
        self.plan = plan
        self.codec = codec
        self.narrow = narrow
        self.checksum = checksum
        self.stats = stats
        self.cache = BlockCache(cache_bytes(plan, sum(c.row_bytes for c in self.columns)))

    @functools.lru_cache(maxsize=2)  # noqa: B019 - an encoder lives as long as its stream
    def _order(self, epoch: int) -> EpochOrder:
        return self.plan.order(epoch)

    def _take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return self.source.take(rows, self.columns, self.cache)
        except TetherError:
            raise
        except Exception as exc:  # a corrupt or vanished file, found mid-stream
            raise DataCorrupted(
                f"dataset {self.source.name!r}: reading {len(rows)} rows between "
                f"{rows.min()} and {rows.max()} failed: {type(exc).__name__}: {exc}"
            ) from None

    def encode(self, task: ShardTask) -> bytes:
        epoch, sequence = task.cursor
        rows = task.rows if task.rows is not None else \
            self.plan.shard(task.cursor, self._order(epoch))
        data = self._take(rows)
        headers, parts, offset, read_bytes = [], [], 0, 0
        for column in self.columns:
            array = data[column.name]
            if array.shape != (len(rows), *column.shape):
                raise DataCorrupted(
                    f"column {column.name!r} read as shape {array.shape}, "
                    f"expected {(len(rows), *column.shape)}; the file may have changed"
                )
            array = tensors.little_endian(array)
            encoded = tensors.encode(column.name, array, self.codec.choose(column.name, array),
                                     byte_shuffle=True, narrow=self.narrow,
                                     checksum=self.checksum)
            encoded.header.offset = offset
            offset += encoded.data.nbytes
            headers.append(encoded.header)
            parts.append(encoded.data)
            read_bytes += array.nbytes
        self.stats.read(len(rows), read_bytes)
        header = pb.ShardHeader(epoch=epoch, sequence=sequence, num_rows=len(rows),
                                tensors=headers, last_in_epoch=task.last_in_epoch)
        return framing.encode_shard(header, parts)
