"""A table read as it is stored: the Read RPC (`tether.connect(url).read`, `.query`).

No tensors: the source's own Arrow blocks (Parquet row groups, Arrow record
batches, the snapshots of CSV, JSON Lines, databases and queries), with
their types, nulls and schema metadata (pandas' index and dtypes), filtered
and cut into chunks of about CHUNK_BYTES, each one Arrow IPC stream,
compressed and checksummed. A chunk names where the next one starts (block,
row of the block's selected rows, rows sent), so a broken read resumes with
neither a repeated nor a skipped row; rows come from one block at a time,
so memory stays at a block whatever the table's size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa

from tether.wire import filters
from tether.wire.checksums import get_checksum
from tether.wire.errors import ColumnError, DatasetError, RequestError
from tether.wire.v1 import tether_pb2 as pb

from ..sources import Source

CHUNK_BYTES = 4 << 20  # of Arrow data, before compression
# A chunk's ceiling, under gRPC's message limit (rpc.MAX_MESSAGE_BYTES) with room
# for compression that does not shrink: rows of uneven sizes are split to fit.
MAX_CHUNK_BYTES = 32 << 20
IPC_CODECS = ("zstd", "lz4")


def ipc_codec(asked: str, accepted: Sequence[str], local: bool) -> str:
    """The IPC compression of a read ("" none): `asked` if the client reads it;
    with "auto", zstd unless the client is on this machine (CPU for nothing)."""
    readable = [c for c in IPC_CODECS if c in accepted and pa.Codec.is_available(c)]
    if asked in ("", "auto"):
        return "" if local or not readable else readable[0]
    if asked == "none":
        return ""
    if asked not in readable:
        raise RequestError(f"codec {asked!r}: a read is compressed with one of "
                           f"{', '.join(IPC_CODECS)} or none, and both sides must have it "
                           f"(this client reads {', '.join(readable) or 'none'})")
    return asked


def table_chunks(source: Source, request: pb.ReadRequest, codec: str,
                 checksum: str) -> Iterator[pb.TableChunk]:
    """The chunks of `request` over `source`, from `request.resume` on."""
    schema = source.arrow_schema()
    if schema is None:
        raise RequestError(f"dataset {source.name!r} is {source.format} data (tensors), not a "
                           "table: read() returns tables (Parquet, Arrow, CSV, JSON Lines, "
                           "databases, queries); iterate it with tether.Loader")
    fingerprint = source.fingerprint
    if request.fingerprint and request.fingerprint != fingerprint:
        raise DatasetError(f"dataset {source.name!r} changed since this read began; read it "
                           "again from the start")
    names = _names(source, schema, list(request.columns))
    expression = filters.parse(request.filter) if request.filter else None
    if expression is not None:
        _names(source, schema, sorted(expression.columns))  # each one there
    start = request.resume
    if start.block > source.table_blocks():
        raise RequestError(f"a read's cursor names block {start.block} of {source.name!r}, "
                           f"which has {source.table_blocks()}")
    limit = request.limit if request.HasField("limit") else None
    options = pa.ipc.IpcWriteOptions(compression=codec or None)
    rows, sent = start.rows, False
    for block in range(start.block, source.table_blocks()):
        if limit is not None and rows >= limit:
            break
        table = _selected(source, block, names, expression, schema, fingerprint)
        offset = start.offset if block == start.block else 0
        if offset > table.num_rows:
            raise RequestError(f"a read's cursor names row {offset} of block {block}, which "
                               f"has {table.num_rows} selected rows")
        for piece in _pieces(source, table, offset, None if limit is None else limit - rows):
            offset, rows = offset + piece.num_rows, rows + piece.num_rows
            cursor = pb.ReadCursor(block=block, offset=offset, rows=rows)
            yield _chunk(piece, options, codec, checksum, cursor, fingerprint)
            sent = True
    if not sent and rows == 0:  # nothing selected: the schema still comes
        empty = pa.table({n: pa.array([], schema.field(n).type) for n in names}) \
            .replace_schema_metadata(schema.metadata)
        yield _chunk(empty, options, codec, checksum, start, fingerprint)


def _selected(source: Source, block: int, names: list[str], expression: filters.Expr | None,
              schema: pa.Schema, fingerprint: str) -> pa.Table:
    """A block's selected rows of `names`, with the table's own schema metadata
    (each file of a folder carries its own pandas metadata: the first one's holds)."""
    # Files are memory-mapped: one truncated under the read would kill the
    # daemon (SIGBUS), and one rewritten would mix two versions into one table.
    if source.fingerprint != fingerprint:
        raise DatasetError(f"dataset {source.name!r} changed during this read; read it again")
    reading = names + sorted(set(expression.columns) - set(names)) if expression else names
    table = source.arrow_block(block, reading)
    if expression is not None:
        table = table.filter(pa.array(filters.evaluate(expression, table))).select(names)
    return table.replace_schema_metadata(schema.metadata)


def _pieces(source: Source, table: pa.Table, offset: int,
            left: int | None) -> Iterator[pa.Table]:
    """Slices of `table` from `offset`, each about CHUNK_BYTES and at most
    MAX_CHUNK_BYTES however unevenly its rows are sized; `left` rows at most."""
    step = max(1, int(CHUNK_BYTES / max(table.nbytes / max(table.num_rows, 1), 1)))
    while offset < table.num_rows and (left is None or left > 0):
        size = min(step, table.num_rows - offset, *(() if left is None else (left,)))
        piece = table.slice(offset, size)
        while piece.nbytes > MAX_CHUNK_BYTES and piece.num_rows > 1:
            piece = table.slice(offset, piece.num_rows // 2)
        if piece.nbytes > MAX_CHUNK_BYTES:
            raise RequestError(f"a row of {source.name!r} holds {piece.nbytes >> 20} MB, more "
                               f"than a read's chunk carries ({MAX_CHUNK_BYTES >> 20} MB): "
                               "read without that column (columns=[...])")
        offset += piece.num_rows
        left = None if left is None else left - piece.num_rows
        yield piece


def _names(source: Source, schema: pa.Schema, asked: list[str]) -> list[str]:
    """The columns to read: those asked for, else every column of the file
    (pandas' index included, so that to_pandas() gives the owner's DataFrame)."""
    if not asked:
        return list(schema.names)
    missing = [name for name in asked if name not in schema.names]
    if missing:
        raise ColumnError(f"dataset {source.name!r} has no column {missing[0]!r}; columns: "
                          f"{', '.join(schema.names)}")
    if len(set(asked)) != len(asked):
        raise ColumnError(f"columns {asked} name a column twice")
    return asked


def _chunk(piece: pa.Table, options: pa.ipc.IpcWriteOptions, codec: str, checksum: str,
           cursor: pb.ReadCursor, fingerprint: str) -> pb.TableChunk:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, piece.schema, options=options) as writer:
        writer.write_table(piece)
    ipc = sink.getvalue()
    return pb.TableChunk(ipc=ipc.to_pybytes(), checksum=get_checksum(checksum)(memoryview(ipc)),
                         checksum_algorithm=checksum, codec=codec, next=cursor,
                         fingerprint=fingerprint)
