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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .cache.cached_shards import CachedShards, cached_columns, then
from .cache.row_cache import DEFAULT_CACHE_LIMIT, RowCache, cache_key
from .client import Client
from .colab import resolve_url
from .pipeline.batcher import Batch, Batcher
from .pipeline.decoder import Decoder, Shard
from .pipeline.merger import Merger, PartQueue
from .pipeline.ordering import PlanOrder
from .pipeline.receiver import connect_now
from .pipeline.resumable import ResumableStream
from .progress import Progress, require_tqdm, total_waits
from .retry import RetryPolicy
from .sequences.delivery import SequenceOptions, check_for_jax, finish_batch
from .state import LoaderState
from .wire import rpc
from .wire.allocator import tune_allocator
from .wire.checksums import available_checksums
from .wire.codecs import NAMES as CODEC_NAMES
from .wire.codecs import available_codecs
from .wire.errors import DatasetError, ProtocolError, RequestError, TetherError
from .wire.images.columns import decode_shard_images
from .wire.plan import HostPlan, Position, combine
from .wire.ragged import IMAGE, UTF8, Ragged
from .wire.sizes import parse_size
from .wire.spec import StreamSpec, layout_from_proto
from .wire.tls import forget as forget_certificate
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

    def __init__(
        self,
        url: str | Endpoint | Sequence[str | Endpoint] | None = None,
        dataset: str | None = None,
        batch_size: int | None = None,
        *,
        columns: Sequence[str] | None = None,
        shuffle: bool = False,
        seed: int | None = None,
        shuffle_window: int | str | None = None,
        num_epochs: int | None = 1,
        prefetch: int = 8,
        process_index: int | None = None,
        process_count: int | None = None,
        drop_last: bool = False,
        codec: str = "auto",
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        decode_threads: int | None = None,
        retry: RetryPolicy | None = None,
        proxy: str | None = None,
        image_size: tuple[int, int] | None = None,
        decode: str = "auto",
        on_bad_image: str = "error",
        pad: dict[str, int] | None = None,
        pack: dict[str, int] | None = None,
        pad_value: int = 0,
        filter: str | None = None,
        sql: str | None = None,
        cache: str | os.PathLike | None = None,
        cache_limit: int | str = DEFAULT_CACHE_LIMIT,
        progress: bool = False,
    ) -> None:
        url = resolve_url(url)  # None: $TETHER_URL, or Colab's secret TETHER_URL
        _check(batch_size is not None, "pass batch_size=...")
        _check(dataset is not None or sql is not None,
               "name a dataset (tether ls lists them), or pass sql=...")
        if dataset is None:  # the query's result, named in messages
            dataset = "sql"
        _check(prefetch >= 1, f"prefetch must be at least 1 shard, got {prefetch}")
        _check(codec in ("auto", *available_codecs()) or codec not in CODEC_NAMES,
               f"codec {codec!r} needs pyarrow on this machine: pip install pyarrow")
        process_index, process_count = _process_layout(process_index, process_count)
        _check(not (shuffle and process_count > 1 and seed is None),
               "several processes must share one seed to split one shuffled order: pass seed=")
        # A shuffled run always has a seed, chosen here if not given, so that
        # it can be reproduced and resumed.
        self._seed_given = seed is not None
        if seed is None:
            seed = secrets.randbits(63) if shuffle else 0
        decode = _decode_place(decode, image_size)
        self.spec = StreamSpec(
            dataset=dataset, batch_size=batch_size, columns=tuple(columns or ()),
            shuffle=shuffle, seed=seed, shuffle_window_bytes=_window_bytes(shuffle_window),
            num_epochs=num_epochs, process_index=process_index, process_count=process_count,
            drop_last=drop_last, shard_bytes=shard_bytes, codec=codec,
            image_size=image_size, decode=decode, on_bad_image=on_bad_image,
            filter=filter or "", sql=sql or "",
        )
        self.batch_size = batch_size  # rows of a batch handed out (packed rows with pack=)
        self.sequences = SequenceOptions.of(pad, pack, pad_value, self.spec)
        if self.sequences.pack:  # the stream's batches are rounds of sequences to pack
            self.spec = replace(self.spec, batch_size=self.sequences.round_size(batch_size),
                                drop_last=drop_last and process_count > 1)
        urls = [url] if isinstance(url, str | Endpoint) else list(url)
        _check(bool(urls), "pass the URL `tether serve` printed, or a list of them")
        self.endpoints = [u if isinstance(u, Endpoint) else parse_url(u) for u in urls]
        self.endpoint = self.endpoints[0]
        _check(cache is None or len(self.endpoints) == 1,
               "cache= keeps the rows of a dataset served by one daemon; a dataset split over "
               "several daemons cannot be cached (yet)")
        _check(cache is None or on_bad_image == "error",
               "cache= needs every row delivered: on_bad_image='skip' leaves rows out")
        self.cache = cache  # a directory on this machine's disk for rows (row_cache.py)
        self.cache_limit = parse_size(cache_limit) if isinstance(cache_limit, str) \
            else int(cache_limit)
        self.prefetch = prefetch
        self.decode_threads = decode_threads or min(4, os.cpu_count() or 1)
        self.retry = retry or RetryPolicy()
        self.proxy = proxy  # an HTTP CONNECT proxy, "http://HOST:PORT" (rpc.open_channel)
        self.plan: pb.StreamPlan | None = None  # the (first) daemon's plan of this iteration
        self.host_plan: HostPlan | None = None
        self._fingerprint = ""  # the dataset version(s) this iteration streams
        self._restored: LoaderState | None = None  # where the next iteration starts
        self._streams: list[ResumableStream] = []
        self._batcher: Batcher | None = None
        self._packer: Any = None  # tether.sequences.packer.Packer, with pack=
        self._started: LoaderState | None = None  # where this iteration began
        self._counts: dict[str, int] = {}  # images skipped, sequences truncated
        if progress:
            require_tqdm()
        self._show_progress = progress
        self._decoders: list[Decoder] = []
        self._cached: CachedShards | None = None  # this iteration's disk cache (cache=)
        self._progress: Progress | None = None
        tune_allocator()
        self._channels = [rpc.open_channel(endpoint, proxy) for endpoint in self.endpoints]
        for channel in self._channels:  # handshakes now, overlapping the caller's set-up
            connect_now(channel)
        self._closers: list[Any] = []
        _LIVE.add(self)

    @property
    def seed(self) -> int:
        """The shuffle's seed (drawn at random when not given; kept in the state)."""
        return self.spec.seed

    def __iter__(self) -> Iterator[Batch]:
        self._stop()  # one stream at a time: a new iteration starts afresh
        self._streams, self._decoders = [], []
        restored, self._restored = self._restored, None
        self._started, self._packer = restored, None
        spec = restored.spec if restored else self.spec
        fingerprints = restored.fingerprint.split(",") if restored and restored.fingerprint \
            else [""] * len(self.endpoints)
        _check(len(fingerprints) == len(self.endpoints),
               f"this state is of a dataset on {len(fingerprints)} daemons, not "
               f"{len(self.endpoints)}")
        if len(self.endpoints) == 1:
            shards, release = self._open_one(spec, fingerprints[0], self.cache is not None)
        else:  # the merger releases each part's shards as it copies them
            shards, release = self._open_parts(spec, fingerprints), lambda shard: None
        self._fingerprint = ",".join(s.plan.fingerprint for s in self._streams)
        self.sequences.check_columns({c.name: c.kind for c in self.plan.columns},
                                     {c.name: c.dtype for c in self.plan.columns})
        self._batcher = Batcher(shards, spec.batch_size, spec.global_batch, spec.start, release,
                                drop_short=spec.drop_last)
        batches: Iterable[Batch] = self._batcher
        if self.sequences.pack:
            from .sequences.packer import Packer

            column, length = self.sequences.pack
            self._packer = Packer(self._rounds(), column, length, self.batch_size,
                                  self.sequences.pad_value,
                                  skip=restored.packed_rows if restored else 0)
            batches = self._packer
        decoders = list(self._decoders)
        self._progress = Progress(lambda: total_waits(d.waits for d in decoders),
                                  self._epoch_rows, self._show_progress)
        return self._guarded(self._progress.wrap(
            (finish_batch(batch, self.sequences, self._counts) for batch in batches),
            lambda: self.epoch))

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

    def _stream(self, index: int, spec: StreamSpec, fingerprint: str, wants: bool = False,
                **connection) -> tuple[ResumableStream, Iterable[Shard],
                                       Callable[[Shard], None]]:
        """Open one daemon's stream, with its window and a release that acks it;
        with `wants`, behind the disk cache (its shards then come from there)."""
        endpoint = self.endpoints[index]

        def reopen() -> Any:  # after a failure: whoever answers now shows its certificate
            forget_certificate(endpoint)
            self._channels[index] = rpc.open_channel(endpoint, self.proxy)
            return self._channels[index]

        stream = ResumableStream(
            self._channels[index], spec, self.prefetch, self.retry,
            rpc.call_metadata(endpoint), reopen=reopen, name=endpoint.target,
            accept_codecs=available_codecs(), accept_checksums=available_checksums(),
            fingerprint=fingerprint, decode_threads=self.decode_threads, wants=wants,
            **connection)
        self._closers.append(stream)
        self._streams.append(stream)
        plan = stream.open()
        window = max(self.prefetch, math.ceil(spec.batch_size / max(plan.shard_rows, 1)) + 1)
        stream.grant(window - self.prefetch)
        images = self._image_step(plan)
        cached = self._disk_cache(stream, spec, window) if wants else None
        decoder = Decoder(stream.frames(), self.decode_threads,
                          then(images, cached.merge) if cached else images)
        self._decoders.append(decoder)
        self._closers.append(decoder)
        if cached is not None:
            self._cached = cached
            cached.attach(decoder)
            self._closers.append(cached)  # after the decoder: its threads write to it
        reported = [0.0]  # decoder wait already reported to the daemon

        def release(shard: Shard) -> None:
            if shard.skipped:  # corrupt images left out, by the daemon or the decoder
                self._counts["images_skipped"] = \
                    self._counts.get("images_skipped", 0) + len(shard.skipped)
            if not shard.streamed:  # read from the disk cache: nothing to acknowledge
                return
            waited, reported[0] = decoder.waited_seconds - reported[0], decoder.waited_seconds
            stream.release(shard.epoch, shard.sequence, waited, shard.decode_seconds,
                           shard.images_decoded)

        return stream, cached or decoder, release

    def _disk_cache(self, stream: ResumableStream, spec: StreamSpec,
                    window: int) -> CachedShards:
        """The disk cache of this stream's rows, keyed by everything that makes them."""
        plan = stream.plan
        what = {"dataset": spec.dataset, "filter": spec.filter, "sql": spec.sql,
                "image_size": spec.image_size, "num_rows": plan.num_rows,
                "process": spec.process_index}
        cache = RowCache(self.cache, self.cache_limit, cache_key(what),
                         {**what, "fingerprint": plan.fingerprint},
                         cached_columns(plan, spec.image_size), plan.num_rows)
        return CachedShards(cache, stream, stream.host_plan, window)

    def _image_step(self, plan: pb.StreamPlan) -> Callable[[Shard], Shard] | None:
        """Decoding of the images the daemon sent as files, in the decode threads."""
        names = [c.name for c in plan.columns if c.kind == IMAGE]
        size = self.spec.image_size
        if not names or size is None:
            return None
        skip_bad = self.spec.on_bad_image == "skip"

        row_names = plan.row_name_column  # the column naming the files, when carried

        def decode(shard: Shard) -> Shard:
            paths = shard.columns.get(row_names) if row_names else None

            def name_of(row: int) -> str:
                if isinstance(paths, Ragged) and paths.kind == UTF8:
                    return paths[row]
                return f"row {row} of shard {shard.sequence} of epoch {shard.epoch}"

            if shard.skipped and any(isinstance(shard.columns[n], Ragged) for n in names):
                raise ProtocolError(f"shard {shard.sequence} of epoch {shard.epoch} skips rows "
                                    "yet leaves its images undecoded")
            columns, dropped, seconds, images = decode_shard_images(
                shard.columns, names, size, skip_bad, name_of)
            return replace(shard, columns=columns, num_rows=shard.num_rows - len(dropped),
                           skipped=tuple(dropped.tolist()) or shard.skipped,
                           decode_seconds=seconds, images_decoded=images)

        return decode

    def _open_one(self, spec: StreamSpec, fingerprint: str,
                  cached: bool) -> tuple[Iterable[Shard], Callable[[Shard], None]]:
        stream, shards, release = self._stream(0, spec, fingerprint, wants=cached)
        self.plan, self.host_plan = stream.plan, stream.host_plan
        return PlanOrder(shards, stream.host_plan), release

    def _open_parts(self, spec: StreamSpec, fingerprints: list[str]) -> Iterable[Shard]:
        """One dataset served in parts by several daemons, merged into one order."""
        infos = [self._describe(i, spec) for i in range(len(self.endpoints))]
        variable = [c.name for c in infos[0].columns if c.kind and
                    (not spec.columns or c.name in spec.columns)]
        _check(not variable, f"columns {variable} vary in length or are images: a dataset "
               "split over several daemons serves fixed-shape columns only (for now); "
               "serve it from one daemon, or pass columns=[...] without them")
        schemas = [_schema(info, spec.columns) for info in infos]
        for endpoint, schema in zip(self.endpoints[1:], schemas[1:], strict=True):
            if schema != schemas[0]:
                raise DatasetError(
                    f"{endpoint.target} serves {spec.dataset!r} with columns {schema}, "
                    f"{self.endpoint.target} with {schemas[0]}: the parts of one dataset must "
                    "have the same columns, dtypes and shapes")
        layouts = [layout_from_proto(info.layout) for info in infos]
        parts = []
        for index, info in enumerate(infos):
            stream, decoder, release = self._stream(
                index, spec, fingerprints[index] or info.fingerprint, parts=layouts,
                part_index=index)
            parts.append(PartQueue(f"daemon {self.endpoints[index].target}", decoder, release))
        self.plan = plan = self._streams[0].plan
        self.host_plan = spec.plan_on(combine(layouts), plan.shard_rows)
        columns = {c.name: (np.dtype(c.dtype), tuple(c.shape)) for c in plan.columns}
        return Merger(self.host_plan, parts, [layout.num_rows for layout in layouts], columns)

    def _describe(self, index: int, spec: StreamSpec) -> pb.DatasetInfo:
        with Client(self.endpoints[index], channel=self._channels[index]) as client:
            try:
                return client.describe(spec.dataset, spec.shuffle_window_bytes, spec.filter)
            except TetherError as exc:
                raise type(exc)(f"{self.endpoints[index].target}: {exc}") from None

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
        return sum(stream.reconnects for stream in self._streams)

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

        initial = self.state_dict()
        with_states = ((self._jax_ready(batch), self.state_dict()) for batch in self)
        return DeviceIterator(with_states, sharding, buffer_size, initial_state=initial,
                              layout=(self.spec.process_index, self.spec.process_count))

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
        `pad`, with `pack` the share of slots filled."""
        figures: dict[str, Any] = dict(self._counts)
        if self._progress is not None:
            figures.update(self._progress.figures())
        if self._packer is not None:
            figures.update(self._packer.stats.as_dict())
        if self._cached is not None:
            figures.update(self._cached.cache.figures())
        return figures

    def _stop(self) -> None:
        # In order: cancel the stream first, so the decoder's thread can end.
        closers, self._closers = self._closers, []
        for closer in closers:
            closer.close()

    def close(self) -> None:
        """Stop streaming and free the connection."""
        self._stop()
        for channel in self._channels:
            channel.close()

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


def _schema(info: pb.DatasetInfo, columns: Sequence[str]) -> list[tuple[str, str, tuple]]:
    """(name, dtype, shape) of the requested columns (all when none named)."""
    return [(c.name, c.dtype, tuple(c.shape)) for c in info.columns
            if not columns or c.name in columns]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RequestError(message)


def _process_layout(index: int | None, count: int | None) -> tuple[int, int]:
    """The given process index and count, else JAX's (when jax is imported), else 0 of 1."""
    if index is None or count is None:
        from .jax import process_layout

        jax_index, jax_count = process_layout() or (0, 1)
        index = jax_index if index is None else index
        count = jax_count if count is None else count
    return index, count


def _decode_place(decode: str, image_size: tuple[int, int] | None) -> str:
    """Where images may be decoded: without Pillow here, only on the daemon."""
    from .wire.images.decode import available

    if image_size is None or available():
        return decode
    _check(decode != "loader", "decode='loader' needs Pillow on this machine: pip install "
           "'tether[images]', or decode='daemon'")
    return "daemon"


def _window_bytes(window: int | str | None) -> int:
    """shuffle_window as bytes of rows: an int, or a size such as "256MB"."""
    if window is None:
        return 0
    if isinstance(window, str):
        from .wire.sizes import parse_size

        try:
            return parse_size(window)
        except ValueError as exc:
            raise RequestError(f"shuffle_window: {exc}") from None
    return window
