"""Tables for pandas and Arrow: `client.read(...)` and `client.query(...)`.

The Read RPC (tether.daemon.stream.tables) sends a table as it is stored:
Arrow record batches with the source's own types, nulls and schema metadata,
each chunk checksummed and (off this machine) compressed. A broken
connection is retried under the client's RetryPolicy and the read resumes
after the last chunk received, from the same version of the data: never a
row twice, never one skipped. Batches are handed on as they arrive, so
`read_batches` holds one chunk (about 4 MB) at a time.

Needs pyarrow on this machine (Colab has it; `tether[fast]` adds it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from .retry import RetryPolicy
from .wire import rpc
from .wire.checksums import UNCHECKED, available_checksums, get_checksum
from .wire.errors import ConnectionFailed, DataCorrupted, ProtocolError, from_rpc_error
from .wire.v1 import tether_pb2 as pb

try:
    import pyarrow as pa
except ImportError as exc:  # the loader's own stack may lack it
    raise ImportError("reading tables needs pyarrow on this machine: pip install pyarrow "
                      "(or 'tether[fast]')") from exc


def read_request(dataset: str = "", columns: Sequence[str] | None = None, filter: str | None = None,
                 limit: int | None = None, sql: str = "", codec: str = "auto") -> pb.ReadRequest:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a count of rows (0 or more), got {limit!r:.80}")
    request = pb.ReadRequest(dataset=dataset, columns=list(columns or ()), filter=filter or "",
                             sql=sql, codec=codec, accept_checksums=available_checksums(),
                             accept_codecs=[c for c in ("zstd", "lz4")
                                            if pa.Codec.is_available(c)])
    if limit is not None:
        request.limit = limit
    return request


class TableStream(Iterator["pa.RecordBatch"]):
    """The record batches of one read, resumed across broken connections;
    `schema` is known once the first chunk came (`table()` reads them all)."""

    def __init__(self, channel: grpc.Channel, metadata: Sequence[tuple[str, str]],
                 request: pb.ReadRequest, retry: RetryPolicy) -> None:
        self._method = channel.unary_stream(
            rpc.method_path(rpc.READ), request_serializer=pb.ReadRequest.SerializeToString,
            response_deserializer=pb.TableChunk.FromString)
        self._metadata = tuple(metadata)
        self._request = request
        self._retry = retry
        self._call: Any = None
        self._batches = self._read()
        self.schema: pa.Schema | None = None
        self.reconnects = 0

    def __next__(self) -> pa.RecordBatch:
        return next(self._batches)

    def table(self) -> pa.Table:
        batches = list(self)
        if self.schema is None:  # the daemon always sends the schema, rows or none
            raise ProtocolError("the daemon ended the read without a chunk")
        return pa.Table.from_batches(batches, schema=self.schema)

    def close(self) -> None:
        self._batches.close()

    def _open(self) -> pb.TableChunk | None:
        try:
            self._call = self._method(self._request, metadata=self._metadata)
            return next(self._call, None)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def _read(self) -> Iterator[pa.RecordBatch]:
        chunk = self._retry.call(self._open, timeout=self._retry.connect_timeout)
        try:
            while chunk is not None:
                batches = self._decoded(chunk)
                self._request.resume.CopyFrom(chunk.next)  # a resume starts after it
                self._request.fingerprint = chunk.fingerprint
                yield from batches
                chunk = self._next_chunk()
        finally:
            if self._call is not None:
                self._call.cancel()

    def _next_chunk(self) -> pb.TableChunk | None:
        try:
            return next(self._call, None)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            if not isinstance(error, ConnectionFailed) or self._retry.timeout <= 0:
                raise error from None
            self.reconnects += 1
            return self._retry.call(self._open, first_error=error)

    def _decoded(self, chunk: pb.TableChunk) -> list[pa.RecordBatch]:
        if chunk.checksum_algorithm == UNCHECKED:  # never offered for tables
            raise ProtocolError("a table chunk came without a checksum, which this client "
                                "did not offer")
        if get_checksum(chunk.checksum_algorithm)(memoryview(chunk.ipc)) != chunk.checksum:
            raise DataCorrupted("a table chunk's checksum does not match: the bytes were "
                                "damaged in transit")
        try:
            reader = pa.ipc.open_stream(pa.py_buffer(chunk.ipc))
            batches = list(reader)
            for batch in batches:  # offsets and text checked before pandas touches them
                batch.validate(full=True)
        except pa.ArrowException as exc:
            raise ProtocolError(f"a table chunk is not valid Arrow: {exc}") from None
        if self.schema is None:
            self.schema = reader.schema
        elif not reader.schema.equals(self.schema, check_metadata=True):
            raise ProtocolError("a table chunk changed the table's schema mid-read")
        return batches
