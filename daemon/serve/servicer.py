"""The gRPC servicer: translates calls into catalog lookups and shard streams.

It holds no data logic. Every TetherError becomes a status code with the
error's message; anything else is logged and answered INTERNAL. Either way
only that one call fails: the daemon goes on serving.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc

from tether.wire import filters, rpc
from tether.wire.allocator import trim_allocator
from tether.wire.checksums import choose_checksum
from tether.wire.errors import Busy, DatasetError, RequestError, TetherError, to_status
from tether.wire.plan import Cursor, HostPlan, Layout, ShardTask, combine, part_tasks, shard_tasks
from tether.wire.spec import Connection, StreamSpec, layout_to_proto, parse_filter
from tether.wire.v1 import tether_pb2 as pb

from ..logsafe import RateLimited, clip
from ..prepare.catalog import Catalog
from ..prepare.remote_sql import run_remote_query
from ..sources import Column, Source
from ..stream.budget import MemoryBudget
from ..stream.codec_policy import codec_policy, peer_is_local
from ..stream.columns import Vocabularies, stream_columns
from ..stream.encoder import ShardEncoder
from ..stream.filtering import FilteredSource, FilterIndex, column_types
from ..stream.images import column_info, image_decoding, sized_for_pixels
from ..stream.planner import plan_stream, source_layout, stream_window
from ..stream.shard_stream import DEFAULT_STALL_SECONDS, ShardStream
from ..stream.stats import Stats, StreamStats
from ..stream.tables import ipc_codec, table_chunks
from ..stream.wanted import WantedShards
from .auth import came_over_tls
from .files import SharedFiles
from .results import ResultsSink, overwrite_requested

log = logging.getLogger(__name__)

# A refusal's message as the caller gets it: long enough for any real one.
REPLY_CHARS = 2_000
_refusals = RateLimited(log)

# Streams one address may hold at once: half the daemon's, so one client
# (or one stolen token) cannot take every RPC slot.
MAX_STREAMS_PER_PEER = 32
DOWNLOAD_CHUNK_BYTES = 1 << 20


class Servicer:
    def __init__(self, catalog: Catalog, pool: Executor, workers: int, stats: Stats,
                 results: ResultsSink, budget: MemoryBudget | None = None,
                 stall_seconds: float | None = None, files: SharedFiles | None = None) -> None:
        self.catalog = catalog
        self.pool = pool
        self.workers = workers
        self.stats = stats
        self.results = results
        self.files = files or SharedFiles(results.root)  # downloads: results and shares
        self.budget = budget or MemoryBudget()
        self.stall_seconds = stall_seconds or float(
            os.environ.get("TETHER_STALL_SECONDS") or DEFAULT_STALL_SECONDS)
        self.filter_index = FilterIndex(catalog.cache_dir)
        self.vocabularies = Vocabularies()  # of text columns streamed as categories

    def _refuse(self, context: grpc.ServicerContext, error: Exception) -> None:
        # Messages carry what the caller sent (a dataset name, a column): clipped
        # in the log and in the reply, and repeated refusals logged a few a minute.
        self.stats.error()
        if isinstance(error, TetherError):
            code, details = to_status(error)
            _refusals.info("refused", "refused %s: %s", context.peer(), clip(error))
            context.abort(code, clip(details, REPLY_CHARS))
        log.exception("internal error serving %s", context.peer(), exc_info=error)
        what = clip(f"{type(error).__name__}: {error}", REPLY_CHARS)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in the daemon ({what}); see log")

    def ListDatasets(self, request: pb.ListDatasetsRequest, context) -> pb.ListDatasetsResponse:
        return pb.ListDatasetsResponse(datasets=self.catalog.infos(),
                                       left_out=self.catalog.left_out)

    def Describe(self, request: pb.DescribeRequest, context) -> pb.DatasetInfo:
        source = self.catalog.get(request.dataset)  # a clear error for unknown or broken ones
        info = self.catalog.info(request.dataset)
        if request.filter:
            source = self._filtered(source, parse_filter(request.filter), context)
            info.matching_rows = source.num_rows
        info.layout.CopyFrom(layout_to_proto(source_layout(source,
                                                           request.shuffle_window_bytes)))
        return info

    def Status(self, request: pb.StatusRequest, context) -> pb.StatusResponse:
        return self.stats.to_proto()

    def Upload(self, chunks: Iterator[pb.UploadChunk], context) -> pb.UploadResult:
        first = next(chunks, None)
        if first is None:
            raise RequestError("an upload must send at least one chunk naming the file")

        def data() -> Iterator[bytes]:
            yield first.data
            for chunk in chunks:
                yield chunk.data

        if not first.folder:  # (a folder's files are named inside it; FinishFolder checks)
            self.files.check_not_shared(first.name)
        stored = self.results.store(first.name, first.total_size, data(),
                                    overwrite=overwrite_requested(context.invocation_metadata()),
                                    sha256=first.sha256, offset=first.offset, folder=first.folder)
        return pb.UploadResult(name=stored.name, size=stored.size, sha256=stored.sha256)

    def UploadStatus(self, request: pb.UploadProbe, context) -> pb.UploadOffset:
        return pb.UploadOffset(offset=self.results.held(request.name, request.total_size,
                                                        request.sha256, request.folder))

    def FinishFolder(self, request: pb.FinishFolderRequest, context) -> pb.UploadResult:
        self.files.check_not_shared(request.name)
        stored = self.results.finish_folder(request.folder, request.name, list(request.files),
                                            request.overwrite)
        return pb.UploadResult(name=stored.name, size=stored.size, sha256=stored.sha256)

    def Files(self, request: pb.FilesRequest, context) -> pb.FilesResponse:
        files, truncated = self.files.listing(request.prefix)
        return pb.FilesResponse(files=files, truncated=truncated)

    def Download(self, request: pb.DownloadRequest, context) -> Iterator[pb.DownloadChunk]:
        """A file of the results folder or a share, from `offset`, its version pinned."""
        handle, info = self.files.open(request.name)  # hashed before taking a stream's place
        with handle, self._admitted(context, "download") as entry:
            if request.sha256 and request.sha256 != info.sha256:
                raise DatasetError(f"{clip(request.name, 100)!r} changed since this "
                                   "download began; download it again")
            if request.offset > info.size:
                raise RequestError(f"a download resumes at byte {request.offset} of a "
                                   f"{info.size}-byte file")
            yield pb.DownloadChunk(file=info)
            handle.seek(request.offset)
            left = info.size - request.offset  # never past what was announced
            while left and (data := handle.read(min(DOWNLOAD_CHUNK_BYTES, left))):
                left -= len(data)
                self.stats.sent(entry, len(data))
                yield pb.DownloadChunk(data=data)

    def Stream(self, requests: Iterator[pb.StreamRequest], context) -> Iterator[bytes]:
        first = next(requests, None)
        if first is None or first.WhichOneof("kind") != "open":
            raise RequestError("a stream must open with an OpenStream message")
        request = first.open
        with self._admitted(context, request.dataset) as entry:
            yield from self._open(request, context, entry).run(requests, context)

    def Read(self, request: pb.ReadRequest, context) -> Iterator[pb.TableChunk]:
        """A table as stored (tether.daemon.stream.tables), counted as a stream."""
        with self._admitted(context, request.dataset or "sql") as entry:
            source = self._query(request.sql) if request.sql else \
                self.catalog.get(request.dataset)
            codec = ipc_codec(request.codec, list(request.accept_codecs),
                              peer_is_local(context.peer()))
            for chunk in table_chunks(source, request, codec,
                                      choose_checksum(list(request.accept_checksums))):
                self.stats.sent(entry, len(chunk.ipc))
                yield chunk

    @contextlib.contextmanager
    def _admitted(self, context, dataset: str) -> Iterator[StreamStats]:
        """A stream's place among the peer's and in `tether status`, for its life."""
        host = context.peer().rsplit(":", 1)[0]
        if self.stats.streams_from(host) >= MAX_STREAMS_PER_PEER:
            raise Busy(f"{MAX_STREAMS_PER_PEER} streams from {host} are open already; close "
                       "some loaders (or wait for them to end) and try again")
        key, entry = self.stats.open_stream(context.peer(), clip(dataset))
        try:
            yield entry
        finally:
            self.stats.close_stream(key)
            trim_allocator()  # a closed stream's frames go back to the system

    def _query(self, sql: str) -> Source:
        """A loader's query (Loader(sql=...)): run read-only over the served
        datasets into a snapshot, when the owner allowed it."""
        if not self.catalog.preparation.allow_sql:
            raise RequestError("this daemon takes no SQL from loaders; its owner can allow "
                               "read-only queries with tether serve --allow-sql, or serve the "
                               "query as a dataset with --sql NAME=QUERY")
        return run_remote_query(sql, self.catalog.found(), self.catalog.cache_dir,
                                budget=self.budget)

    def _filtered(self, source: Source, expression: filters.Expr,
                  context: grpc.ServicerContext | None = None) -> FilteredSource:
        filters.check_columns(expression, column_types(source))
        wanted = context.is_active if context is not None else (lambda: True)
        return FilteredSource(source, expression,
                              self.filter_index.rows(source, expression, wanted))

    def _source(self, spec: StreamSpec, context: grpc.ServicerContext | None = None) -> Source:
        """The rows a stream reads: the dataset, or the loader's query; filtered."""
        source = self._query(spec.sql) if spec.sql else self.catalog.get(spec.dataset)
        if spec.expression is None:
            return source
        source = self._filtered(source, spec.expression, context)
        if not source.num_rows:
            raise RequestError(f"filter {spec.filter!r} selects no row of {spec.dataset!r} "
                               f"({source.base.num_rows} rows)")
        return source

    def _open(self, request: pb.OpenStream, context, entry) -> ShardStream:
        spec, connection = StreamSpec.from_proto(request), Connection.from_proto(request)
        source = self._source(spec, context)
        fingerprint = source.fingerprint  # a stat of every file: once per stream
        if connection.fingerprint and connection.fingerprint != fingerprint:
            raise DatasetError(f"dataset {source.name!r} changed since this stream was planned")
        part = _part(connection, spec, source) if connection.parts else None
        columns = sized_for_pixels(stream_columns(source, spec, self.vocabularies),
                                   spec.image_size)
        plan = plan_stream(spec, source, columns, connection.shard_rows,
                           part.layout if part else None)
        window = stream_window(plan, columns)
        tasks = _tasks(plan, part, connection.resume)
        local = peer_is_local(context.peer())
        codec = codec_policy(spec.codec, list(connection.accept_codecs), self.workers,
                             not connection.no_narrowing, local)
        context.add_callback(codec.close)  # its background climb stops with the stream
        log.info("stream %s -> %s: process %d of %d, %d batches of %d and %d shards of %d rows "
                 "per epoch, shuffle %s, codec %s, columns %s", source.name, context.peer(),
                 spec.process_index, spec.process_count, plan.batches(spec.start.epoch + 1),
                 spec.batch_size, plan.shards_in(spec.start.epoch + 1), plan.shard_rows,
                 spec.shuffle, spec.codec, ", ".join(c.name for c in columns))
        images = image_decoding(spec, columns, codec.link, self.workers, local,
                                connection.decode_threads)
        encoder = ShardEncoder(source, columns, plan, codec, not connection.no_narrowing,
                               choose_checksum(list(connection.accept_checksums),
                                               came_over_tls(context)), self.stats,
                               self.pool, fingerprint, images)
        wanted = _wanted(plan, connection.resume) if connection.wants else None
        return ShardStream(tasks, connection.initial_credits, encoder,
                           _plan_message(spec, plan, source, columns, fingerprint), self.pool,
                           self.stats, entry, window, codec.link, self.budget,
                           plan.shard_rows * sum(c.row_bytes for c in columns),
                           self.stall_seconds, wanted)


def _plan_message(spec: StreamSpec, plan: HostPlan, source: Source, columns: list[Column],
                  fingerprint: str) -> pb.StreamPlan:
    """What the stream's first frame announces: the plan the loader checks and follows."""
    full_epoch = spec.start.epoch + 1  # the start epoch may begin mid-way
    names = {c.name for c in columns}
    return pb.StreamPlan(
        fingerprint=fingerprint, num_rows=source.num_rows, shard_rows=plan.shard_rows,
        shards_per_epoch=plan.shards_in(full_epoch), batches_per_epoch=plan.batches(full_epoch),
        dropped_rows=plan.dropped_rows(full_epoch), layout=layout_to_proto(plan.layout),
        columns=[column_info(c, spec.image_size) for c in columns], seed=spec.seed,
        row_name_column=source.row_name_column if source.row_name_column in names else "",
    )


def _tasks(plan: HostPlan, part: _Part | None, resume: Cursor | None) -> Iterator[ShardTask]:
    """The stream's shards from `resume` on (its part's rows only, for a part)."""
    try:
        tasks = part_tasks(plan, part.rows, resume) if part else shard_tasks(plan, resume)
        if resume is not None:
            plan.normalize(resume)  # refuses a cursor before the start, here
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return tasks


def _wanted(plan: HostPlan, resume: Cursor | None) -> WantedShards:
    """The shards a caching loader names, from `resume` on."""
    orders = functools.lru_cache(maxsize=2)(plan.order)  # shards cross into the next epoch
    return WantedShards(plan, plan.normalize(resume) if resume else plan.first(),
                        lambda cursor: plan.shard(cursor, orders(cursor.epoch)))


@dataclass(frozen=True)
class _Part:
    layout: Layout  # of the whole dataset
    rows: range  # this daemon's part of it


def _part(connection: Connection, spec: StreamSpec, source: Source) -> _Part:
    """Where this daemon's rows lie in a dataset served by several daemons,
    after checking that its part is still what the loader described."""
    layouts = connection.parts
    if layouts[connection.part_index] != source_layout(source, spec.shuffle_window_bytes):
        raise DatasetError(f"dataset {source.name!r} is not what the loader was told when it "
                           "opened (its files changed?); open the loader again")
    offset = sum(layout.num_rows for layout in layouts[:connection.part_index])
    try:
        whole = combine(layouts)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return _Part(whole, range(offset, offset + source.num_rows))


def _guard_unary(servicer: Servicer, method: Callable) -> Callable:
    @functools.wraps(method)
    def call(request, context):
        try:
            return method(request, context)
        except Exception as exc:
            servicer._refuse(context, exc)

    return call


def _guard_stream(servicer: Servicer, method: Callable) -> Callable:
    @functools.wraps(method)
    def call(requests: Iterable, context) -> Iterator[bytes]:
        try:
            yield from method(requests, context)
        except Exception as exc:
            servicer._refuse(context, exc)

    return call


def handler(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The generic handler that serves `servicer` under tether.v1.Tether (the proto package)."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _guard_unary(servicer, getattr(servicer, name)),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in rpc.unary_methods().items()
    }
    handlers[rpc.UPLOAD] = grpc.stream_unary_rpc_method_handler(
        _guard_unary(servicer, servicer.Upload),
        request_deserializer=pb.UploadChunk.FromString,
        response_serializer=pb.UploadResult.SerializeToString,
    )
    for name, (request, response) in rpc.methods(server_streaming=True).items():  # Read, ...
        handlers[name] = grpc.unary_stream_rpc_method_handler(
            _guard_stream(servicer, getattr(servicer, name)),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
    handlers[rpc.STREAM] = grpc.stream_stream_rpc_method_handler(
        _guard_stream(servicer, servicer.Stream),
        request_deserializer=pb.StreamRequest.FromString,
        response_serializer=None,  # frames are already bytes; see tether.wire.framing
    )
    return grpc.method_handlers_generic_handler(rpc.SERVICE_NAME, handlers)
