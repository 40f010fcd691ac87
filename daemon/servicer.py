"""The gRPC servicer: translates calls into catalog lookups and shard streams.

It holds no data logic. Every TetherError becomes a status code with the
error's message; anything else is logged and answered INTERNAL. Either way
only that one call fails: the daemon goes on serving.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor

import grpc

from tether.wire import rpc
from tether.wire.checksums import choose_checksum
from tether.wire.errors import DatasetError, RequestError, TetherError, to_status
from tether.wire.v1 import tether_pb2 as pb

from .catalog import Catalog, column_info
from .codec_policy import codec_policy, peer_is_local
from .encoder import ShardEncoder
from .planner import Plan, shard_rows
from .results import ResultsSink
from .stats import Stats
from .stream import ShardStream

log = logging.getLogger(__name__)

# A stream's window, whatever the client asks: bytes bound memory, the shard
# count bounds the work queued for tiny shards (found by tests/test_fuzz.py).
MAX_WINDOW_BYTES = 1 << 30
MAX_WINDOW_SHARDS = 256


class Servicer:
    def __init__(self, catalog: Catalog, pool: Executor, workers: int, stats: Stats,
                 results: ResultsSink) -> None:
        self.catalog = catalog
        self.pool = pool
        self.workers = workers
        self.stats = stats
        self.results = results

    def _refuse(self, context: grpc.ServicerContext, error: Exception) -> None:
        self.stats.error()
        if isinstance(error, TetherError):
            log.info("refused %s: %s", context.peer(), error)
            context.abort(*to_status(error))
        log.exception("internal error serving %s", context.peer(), exc_info=error)
        what = f"{type(error).__name__}: {error}"
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in the daemon ({what}); see log")

    def ListDatasets(self, request: pb.ListDatasetsRequest, context) -> pb.ListDatasetsResponse:
        return pb.ListDatasetsResponse(datasets=self.catalog.infos())

    def Describe(self, request: pb.DescribeRequest, context) -> pb.DatasetInfo:
        self.catalog.get(request.dataset)  # raises a clear error for unknown or broken ones
        return self.catalog.info(request.dataset)

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

        stored = self.results.store(first.name, first.total_size, data())
        return pb.UploadResult(name=stored.name, size=stored.size, sha256=stored.sha256)

    def Stream(self, requests: Iterator[pb.StreamRequest], context) -> Iterator[bytes]:
        first = next(requests, None)
        if first is None or first.WhichOneof("kind") != "open":
            raise RequestError("a stream must open with an OpenStream message")
        request = first.open
        key, entry = self.stats.open_stream(context.peer(), request.dataset)
        try:
            yield from self._open(request, context, entry).run(requests, context)
        finally:
            self.stats.close_stream(key)

    def _open(self, request: pb.OpenStream, context, entry) -> ShardStream:
        source = self.catalog.get(request.dataset)
        columns = source.select(list(request.columns))
        fingerprint = source.fingerprint  # a stat of every file: once per stream
        if request.fingerprint and request.fingerprint != fingerprint:
            raise DatasetError(f"dataset {source.name!r} changed since this stream was planned")
        process_count = request.process_count or 1
        if request.process_index >= process_count:
            raise RequestError(f"process_index {request.process_index} is not below "
                               f"process_count {process_count}")
        shard_bytes = request.shard_bytes or rpc.DEFAULT_SHARD_BYTES
        if not 1 << 10 <= shard_bytes <= rpc.MAX_SHARD_BYTES:
            raise RequestError(f"shard_bytes must be between 1 KiB and "
                               f"{rpc.MAX_SHARD_BYTES >> 20} MiB, got {shard_bytes}")
        row_bytes = sum(c.row_bytes for c in columns)
        if row_bytes > rpc.MAX_SHARD_BYTES:
            raise RequestError(f"one row of {[c.name for c in columns]} is {row_bytes} bytes, "
                               f"over the {rpc.MAX_SHARD_BYTES >> 20} MiB frame limit")
        rows = request.shard_rows or shard_rows(row_bytes, shard_bytes, request.batch_size)
        if rows * row_bytes > rpc.MAX_SHARD_BYTES:
            raise RequestError(f"shard_rows {rows} makes shards over the "
                               f"{rpc.MAX_SHARD_BYTES >> 20} MiB frame limit")
        plan = Plan(source.num_rows, rows, request.shuffle, request.seed,
                    request.process_index, process_count)
        if plan.shards_per_epoch == 0 and request.num_epochs == 0:
            raise RequestError(
                f"process {request.process_index} of {process_count} gets no shard of "
                f"{source.name!r} ({plan.num_shards} shards) and would wait forever; "
                "use fewer processes or a smaller shard_bytes"
            )
        narrow = not request.no_narrowing
        codec = codec_policy(request.codec, list(request.accept_codecs), self.workers, narrow,
                             peer_is_local(context.peer()))
        log.info("stream %s -> %s: %d shards/epoch of %d rows, codec %s, columns %s",
                 source.name, context.peer(), plan.shards_per_epoch, plan.shard_rows,
                 request.codec or "auto",
                 ", ".join(c.name for c in columns))
        plan_message = pb.StreamPlan(
            fingerprint=fingerprint, num_rows=source.num_rows,
            shard_rows=plan.shard_rows, shards_per_epoch=plan.shards_per_epoch,
            columns=[column_info(c) for c in columns], seed=request.seed,
        )
        encoder = ShardEncoder(source, columns, plan, codec, narrow,
                               choose_checksum(list(request.accept_checksums)), self.stats)
        max_window = min(MAX_WINDOW_SHARDS,
                         max(2, MAX_WINDOW_BYTES // max(plan.shard_rows * row_bytes, 1)))
        return ShardStream(request, encoder, plan_message, self.pool, self.stats, entry,
                           max_window, codec.link)


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
    handlers[rpc.STREAM] = grpc.stream_stream_rpc_method_handler(
        _guard_stream(servicer, servicer.Stream),
        request_deserializer=pb.StreamRequest.FromString,
        response_serializer=None,  # frames are already bytes; see tether.wire.framing
    )
    return grpc.method_handlers_generic_handler(rpc.SERVICE_NAME, handlers)
