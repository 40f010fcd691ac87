"""`tether.Loader`: batches of numpy arrays streamed from a Tether daemon.

The pipeline, one stage a module:

    stream (credits, acks, reconnects) -> decoder (threads) -> ordering (exactly once)
      -> batcher (exact batch_size) -> [jax.device_iterator (on device)]
"""

from __future__ import annotations

import atexit
import gc
import math
import os
import secrets
import sys
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .batcher import Batch, Batcher
from .decoder import Decoder, Shard
from .ordering import PlanOrder
from .retry import RetryPolicy
from .state import LoaderState, Position
from .stream import ResumableStream
from .wire import rpc
from .wire.allocator import tune_allocator
from .wire.checksums import available_checksums
from .wire.codecs import NAMES as CODEC_NAMES
from .wire.codecs import available_codecs
from .wire.errors import RequestError
from .wire.url import Endpoint, parse_url
from .wire.v1 import tether_pb2 as pb

if TYPE_CHECKING:
    from .jax import DeviceIterator

DEFAULT_SHARD_BYTES = rpc.DEFAULT_SHARD_BYTES


class Loader:
    """Iterate batches of a dataset served by `tether serve`.

    >>> loader = tether.Loader(url, dataset="train", batch_size=256,  # doctest: +SKIP
    ...                        shuffle=True, seed=0, num_epochs=2)
    >>> for batch in loader:                                          # doctest: +SKIP
    ...     train_step(batch["x"], batch["y"])

    Each batch is a dict of column name to numpy array (64-byte aligned), with
    `batch_size` rows; the last batch of an epoch is shorter unless
    `drop_last`. `prefetch` is how many shards (about `shard_bytes` each) the
    loader holds ahead; it is raised to what one batch needs. Memory on both
    sides stays within that window whatever the dataset's size. A broken
    connection is retried under `retry` and the stream resumes exactly where
    it broke; `state_dict()` / `load_state_dict()` do the same across processes.
    """

    def __init__(
        self,
        url: str | Endpoint,
        dataset: str,
        batch_size: int,
        *,
        columns: Sequence[str] | None = None,
        shuffle: bool = False,
        seed: int | None = None,
        num_epochs: int | None = 1,
        prefetch: int = 8,
        process_index: int = 0,
        process_count: int = 1,
        drop_last: bool = False,
        codec: str = "auto",
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        decode_threads: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        _check(batch_size >= 1, f"batch_size must be at least 1, got {batch_size}")
        _check(prefetch >= 1, f"prefetch must be at least 1 shard, got {prefetch}")
        _check(num_epochs is None or num_epochs >= 1,
               f"num_epochs must be None (forever) or at least 1, got {num_epochs}")
        _check(process_count >= 1 and 0 <= process_index < process_count,
               f"need 0 <= process_index < process_count, got {process_index} of {process_count}")
        _check(not (shuffle and process_count > 1 and seed is None),
               "several processes must share one seed to split one shuffled order: pass seed=")
        _check(codec == "auto" or codec in CODEC_NAMES,
               f"unknown codec {codec!r}; choose auto or one of {', '.join(CODEC_NAMES)}")
        _check(codec in ("auto", *available_codecs()),
               f"codec {codec!r} needs pyarrow on this machine: pip install pyarrow")
        _check(1 << 10 <= shard_bytes <= rpc.MAX_SHARD_BYTES,
               f"shard_bytes must be between 1 KiB and {rpc.MAX_SHARD_BYTES >> 20} MiB")
        self.endpoint = url if isinstance(url, Endpoint) else parse_url(url)
        self.dataset = dataset
        self.batch_size = batch_size
        self.columns = list(columns) if columns is not None else None
        self.shuffle = shuffle
        # A shuffled run always has a seed, chosen here if not given, so that
        # it can be reproduced and resumed.
        self._seed_given = seed is not None
        self.seed = seed if seed is not None or not shuffle else secrets.randbits(63)
        self.num_epochs = num_epochs
        self.prefetch = prefetch
        self.process_index = process_index
        self.process_count = process_count
        self.drop_last = drop_last
        self.codec = codec
        self.shard_bytes = shard_bytes
        self.decode_threads = decode_threads or min(4, os.cpu_count() or 1)
        self.retry = retry or RetryPolicy()
        self.plan: pb.StreamPlan | None = None
        self._restored: LoaderState | None = None  # where the next iteration starts
        self._stream: ResumableStream | None = None
        self._order: PlanOrder | None = None
        self._batcher: Batcher | None = None
        tune_allocator()
        self._channel = rpc.open_channel(self.endpoint)
        self._closers: list[Any] = []
        _LIVE.add(self)

    def _open_request(self, start: Position, restored: LoaderState | None) -> pb.OpenStream:
        return pb.OpenStream(
            dataset=self.dataset,
            columns=self.columns or [],
            batch_size=self.batch_size,
            shard_bytes=self.shard_bytes,
            shuffle=self.shuffle,
            seed=self.seed or 0,
            num_epochs=self.num_epochs or 0,
            process_index=self.process_index,
            process_count=self.process_count,
            start=pb.Cursor(epoch=start.epoch, sequence=start.sequence),
            codec=self.codec,
            accept_codecs=available_codecs(),
            accept_checksums=available_checksums(),
            initial_credits=self.prefetch,
            shard_rows=restored.shard_rows if restored else 0,
            fingerprint=restored.fingerprint if restored and restored.fingerprint else "",
        )

    def __iter__(self) -> Iterator[Batch]:
        self._stop()  # one stream at a time: a new iteration starts afresh
        restored, self._restored = self._restored, None
        start = restored.position if restored else Position(0, 0, 0)
        stream = ResumableStream(self._channel, self._open_request(start, restored), self.retry,
                                 rpc.call_metadata(self.endpoint), reopen=self._reopen_channel)
        self._closers.append(stream)
        self.plan = plan = stream.open()
        window = max(self.prefetch, math.ceil(self.batch_size / max(plan.shard_rows, 1)) + 1)
        stream.grant(window - self.prefetch)
        decoder = Decoder(stream.frames(), self.decode_threads)
        self._closers.append(decoder)
        reported = [0.0]  # decoder wait already reported to the daemon

        def release(shard: Shard) -> None:
            waited, reported[0] = decoder.waited_seconds - reported[0], decoder.waited_seconds
            stream.release(shard.epoch, shard.sequence, waited)

        self._stream = stream
        self._order = PlanOrder(decoder, plan.shards_per_epoch, (start.epoch, start.sequence),
                                self.num_epochs)
        self._batcher = Batcher(self._order, self.batch_size, self.drop_last, release,
                                skip_rows=start.row)
        return self._guarded(self._batcher)

    def _reopen_channel(self) -> Any:
        self._channel = rpc.open_channel(self.endpoint)
        return self._channel

    def _guarded(self, batches: Batcher) -> Iterator[Batch]:
        try:
            yield from batches
        finally:
            # At interpreter exit gRPC's threads are frozen, maybe holding the
            # lock cancel() needs; _close_all_at_exit already stopped us.
            if not sys.is_finalizing():
                self._stop()

    @property
    def epoch(self) -> int:
        """The epoch of the batch last yielded (0 before the first)."""
        return self._batcher.epoch if self._batcher else 0

    @property
    def reconnects(self) -> int:
        """How many times the current iteration has reconnected."""
        return self._stream.reconnects if self._stream else 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is, as a small JSON-serializable dict.

        Save it beside the model's checkpoint; `load_state_dict` on a new
        loader (in a new process) resumes at the very next batch.
        """
        if self._batcher is None:
            position = self._restored.position if self._restored else Position(0, 0, 0)
        else:
            held = self._batcher.position()
            position = Position(*held) if held else Position(*self._order.next, 0)
        plan = self.plan
        return LoaderState(
            dataset=self.dataset, fingerprint=plan.fingerprint if plan else "",
            columns=self.columns, batch_size=self.batch_size, shuffle=self.shuffle,
            seed=self.seed, num_epochs=self.num_epochs, process_index=self.process_index,
            process_count=self.process_count, drop_last=self.drop_last,
            shard_rows=plan.shard_rows if plan else 0, position=position,
        ).to_dict()

    def load_state_dict(self, state: dict[str, Any], allow_changed_data: bool = False) -> None:
        """Make the next iteration start where `state` (from `state_dict()`) was.

        Fails on the first batch if the dataset's files changed since, unless
        `allow_changed_data`: then rows may be mixed from two versions.
        """
        restored = LoaderState.from_dict(state)
        if self.shuffle and not self._seed_given:
            self.seed = restored.seed  # the drawn seed is part of the position
        restored.check_matches(self)
        if allow_changed_data:
            restored.fingerprint = ""
        self._restored = restored

    def to_jax(self, sharding: Any = None, buffer_size: int = 2) -> DeviceIterator:
        """Batches as `jax.Array`s, placed on device `buffer_size` batches ahead.

        Checkpoint the returned iterator's `state_dict()`: it leaves out the
        batches still waiting on the device.
        """
        from .jax import DeviceIterator

        initial = self.state_dict()
        with_states = ((batch, self.state_dict()) for batch in self)
        return DeviceIterator(with_states, sharding, buffer_size, initial_state=initial)

    def _stop(self) -> None:
        # In order: cancel the stream first, so the decoder's thread can end.
        closers, self._closers = self._closers, []
        for closer in closers:
            closer.close()

    def close(self) -> None:
        """Stop streaming and free the connection."""
        self._stop()
        self._channel.close()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_LIVE: weakref.WeakSet[Loader] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    """Close loaders while gRPC's threads still run, and collect their calls.

    A script that ends mid-iteration without close() would otherwise leave
    gRPC call objects to be destroyed during interpreter finalization, when
    gRPC's frozen threads may hold the lock their destructor needs: the
    process would hang instead of exiting.
    """
    for loader in list(_LIVE):
        loader.close()
    gc.collect()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RequestError(message)
