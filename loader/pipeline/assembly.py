"""One iteration's stages up to the batcher, assembled: for each daemon a
resumable stream, its decoder (with the image stage) and, with `cache=`, the
disk cache; then the exactly-once order check, or the merge of the parts of
a dataset served by several daemons. Closing the assembly stops them all.

    Channels    the loader's connections, one a daemon, kept across iterations
    Assembly    one iteration's streams, decoders and cache
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import grpc
import numpy as np

from ..cache.cached_shards import CachedShards, cached_columns, then
from ..cache.row_cache import RowCache, cache_key
from ..client import Client
from ..options import CacheOptions, Reach
from ..progress import total_waits
from ..wire import rpc
from ..wire.checksums import offered_checksums
from ..wire.codecs import available_codecs
from ..wire.errors import DatasetError, TetherError, require
from ..wire.plan import HostPlan, combine
from ..wire.preload import preload
from ..wire.spec import Connection, StreamSpec, layout_from_proto
from ..wire.tls import forget as forget_certificate
from ..wire.v1 import tether_pb2 as pb
from .decoder import Decoder, Shard, Waits
from .images import image_step
from .merger import Merger, PartQueue
from .ordering import PlanOrder
from .receiver import connect_now
from .resumable import ResumableStream

log = logging.getLogger(__name__)

Release = Callable[[Shard], None]


class Channels:
    """A channel to each daemon, opened at once: the TLS handshakes overlap
    the caller's own set-up (and the import of what the first frame needs:
    the codecs' library with `codecs`), and a failed stream gets a fresh channel."""

    def __init__(self, reach: Reach, codecs: bool = True) -> None:
        self.reach = reach
        self.closed = False
        self._channels = [rpc.open_channel(e, reach.proxy) for e in reach.endpoints]
        for channel in self._channels:
            connect_now(channel)
        preload(codecs)

    def __getitem__(self, index: int) -> grpc.Channel:
        require(not self.closed, "this loader is closed: make a new one (state_dict() and "
                "load_state_dict() carry its position over)")
        return self._channels[index]

    def reopen(self, index: int) -> grpc.Channel:
        """After a failure: whoever answers now shows its certificate anew."""
        endpoint = self.reach.endpoints[index]
        forget_certificate(endpoint)
        self._channels[index] = rpc.open_channel(endpoint, self.reach.proxy)
        return self._channels[index]

    def close(self) -> None:
        self.closed = True
        for channel in self._channels:
            channel.close()


class Assembly:
    """The stages of one iteration, up to the shards the batcher takes."""

    def __init__(self, channels: Channels, cache: CacheOptions | None,
                 counts: dict[str, int]) -> None:
        self.channels = channels
        self.reach = channels.reach
        self.cache = cache
        self.counts = counts  # images skipped, shared with the loader's stats()
        self.streams: list[ResumableStream] = []
        self.decoders: list[Decoder] = []
        self.cached: CachedShards | None = None
        self.plan: pb.StreamPlan | None = None  # the (first) daemon's plan
        self.host_plan: HostPlan | None = None
        self._closers: list[Any] = []

    def open(self, spec: StreamSpec, fingerprints: Sequence[str]) -> tuple[Iterable[Shard],
                                                                          Release]:
        """The shards of `spec`, in plan order, and what to call when each is consumed.
        `fingerprints`: the dataset version each daemon must still serve ("" any)."""
        require(len(fingerprints) == len(self.reach.endpoints),
                f"this state is of a dataset on {len(fingerprints)} daemons, not "
                f"{len(self.reach.endpoints)}")
        if len(self.reach.endpoints) > 1:  # the merger releases each part's shards itself
            return self._open_parts(spec, fingerprints), lambda shard: None
        stream, shards, release = self._stream(0, spec, Connection(
            fingerprint=fingerprints[0], wants=self.cache is not None))
        self.plan, self.host_plan = stream.plan, stream.host_plan
        return PlanOrder(shards, stream.host_plan), release

    @property
    def fingerprint(self) -> str:
        """The dataset version(s) this iteration streams, one a daemon."""
        return ",".join(stream.plan.fingerprint for stream in self.streams)

    @property
    def reconnects(self) -> int:
        return sum(stream.reconnects for stream in self.streams)

    def waits(self) -> Waits:
        """What the training loop waited for so far, by cause (tether.progress)."""
        return total_waits(decoder.waits for decoder in self.decoders)

    def _stream(self, index: int, spec: StreamSpec, connection: Connection
                ) -> tuple[ResumableStream, Iterable[Shard], Release]:
        """Open one daemon's stream, with its window and a release that acks it;
        with `connection.wants`, behind the disk cache (its shards then come from there)."""
        reach = self.reach
        stream = ResumableStream(
            self.channels[index], spec, reach.prefetch, reach.retry,
            rpc.call_metadata(reach.endpoints[index]),
            reopen=lambda: self.channels.reopen(index), name=reach.endpoints[index].target,
            connection=replace(connection, accept_codecs=tuple(available_codecs()),
                               accept_checksums=tuple(offered_checksums(
                                   reach.endpoints[index].tls != "off")),
                               decode_threads=reach.decode_threads))
        self._closers.append(stream)
        self.streams.append(stream)
        plan = stream.open()
        window = max(reach.prefetch, stream.host_plan.batch_window)
        stream.grant(window - reach.prefetch)
        images = image_step(plan, spec)
        cached = self._disk_cache(stream, spec, window) if connection.wants else None
        decoder = Decoder(stream.frames(), reach.decode_threads,
                          then(images, cached.merge) if cached else images)
        self.decoders.append(decoder)
        self._closers.append(decoder)
        if cached is not None:
            self.cached = cached
            cached.attach(decoder)
            self._closers.append(cached)  # after the decoder: its threads write to it
        return stream, cached or decoder, self._release(stream, decoder)

    def _release(self, stream: ResumableStream, decoder: Decoder) -> Release:
        reported = [0.0]  # decoder wait already reported to the daemon

        def release(shard: Shard) -> None:
            if shard.skipped:  # corrupt images left out, by the daemon or the decoder
                self.counts["images_skipped"] = \
                    self.counts.get("images_skipped", 0) + len(shard.skipped)
            if not shard.streamed:  # read from the disk cache: nothing to acknowledge
                return
            waited, reported[0] = decoder.waited_seconds - reported[0], decoder.waited_seconds
            stream.release(shard.epoch, shard.sequence, waited, shard.decode_seconds,
                           shard.images_decoded)

        return release

    def _disk_cache(self, stream: ResumableStream, spec: StreamSpec,
                    window: int) -> CachedShards:
        """The disk cache of this stream's rows, keyed by everything that makes them."""
        plan = stream.plan
        what = {"dataset": spec.dataset, "filter": spec.filter, "sql": spec.sql,
                "image_size": spec.image_size, "num_rows": plan.num_rows,
                "process": spec.process_index, "daemon": _daemon_identity(self.reach)}
        cache = RowCache(self.cache.directory, self.cache.limit, cache_key(what),
                         {**what, "fingerprint": plan.fingerprint},
                         cached_columns(plan, spec.image_size), plan.num_rows)
        return CachedShards(cache, stream, stream.host_plan, window)

    def _open_parts(self, spec: StreamSpec, fingerprints: Sequence[str]) -> Iterable[Shard]:
        """One dataset served in parts by several daemons, merged into one order."""
        infos = self.describe_parts(spec)
        layouts = tuple(layout_from_proto(info.layout) for info in infos)
        parts = []
        for index, info in enumerate(infos):
            stream, decoder, release = self._stream(index, spec, Connection(
                fingerprint=fingerprints[index] or info.fingerprint, parts=layouts,
                part_index=index))
            parts.append(PartQueue(f"daemon {stream.name}", decoder, release))
        self.plan = plan = self.streams[0].plan
        self.host_plan = spec.plan_on(combine(layouts), plan.shard_rows)
        columns = {c.name: (np.dtype(c.dtype), tuple(c.shape)) for c in plan.columns}
        return Merger(self.host_plan, parts, [layout.num_rows for layout in layouts], columns)

    def describe_parts(self, spec: StreamSpec) -> list[pb.DatasetInfo]:
        """Each daemon's part of `spec`'s dataset, checked to be parts of one dataset."""
        _distinct_daemons(self.reach.endpoints)
        infos = [self._describe(i, spec) for i in range(len(self.reach.endpoints))]
        if len(infos) == 1:
            return infos
        versions: dict[str, str] = {}
        for endpoint, info in zip(self.reach.endpoints, infos, strict=True):
            twin = versions.setdefault(info.fingerprint, endpoint.target)
            if twin != endpoint.target:
                raise DatasetError(
                    f"{twin} and {endpoint.target} serve the same version of {spec.dataset!r} "
                    "(the same files): as two parts, every row would come twice; give "
                    "each part once")
        variable = [c.name for c in infos[0].columns if c.kind and
                    (not spec.columns or c.name in spec.columns)]
        require(not variable, f"columns {variable} vary in length or are images: a dataset "
                "split over several daemons serves fixed-shape columns only (for now); "
                "serve it from one daemon, or pass columns=[...] without them")
        schemas = [_schema(info, spec.columns) for info in infos]
        first = self.reach.endpoints[0].target
        for endpoint, schema in zip(self.reach.endpoints[1:], schemas[1:], strict=True):
            if schema != schemas[0]:
                raise DatasetError(
                    f"{endpoint.target} serves {spec.dataset!r} with columns {schema}, "
                    f"{first} with {schemas[0]}: the parts of one dataset must have the same "
                    "columns, dtypes and shapes")
        return infos

    def _describe(self, index: int, spec: StreamSpec) -> pb.DatasetInfo:
        with Client(self.reach.endpoints[index], channel=self.channels[index]) as client:
            try:
                return client.describe(spec.dataset, spec.shuffle_window_bytes, spec.filter)
            except TetherError as exc:
                raise type(exc)(f"{self.reach.endpoints[index].target}: {exc}") from None

    def __enter__(self) -> Assembly:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        # In order: cancel the stream first, so the decoder's thread can end.
        closers, self._closers = self._closers, []
        for closer in closers:
            closer.close()


def _schema(info: pb.DatasetInfo, columns: Sequence[str]) -> list[tuple[str, str, tuple]]:
    """(name, dtype, shape) of the requested columns (all when none named)."""
    return [(c.name, c.dtype, tuple(c.shape)) for c in info.columns
            if not columns or c.name in columns]


def _distinct_daemons(endpoints: Sequence[Any]) -> None:
    """The parts' daemons are all different: not one listed twice, by its
    address or by its certificate (another name for the same daemon)."""
    seen: dict[str, str] = {}
    for endpoint in endpoints:
        names = [endpoint.target] + ([endpoint.fingerprint] if endpoint.fingerprint else [])
        for key in names:
            first = seen.get(key)
            require(first is None, f"{first} and {endpoint.target} are the same daemon: as "
                    "two parts, every row would come twice; list each daemon once")
        for key in names:
            seen[key] = endpoint.target


def _daemon_identity(reach: Reach) -> str:
    """Which daemon(s) a cache entry is of: two daemons serving a dataset of one
    name through one cache folder are two entries, not versions of one (each
    would delete the other's). A daemon is its certificate where it has one
    (the same across restarts), else its address."""
    return ",".join(e.fingerprint or e.target for e in reach.endpoints)
