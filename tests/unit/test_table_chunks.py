"""A read's chunks (tether.daemon.stream.tables) and their checks on the client
(tether.tables): resumed from any chunk's cursor, the rest is exactly the rest;
a limit across blocks; a damaged, invalid or inconsistent chunk is refused."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tether.daemon.sources.parquet import ParquetSource
from tether.daemon.stream.tables import CHUNK_BYTES, ipc_codec, table_chunks
from tether.tables import TableStream, read_request
from tether.wire.errors import DataCorrupted, DatasetError, ProtocolError, RequestError
from tether.wire.v1 import tether_pb2 as pb

ROWS = 50_000


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[ParquetSource, pa.Table]:
    root = tmp_path_factory.mktemp("parquet")
    rng = np.random.default_rng(0)
    table = pa.table({"id": np.arange(ROWS), "x": rng.random(ROWS),
                      "blob": pa.array([b"z" * 200] * ROWS)})  # ~11 MB: several chunks a block
    pq.write_table(table, root / "t.parquet", row_group_size=20_000)
    return ParquetSource("t", [root / "t.parquet"], root), table


def _decoded(chunks) -> pa.Table:
    stream = TableStream.__new__(TableStream)
    stream.schema = None
    batches = [b for chunk in chunks for b in stream._decoded(chunk)]
    return pa.Table.from_batches(batches, schema=stream.schema)


def _chunks(source, **asked) -> list[pb.TableChunk]:
    resume = asked.pop("resume", None)
    request = read_request("t", codec="none", **asked)
    if resume is not None:
        request.resume.CopyFrom(resume)
    return list(table_chunks(source, request, "", "crc32"))


def test_from_every_cursor_the_rest_is_exactly_the_rest(source) -> None:
    src, table = source
    chunks = _chunks(src)
    assert len(chunks) > src.table_blocks() and table.nbytes > 2 * CHUNK_BYTES
    assert _decoded(chunks).equals(table)
    for index, chunk in enumerate(chunks[:-1]):
        rest = _chunks(src, resume=chunk.next)
        assert _decoded(chunks[:index + 1] + rest).equals(table), index


def test_a_limit_across_blocks_and_a_filter(source) -> None:
    src, table = source
    got = _decoded(_chunks(src, columns=["id"], filter="id % 3 == 0", limit=10_000))
    assert got.column("id").to_pylist() == list(range(0, 30_000, 3))


def test_the_codec_is_what_both_sides_read_and_none_on_this_machine() -> None:
    assert ipc_codec("auto", ["zstd", "lz4"], local=False) == "zstd"
    assert ipc_codec("auto", ["zstd"], local=True) == ""
    assert ipc_codec("auto", [], local=False) == ""
    assert ipc_codec("lz4", ["zstd", "lz4"], local=True) == "lz4"
    assert ipc_codec("none", ["zstd"], local=False) == ""
    with pytest.raises(RequestError, match="codec 'brotli'"):
        ipc_codec("brotli", ["zstd"], local=False)


def test_damaged_invalid_and_inconsistent_chunks_are_refused(source) -> None:
    src, _ = source
    good = _chunks(src, columns=["id"], limit=10)[0]
    damaged = pb.TableChunk()
    damaged.CopyFrom(good)
    damaged.ipc = good.ipc[:-1] + bytes([good.ipc[-1] ^ 1])
    with pytest.raises(DataCorrupted, match="checksum"):
        _decoded([damaged])
    garbage = pb.TableChunk(ipc=b"not arrow at all", checksum_algorithm="crc32",
                            checksum=zlib.crc32(b"not arrow at all"))
    with pytest.raises(ProtocolError, match="not valid Arrow"):
        _decoded([garbage])
    other = _chunks(src, columns=["x"], limit=10)[0]
    with pytest.raises(ProtocolError, match="changed the table's schema"):
        _decoded([good, other])


def test_rows_of_uneven_sizes_are_split_to_fit_and_a_giant_row_refused(tmp_path) -> None:
    from tether.daemon.stream.tables import MAX_CHUNK_BYTES

    big = b"y" * (10 << 20)
    blobs = [b"s"] * 3000 + [big] * 8  # the average row is small, the last rows are not
    pq.write_table(pa.table({"blob": blobs}), tmp_path / "u.parquet", row_group_size=10_000)
    src = ParquetSource("u", [tmp_path / "u.parquet"], tmp_path)
    chunks = list(table_chunks(src, read_request("u", codec="none"), "", "crc32"))
    assert all(len(c.ipc) < MAX_CHUNK_BYTES + (1 << 20) for c in chunks)
    assert _decoded(chunks).column("blob").to_pylist() == blobs
    pq.write_table(pa.table({"blob": [b"z" * (40 << 20)]}), tmp_path / "g.parquet")
    giant = ParquetSource("g", [tmp_path / "g.parquet"], tmp_path)
    with pytest.raises(RequestError, match="holds 40 MB"):
        list(table_chunks(giant, read_request("g", codec="none"), "", "crc32"))


def test_a_limit_stops_reading_blocks(source, monkeypatch) -> None:
    src, _ = source
    read: list[int] = []
    original = src.arrow_block
    monkeypatch.setattr(src, "arrow_block", lambda block, names: read.append(block)
                        or original(block, names))
    _chunks(src, limit=1)
    assert read == [0]


def test_cursors_outside_the_table_are_refused(source) -> None:
    src, _ = source
    with pytest.raises(RequestError, match="block 9 of 't'"):
        _chunks(src, resume=pb.ReadCursor(block=9, offset=0, rows=1))
    with pytest.raises(RequestError, match="row 20001 of block 0"):
        _chunks(src, resume=pb.ReadCursor(block=0, offset=20_001, rows=1))


def test_a_file_that_changes_during_a_read_stops_it(tmp_path) -> None:
    pq.write_table(pa.table({"id": np.arange(30_000)}), tmp_path / "c.parquet",
                   row_group_size=10_000)
    src = ParquetSource("c", [tmp_path / "c.parquet"], tmp_path)
    chunks = table_chunks(src, read_request("c", codec="none"), "", "crc32")
    next(chunks)
    pq.write_table(pa.table({"id": np.arange(30_000) + 1}), tmp_path / "c.parquet",
                   row_group_size=10_000)
    with pytest.raises(DatasetError, match="changed during this read"):
        list(chunks)


def test_a_folder_of_pandas_files_reads_as_one_table(tmp_path) -> None:
    pd = pytest.importorskip("pandas")
    parts = [pd.DataFrame({"a": range(30)}), pd.DataFrame({"a": range(30, 50)})]
    for index, part in enumerate(parts):  # each file's pandas metadata differs (its index)
        part.to_parquet(tmp_path / f"part{index}.parquet")
    src = ParquetSource("p", sorted(tmp_path.glob("*.parquet")), tmp_path)
    table = _decoded(table_chunks(src, read_request("p", codec="none"), "", "crc32"))
    assert table.column("a").to_pylist() == list(range(50))


def test_a_chunk_without_a_checksum_is_refused(source) -> None:
    src, _ = source
    chunk = _chunks(src, limit=100)[0]
    chunk.checksum, chunk.checksum_algorithm = 0, "none"  # a read never offers "none"
    with pytest.raises(ProtocolError, match="without a checksum"):
        _decoded([chunk])
