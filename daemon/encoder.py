"""Builds one shard frame: read the rows, permute them, encode each tensor."""

from __future__ import annotations

from collections.abc import Sequence

from tether.wire import framing, tensors
from tether.wire.errors import DataCorrupted, TetherError
from tether.wire.v1 import tether_pb2 as pb

from .codec_policy import AutoCodec, FixedCodec
from .planner import Plan
from .sources import Column, Source
from .stats import Stats


class ShardEncoder:
    def __init__(self, source: Source, columns: Sequence[Column], plan: Plan,
                 codec: FixedCodec | AutoCodec, narrow: bool, checksum: str,
                 stats: Stats) -> None:
        self.source = source
        self.columns = list(columns)
        self.plan = plan
        self.codec = codec
        self.narrow = narrow
        self.checksum = checksum
        self.stats = stats

    def _read(self, start: int, stop: int):
        try:
            return self.source.read(start, stop, self.columns)
        except TetherError:
            raise
        except Exception as exc:  # a corrupt or vanished file, found mid-stream
            raise DataCorrupted(
                f"dataset {self.source.name!r}: reading rows {start}..{stop} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def encode(self, epoch: int, sequence: int) -> bytes:
        spec = self.plan.shard(epoch, sequence)
        data = self._read(spec.start, spec.stop)
        order = self.plan.row_order(epoch, spec)
        rows = spec.stop - spec.start
        headers, parts, offset, read_bytes = [], [], 0, 0
        for column in self.columns:
            array = data[column.name]
            if array.shape != (rows, *column.shape):
                raise DataCorrupted(
                    f"column {column.name!r} read as shape {array.shape}, "
                    f"expected {(rows, *column.shape)}; the file may have changed"
                )
            if order is not None:
                array = array.take(order, axis=0)
            array = tensors.little_endian(array)
            encoded = tensors.encode(column.name, array, self.codec.choose(column.name, array),
                                     byte_shuffle=True, narrow=self.narrow,
                                     checksum=self.checksum)
            encoded.header.offset = offset
            offset += encoded.data.nbytes
            headers.append(encoded.header)
            parts.append(encoded.data)
            read_bytes += array.nbytes
        self.stats.read(rows, read_bytes)
        header = pb.ShardHeader(epoch=epoch, sequence=sequence, shard_index=spec.index,
                                row_start=spec.start, num_rows=rows, tensors=headers)
        return framing.encode_shard(header, parts)
