"""Decodes shard frames on a small thread pool and hands them out in order."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .wire import tensors
from .wire.errors import ProtocolError
from .wire.framing import Frame


@dataclass
class Shard:
    epoch: int
    sequence: int
    num_rows: int
    columns: dict[str, np.ndarray]
    last_in_epoch: bool = False


def decode_shard(frame: Frame) -> Shard:
    header = frame.shard
    if header is None:
        raise ProtocolError("expected a shard frame, got a second plan")
    columns = {t.name: tensors.decode(t, frame.payload) for t in header.tensors}
    for name, array in columns.items():
        if array.shape[:1] != (header.num_rows,):
            raise ProtocolError(
                f"tensor {name!r} has {array.shape[:1]} rows; the shard claims {header.num_rows}"
            )
    return Shard(header.epoch, header.sequence, header.num_rows, columns, header.last_in_epoch)


_END = object()


class Decoder:
    """Pulls frames on a thread of its own; decodes up to `threads` at once.

    Its queue holds no more than the frames the daemon was credited for, so
    it needs no bound of its own.
    """

    def __init__(self, frames: Iterable[Frame], threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="tether-decode")
        self._queue: queue.Queue[Future | BaseException | object] = queue.Queue()
        self.waited_seconds = 0.0  # time the consumer spent waiting for a shard
        self._thread = threading.Thread(
            target=self._pump, args=(frames,), name="tether-receive", daemon=True
        )
        self._thread.start()

    def _pump(self, frames: Iterable[Frame]) -> None:
        try:
            for frame in frames:
                self._queue.put(self._pool.submit(decode_shard, frame))
            self._queue.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)

    def __iter__(self) -> Iterator[Shard]:
        while True:
            started = time.perf_counter()
            item = self._queue.get()
            if isinstance(item, Future):
                shard = item.result()
            self.waited_seconds += time.perf_counter() - started
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield shard

    def close(self) -> None:
        """Stop decoding; call after the frames' stream was cancelled, so the
        receiving thread ends (it is waited for briefly)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread.join(timeout=2.0)
