"""`tether.Loader`: batches of numpy arrays streamed from a Tether daemon.

The Loader is the face: it turns its keywords into small frozen values
(tether.options), has tether.pipeline.assembly build one iteration's stages,
and owns what spans them (the position, the state, the hand-offs):

    stream (credits, acks, reconnects) -> decoder (threads) -> ordering (exactly once)
      -> batcher (exact batch_size) -> [packer] -> [jax.device_iterator (on device)]
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .cache.row_cache import DEFAULT_CACHE_LIMIT
from .columns import Delivery
from .options import CacheOptions, Reach, stream_spec
from .pipeline.assembly import Assembly, Channels
from .pipeline.batcher import Batch, Batcher
from .progress import Progress, require_tqdm
from .retry import RetryPolicy
from .sequences.delivery import SequenceOptions, check_for_jax, finish_batch
from .state import LoaderState
from .wire.allocator import tune_allocator
from .wire.errors import RequestError
from .wire.plan import HostPlan, Position, combine
from .wire.spec import StreamSpec, layout_from_proto
from .wire.url import Endpoint
from .wire.v1 import tether_pb2 as pb

if TYPE_CHECKING:
    from .jax import DeviceIterator
    from .torch import TorchIterator

class Loader:
    """Iterate batches of a dataset served by `tether serve`.

    >>> loader = tether.Loader(url, dataset="train", batch_size=256,  # doctest: +SKIP
    ...                        shuffle=True, seed=0, num_epochs=2)
    >>> for batch in loader:                                          # doctest: +SKIP
    ...     train_step(batch["x"], batch["y"])

    Each batch is a dict of column name to numpy array (64-byte aligned) with
    `batch_size` rows. Each epoch's row order is a function of the dataset's
    version, `seed` and the epoch alone (a global shuffle with `shuffle`).
    With several processes (`process_index`/`process_count`, by default
    JAX's when `jax` is imported) the order is cut into global batches of
    process_count x batch_size rows and each process takes its slice: every
    process gets the same number of full batches, and the few rows that make
    no whole global batch are dropped (other rows each epoch). A single
    process keeps a short last batch unless `drop_last`.

    `prefetch` is how many shards (about `shard_bytes` each) the loader holds
    ahead; it is raised to what one batch needs. Memory on both sides stays
    within that window whatever the dataset's size. A broken connection is
    retried under `retry` and the stream resumes exactly where it broke;
    `state_dict()` / `load_state_dict()` do the same across processes, and
    across a change of process count or batch size.

    `cache="/content/tether-cache"` keeps the rows that arrive on this
    machine's disk (at most `cache_limit`, least recently used first out), and
    asks the daemon only for rows not there: once the dataset fits, later
    epochs read the disk, even with the daemon unreachable. The order, exactly
    once and `state_dict` are the same as without it. It puts the data on
    this machine's disk: opt in only where that is allowed (docs/loader.md).

    `proxy="http://HOST:PORT"` tunnels the connections through an HTTP CONNECT
    proxy (Tailscale's userspace networking on Colab: docs/colab.md); TLS stays
    pinned end to end. Without it, `grpc_proxy`/`https_proxy`/`http_proxy` apply.
    """

    # Where the next iteration starts, where this one began, its stages, and the
    # dataset version(s) it streams: set by __iter__ and load_state_dict.
    _restored: LoaderState | None = None
    _started: LoaderState | None = None
    _assembly: Assembly | None = None
    _batcher: Batcher | None = None
    _packer: Any = None  # tether.sequences.packer.Packer, with pack=
    _progress: Progress | None = None
    _fingerprint = ""

    def __init__(
        self,
        url: str | Endpoint | Sequence[str | Endpoint] | None = None,
        dataset: str | None = None,
        batch_size: int | None = None,
        *,  # the defaults are the request's own (tether.wire.spec)
        columns: Sequence[str] | None = None,
        shuffle: bool = StreamSpec.shuffle,
        seed: int | None = None,
        shuffle_window: int | str | None = None,
        num_epochs: int | None = StreamSpec.num_epochs,
        prefetch: int = 8,
        process_index: int | None = None,
        process_count: int | None = None,
        drop_last: bool = StreamSpec.drop_last,
        codec: str = StreamSpec.codec,
        shard_bytes: int = StreamSpec.shard_bytes,
        decode_threads: int | None = None,
        retry: RetryPolicy | None = None,
        proxy: str | None = None,
        image_size: tuple[int, int] | None = None,
        decode: str = StreamSpec.decode,
        on_bad_image: str = StreamSpec.on_bad_image,
        max_image_pixels: int | None = None,
        pad: dict[str, int] | None = None,
        pack: dict[str, int] | None = None,
        pad_value: int = 0,
        filter: str | None = None,
        sql: str | None = None,
        fill_null: Mapping[str, bool | int | float | str] | None = None,
        null_masks: Sequence[str] | bool = (),
        categories: Sequence[str] = (),
        images: Sequence[str] = (),
        cache: str | os.PathLike | None = None,
        cache_limit: int | str = DEFAULT_CACHE_LIMIT,
        progress: bool = False,
    ) -> None:
        self.spec = stream_spec(
            dataset, batch_size, columns=columns, shuffle=shuffle, seed=seed,
            shuffle_window=shuffle_window, num_epochs=num_epochs, process_index=process_index,
            process_count=process_count, drop_last=drop_last, codec=codec,
            shard_bytes=shard_bytes, image_size=image_size, decode=decode,
            on_bad_image=on_bad_image, max_image_pixels=max_image_pixels or 0, filter=filter,
            sql=sql, fill_null=fill_null,
            null_masks=null_masks, categories=categories, images=images)
        self._seed_given = seed is not None  # else a drawn one, which a restored state replaces
        self.batch_size = batch_size  # rows of a batch handed out (packed rows with pack=)
        self.sequences = SequenceOptions.of(pad, pack, pad_value, self.spec)
        if self.sequences.pack:  # the stream's batches are rounds of sequences to pack
            self.spec = replace(self.spec, batch_size=self.sequences.round_size(batch_size),
                                drop_last=drop_last and self.spec.process_count > 1)
        self.reach = Reach.of(url, proxy, retry, prefetch, decode_threads)
        self.cache = CacheOptions.of(cache, cache_limit, self.reach, self.spec)
        if progress:
            require_tqdm()
        self._show_progress = progress
        self._counts: dict[str, int] = {}  # images skipped, sequences truncated
        tune_allocator()
        self._channels = Channels(self.reach, self.spec.codec != "none")  # handshakes now
        _LIVE.add(self)

    @property
    def seed(self) -> int:
        """The shuffle's seed (drawn at random when not given; kept in the state)."""
        return self.spec.seed

    def __iter__(self) -> Iterator[Batch]:
        self._stop()  # one stream at a time: a new iteration starts afresh
        restored, self._restored = self._restored, None
        self._started, self._packer = restored, None
        spec = restored.spec if restored else self.spec
        self._assembly = assembly = Assembly(self._channels, self.cache, self._counts)
        shards, release = assembly.open(spec, _fingerprints(restored, self.reach))
        self._fingerprint = assembly.fingerprint
        self.sequences.check_columns({c.name: c.kind for c in self.plan.columns},
                                     {c.name: c.dtype for c in self.plan.columns})
        delivery = Delivery.of(self.plan, spec)
        self._batcher = Batcher(shards, spec.batch_size, spec.global_batch, spec.start, release,
                                drop_short=spec.drop_last)
        batches: Iterable[Batch] = self._packed(restored) if self.sequences.pack \
            else self._batcher
        self._progress = Progress(assembly.waits, self._epoch_rows, self._show_progress)
        return self._guarded(self._progress.wrap(
            (delivery.finish(finish_batch(batch, self.sequences, self._counts))
             for batch in batches), lambda: self.epoch))

    @property
    def plan(self) -> pb.StreamPlan | None:
        """The (first) daemon's plan of the current iteration (None before one)."""
        return self._assembly.plan if self._assembly else None

    @property
    def categories(self) -> dict[str, list[str]]:
        """Each category column's vocabulary: code i of column c is categories[c][i]
        (-1 is null). Dictionary columns (pandas categories) and `categories=`
        columns; known once iteration began (the stream's plan carries them)."""
        if self.plan is None:
            raise RequestError("loader.categories is known once the stream opened: "
                               "iter(loader) first")
        return dict(Delivery.of(self.plan, self.spec).categories)

    @property
    def host_plan(self) -> HostPlan | None:
        """This process's plan of the current iteration (None before one)."""
        return self._assembly.host_plan if self._assembly else None

    def _packed(self, restored: LoaderState | None) -> Iterable[Batch]:
        from .sequences.packer import Packer

        column, length = self.sequences.pack
        self._packer = Packer(self._rounds(), column, length, self.batch_size,
                              self.sequences.pad_value,
                              skip=restored.packed_rows if restored else 0)
        return self._packer

    def _epoch_rows(self, epoch: int) -> int | None:
        """Rows this process gets in `epoch` (None with pack=: packed rows vary)."""
        if self.sequences.pack or self.host_plan is None:
            return None
        return self.host_plan.local_rows(epoch)

    def _rounds(self) -> Iterator[tuple[dict[str, int], int, Batch]]:
        """The stream's batches, each with the position before it: rounds to pack."""
        batcher = self._batcher
        batches = iter(batcher)
        while True:
            before = batcher.get_state()
            batch = next(batches, None)
            if batch is None:
                return
            yield before, batcher.epoch, batch

    # How long an epoch is.

    def _full_epoch_plan(self) -> HostPlan:
        """The plan of this loader's request, from the open iteration or, before
        one, from the daemons' descriptions (one small call each)."""
        if self.host_plan is not None:
            return self.host_plan
        if self.spec.sql:
            raise TypeError("len() of a Loader(sql=...) is known once its query ran: iterate "
                            "first (the query's rows decide it)")
        with Assembly(self._channels, None, {}) as assembly:
            layouts = [layout_from_proto(info.layout)
                       for info in assembly.describe_parts(self.spec)]
        return self.spec.plan_on(combine(layouts), 1)  # (with a filter: of the rows it selects)

    @property
    def batches_per_epoch(self) -> int:
        """Batches this process gets in a full epoch (a short last one counted):
        what `len(loader)` is. With pack=, unknown before packing: TypeError."""
        if self.sequences.pack:
            raise TypeError("len() of a Loader with pack= is unknown before packing: how many "
                            "sequences fill a packed row depends on their lengths; count "
                            "batches as they come, or use rows_per_epoch")
        plan = self._full_epoch_plan()
        return plan.batches(plan.start.epoch + 1)  # (the start epoch may begin mid-way)

    @property
    def rows_per_epoch(self) -> int:
        """Rows this process gets in a full epoch (sequences, with pack=)."""
        plan = self._full_epoch_plan()
        return plan.local_rows(plan.start.epoch + 1)

    def __len__(self) -> int:
        return self.batches_per_epoch

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
        """The epoch of the batch last yielded (the start epoch before the first)."""
        if self._packer is not None and self._packer.epoch is not None:
            return self._packer.epoch  # (the batcher is a round ahead)
        return self._batcher.epoch if self._batcher else 0

    @property
    def reconnects(self) -> int:
        """How many times the current iteration has reconnected (all daemons)."""
        return self._assembly.reconnects if self._assembly else 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is, as a small JSON-serializable dict.

        Save it beside the model's checkpoint; `load_state_dict` on a new
        loader (in a new process, or on another number of processes) resumes
        at the very next batch. Every process of a run saves the same
        position: the global row where the next global batch starts.
        """
        if self._packer is not None:
            packed = self._packer.get_state()
            if packed["round"] is None:  # nothing read yet: where it started
                return (self._started or LoaderState(self.spec, "")).to_dict()
            spec = self.spec.starting_at(Position(**packed["round"]))
            return LoaderState(spec, self._fingerprint,
                               self._packing(packed["emitted"])).to_dict()
        if self._batcher is not None:
            spec = self.spec.starting_at(Position(**self._batcher.get_state()))
            return LoaderState(spec, self._fingerprint).to_dict()
        if self._restored is not None:
            return self._restored.to_dict()
        return LoaderState(self.spec, "").to_dict()

    def load_state_dict(self, state: dict[str, Any], allow_changed_data: bool = False) -> None:
        """Make the next iteration start where `state` (from `state_dict()`) was.

        The state may come from a run with another batch_size or number of
        processes: the rest of the epoch is cut among this run's processes.
        Fails on the first batch if the dataset's files changed since, unless
        `allow_changed_data`: then rows may be mixed from two versions.
        """
        restored = LoaderState.from_dict(state)
        if self.spec.shuffle and not self._seed_given:
            self.spec = replace(self.spec, seed=restored.spec.seed)  # the drawn seed is kept
        restored.check_order_matches(self.spec)
        restored.check_packing_matches(self._packing(0))
        self._restored = LoaderState(self.spec.starting_at(restored.spec.start),
                                     "" if allow_changed_data else restored.fingerprint,
                                     self._packing(restored.packed_rows))

    def _packing(self, rows: int) -> dict[str, Any] | None:
        """How this loader packs (None without pack=), with `rows` handed out."""
        if not self.sequences.pack:
            return None
        column, length = self.sequences.pack
        return {"column": column, "length": length, "round_rows": self.spec.batch_size,
                "rows": rows}

    def to_jax(self, sharding: Any = None, buffer_size: int = 2) -> DeviceIterator:
        """Batches as `jax.Array`s, placed on device `buffer_size` batches ahead.

        Checkpoint the returned iterator's `state_dict()`: it leaves out the
        batches still waiting on the device.
        """
        from .jax import DeviceIterator

        initial, with_states = self._with_states(self._jax_ready)
        return DeviceIterator(with_states, sharding, buffer_size, initial_state=initial,
                              layout=(self.spec.process_index, self.spec.process_count),
                              length=self.__len__)

    def to_torch(self, device: Any = None, pin_memory: bool | None = None,
                 buffer_size: int = 2) -> TorchIterator:
        """Batches as dicts of `torch.Tensor` (docs/torch.md).

        On CPU (`device=None`) a tensor shares the batch's memory: every batch
        is new memory, so a tensor kept stays valid and unchanged. With
        `device="cuda"` the next `buffer_size` batches are copied ahead from
        pinned memory (`pin_memory=None`: pinned for CUDA), `non_blocking`.
        Checkpoint the returned iterator's `state_dict()`: it leaves out the
        batches still waiting in its buffer.
        """
        from .torch import TorchIterator

        initial, with_states = self._with_states(lambda batch: batch)
        return TorchIterator(with_states, device, pin_memory, buffer_size,
                             initial_state=initial, length=self.__len__)

    def _with_states(self, ready: Callable[[Batch], Any]
                     ) -> tuple[dict[str, Any], Iterator[tuple[Any, dict[str, Any]]]]:
        """The state now, and each batch (through `ready`) with the state after it:
        what a hand-off that buffers ahead (tether.ahead) checkpoints."""
        return self.state_dict(), ((ready(batch), self.state_dict()) for batch in self)

    def to_torch_dataset(self) -> Any:
        """This loader as a `torch.utils.data.IterableDataset` of whole batches,
        from where it is now: `DataLoader(ds, batch_size=None)`, or torchdata's
        `StatefulDataLoader` to checkpoint and resume mid-epoch. Each pass over
        it is one epoch (see tether.torch_dataset)."""
        from .torch_dataset import LoaderDataset

        return LoaderDataset(self)

    def to_grain(self) -> Any:
        """This loader as a `grain.IterDataset` of batches, from where it is now:
        chain `.map`/`.filter`/`.batch`; its iterator's `get_state()` is
        `state_dict()` after the batch last yielded (see docs/jax.md#grain)."""
        from .grain import LoaderIterDataset

        return LoaderIterDataset(self)

    def _jax_ready(self, batch: Batch) -> Batch:
        kinds = {c.name: c.kind for c in self.plan.columns} if self.plan else {}
        check_for_jax(batch, kinds)
        return batch

    def stats(self) -> dict[str, Any]:
        """This iteration in figures: rows, samples/s, MB/s on the wire, the
        compression ratio, the share of time the loop waited for data and those
        seconds by cause (network, daemon, loader: see tether.progress); and
        what it left out or cut: corrupt images skipped, sequences truncated by
        `pad`, with `pack` the share of slots filled; with a `tether.sync`
        running, the bytes it sent home (`synced_bytes`) over the same link."""
        figures: dict[str, Any] = dict(self._counts)
        if self._progress is not None:
            figures.update(self._progress.figures())
        if self._packer is not None:
            figures.update(self._packer.stats.as_dict())
        if self._assembly is not None and self._assembly.cached is not None:
            figures.update(self._assembly.cached.cache.figures())
        syncing = sys.modules.get("tether.results")  # tether.sync shares the link
        if syncing is not None:
            figures["synced_bytes"] = syncing.bytes_synced()
        return figures

    # Pickling: the request and where it is, never the connections (they open
    # again in the new process): a Loader crosses into a spawned process.

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "seed_given": self._seed_given, "batch_size": self.batch_size,
                "sequences": self.sequences, "reach": self.reach, "cache": self.cache,
                "progress": self._show_progress, "state": self.state_dict()}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        self.spec, self._seed_given = saved["spec"], saved["seed_given"]
        self.batch_size, self.sequences = saved["batch_size"], saved["sequences"]
        self.reach, self.cache, self._show_progress = saved["reach"], saved["cache"], \
            saved["progress"]
        self._counts = {}
        tune_allocator()
        self._channels = Channels(self.reach)
        _LIVE.add(self)
        self.load_state_dict(saved["state"])

    def _clone(self) -> Loader:
        """A new loader of the same request, starting where this one is."""
        clone = Loader.__new__(Loader)
        clone.__setstate__(self.__getstate__())
        return clone

    def _stop(self) -> None:
        if self._assembly is not None:
            self._assembly.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called (the loader can no longer stream)."""
        return self._channels.closed

    def close(self) -> None:
        """Stop streaming and free the connection."""
        self._stop()
        self._channels.close()

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


def _fingerprints(restored: LoaderState | None, reach: Reach) -> list[str]:
    """The dataset version each daemon must serve to resume `restored` ("" any)."""
    if restored and restored.fingerprint:
        return restored.fingerprint.split(",")
    return [""] * len(reach.endpoints)
