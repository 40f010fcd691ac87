"""Decodes shard frames on a small thread pool and hands them out in order."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..wire import tensors
from ..wire.errors import ProtocolError
from ..wire.framing import Frame
from ..wire.ragged import BINARY, COLUMN_KINDS, IMAGE, Ragged
from ..wire.spec import MAX_COUNT
from ..wire.v1 import tether_pb2 as pb


@dataclass
class Shard:
    epoch: int
    sequence: int
    num_rows: int
    columns: dict[str, np.ndarray | Ragged]
    last_in_epoch: bool = False
    # Indices, among the shard's plan rows, of rows left out (corrupt images
    # skipped): the shard stands for num_rows + len(skipped) rows of the plan.
    skipped: tuple[int, ...] = ()
    decode_seconds: float = 0.0  # spent decoding its images here
    images_decoded: int = 0
    wire_bytes: int = 0  # the frame's payload, as it crossed the network
    produce_seconds: float = 0.0  # the daemon's reading and encoding of it
    streamed: bool = True  # False: read whole from the loader's disk cache, never sent

    @property
    def plan_rows(self) -> int:
        return self.num_rows + len(self.skipped)


def check_plan(plan: pb.StreamPlan, image_size: tuple[int, int] | None = None) -> None:
    """Refuse a plan whose shards could not be decoded within the frame limit, or
    whose images are not the size asked for (`image_size`: pixels; None: files)."""
    if plan.shard_rows < 1:
        raise ProtocolError("the daemon's plan has shards of 0 rows")
    if not plan.columns:
        raise ProtocolError("the daemon's plan has no columns")
    row_bytes = 0
    for column in plan.columns:
        if column.dtype not in tensors.WIRE_DTYPES or column.kind not in COLUMN_KINDS or \
                max(column.shape, default=0) > tensors.MAX_TENSOR_BYTES:
            raise ProtocolError(f"the daemon's plan has column {column.name!r} of "
                                f"{column.dtype!r} {list(column.shape)}, which cannot be a tensor")
        if column.kind == IMAGE and tuple(column.shape) != \
                (() if image_size is None else (*image_size, 3)):
            raise ProtocolError(f"the daemon's plan has images {list(column.shape)} in "
                                f"{column.name!r}; asked for image_size={image_size}")
        if not column.kind or column.kind == IMAGE:  # (pixels, when asked for)
            row_bytes += math.prod(column.shape) * np.dtype(column.dtype).itemsize
    if len({c.name for c in plan.columns}) != len(plan.columns):
        raise ProtocolError("the daemon's plan names a column twice")
    if plan.shard_rows * row_bytes > tensors.MAX_TENSOR_BYTES:
        raise ProtocolError(f"the daemon's plan has shards of {plan.shard_rows} rows of "
                            f"{row_bytes} bytes, over the {tensors.MAX_TENSOR_BYTES >> 20} MiB "
                            "frame limit")


def check_shard(header: pb.ShardHeader, plan: pb.StreamPlan) -> None:
    """Refuse a shard header that is not what the plan announced: its columns,
    dtypes and row shapes, at most `shard_rows` rows. Only headers are read:
    nothing is allocated for a shard that fails."""
    if max(header.epoch, header.sequence) > MAX_COUNT:
        raise ProtocolError(f"shard {header.sequence} of epoch {header.epoch} lies past "
                            "any plan")
    skipped = len(header.skipped_rows)
    if not 1 <= header.num_rows + skipped <= plan.shard_rows:
        raise ProtocolError(f"shard {header.sequence} of epoch {header.epoch} has "
                            f"{header.num_rows} rows (and {skipped} skipped); the plan's "
                            f"shards have 1 to {plan.shard_rows}")
    if skipped and not any(c.kind == IMAGE for c in plan.columns):
        raise ProtocolError(f"shard {header.sequence} of epoch {header.epoch} skips rows, "
                            "but only corrupt images are ever skipped and the plan has none")
    names = [t.name for t in header.tensors]
    expected = {c.name: c for c in plan.columns}
    if sorted(names) != sorted(expected):
        raise ProtocolError(f"shard {header.sequence} of epoch {header.epoch} carries columns "
                            f"{names}; the plan announced {list(expected)}")
    for tensor in header.tensors:
        _check_tensor(tensor, expected[tensor.name], header.num_rows)
    if len(set(header.skipped_rows)) != len(header.skipped_rows) or \
            any(i >= header.num_rows + len(header.skipped_rows) for i in header.skipped_rows):
        raise ProtocolError(f"shard {header.sequence} of epoch {header.epoch} skips rows "
                            "it does not have")


def _check_tensor(tensor: pb.TensorHeader, column: pb.ColumnInfo, rows: int) -> None:
    """A tensor is its column as announced: fixed rows, or rows of varying length.
    An image column is either: encoded files, or pixels the daemon decoded."""
    ragged = (tensor.kind, tensor.dtype, tuple(tensor.shape[1:]), tuple(tensor.lengths.shape))
    fixed = ("", tensor.dtype, tuple(tensor.shape), ())
    if column.kind == IMAGE:
        allowed = [(BINARY, "|u1", (), (rows,))]
        if column.shape:  # image_size: the daemon may send pixels
            allowed.append(("", "|u1", (rows, *column.shape), ()))
        ok = ragged in allowed or fixed in allowed
    elif column.kind:
        ok = ragged == (column.kind, column.dtype, tuple(column.shape), (rows,))
    else:
        ok = fixed == ("", column.dtype, (rows, *column.shape), ())
    if not ok:
        raise ProtocolError(
            f"tensor {tensor.name!r} is {tensor.kind or 'a tensor'} {tensor.dtype} "
            f"{list(tensor.shape)}; the plan announced {column.kind or 'a tensor'} "
            f"{column.dtype} {list(column.shape)} for {rows} rows")


def decode_shard(frame: Frame) -> Shard:
    header = frame.shard
    if header is None:
        raise ProtocolError("expected a shard frame, got a second plan")
    # Every header is checked before anything is allocated for any tensor.
    for tensor in header.tensors:
        shape = tuple(tensor.lengths.shape if tensor.kind else tensor.shape)
        if shape[:1] != (header.num_rows,):
            raise ProtocolError(
                f"tensor {tensor.name!r} has {shape[:1]} rows; the shard claims {header.num_rows}"
            )
    if len({t.name for t in header.tensors}) != len(header.tensors):
        raise ProtocolError("a shard names a tensor twice")
    total = sum(tensors.check_column_header(t) for t in header.tensors)
    if total > tensors.MAX_TENSOR_BYTES:
        raise ProtocolError(f"a shard claims {total} bytes of tensors, over the "
                            f"{tensors.MAX_TENSOR_BYTES >> 20} MiB frame limit")
    columns = {t.name: tensors.decode_column(t, frame.payload) for t in header.tensors}
    return Shard(header.epoch, header.sequence, header.num_rows, columns, header.last_in_epoch,
                 tuple(header.skipped_rows), wire_bytes=frame.payload.nbytes,
                 produce_seconds=header.produce_seconds)


_END = object()


@dataclass
class Waits:
    """Seconds the consumer waited for shards, by what held them up: the frame
    had not arrived (the daemon still reading and encoding it, as long as it
    says that took; the network for the rest), or it was still being decoded
    here (the loader). And the bytes of what arrived."""

    network: float = 0.0
    daemon: float = 0.0
    loader: float = 0.0
    wire_bytes: int = 0
    raw_bytes: int = 0

    def add(self, for_frame: float, for_decode: float, shard: Shard) -> None:
        on_daemon = min(for_frame, shard.produce_seconds)
        self.daemon += on_daemon
        self.network += for_frame - on_daemon
        self.loader += for_decode
        self.wire_bytes += shard.wire_bytes
        self.raw_bytes += sum(column.nbytes for column in shard.columns.values())


class Decoder:
    """Pulls frames on a thread of its own; decodes up to `threads` at once.

    Its queue holds no more than the frames the daemon was credited for (the
    stream refuses a frame beyond them), so it needs no bound of its own.
    """

    def __init__(self, frames: Iterable[Frame], threads: int,
                 finish: Callable[[Shard], Shard] | None = None) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="tether-decode")
        self._finish = finish  # more work a shard needs, on the same threads (images)
        self._queue: queue.Queue[Future | BaseException | object] = queue.Queue()
        self.waited_seconds = 0.0  # time the consumer spent waiting for a shard
        self.waits = Waits()  # the same, by what it waited on
        self._thread = threading.Thread(
            target=self._pump, args=(frames,), name="tether-receive", daemon=True
        )
        self._thread.start()

    def _pump(self, frames: Iterable[Frame]) -> None:
        try:
            for frame in frames:
                self._queue.put(self._pool.submit(self._decode, frame))
            self._queue.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)

    def _decode(self, frame: Frame) -> Shard:
        shard = decode_shard(frame)
        return shard if self._finish is None else self._finish(shard)

    def __iter__(self) -> Iterator[Shard]:
        while True:
            started = time.perf_counter()
            item = self._queue.get()
            arrived = time.perf_counter()
            if isinstance(item, Future):
                shard = item.result()
            done = time.perf_counter()
            self.waited_seconds += done - started
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            self.waits.add(arrived - started, done - arrived, shard)
            yield shard

    def close(self) -> None:
        """Stop decoding; call after the frames' stream was cancelled, so the
        receiving thread ends (it is waited for briefly)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread.join(timeout=2.0)
