"""The daemon's send path: a shard frame written in one buffer, each tensor's
checksum taken from its bytes in the frame, the header's unused room padded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tether.wire import framing, tensors
from tether.wire.checksums import available_checksums
from tether.wire.codecs import available_codecs
from tether.wire.errors import DataCorrupted
from tether.wire.ragged import BINARY, RAGGED, UTF8, Ragged
from tether.wire.v1 import tether_pb2 as pb

RNG = np.random.default_rng(7)
ROWS = 300


def _columns() -> dict[str, np.ndarray | Ragged]:
    """One column of every wire dtype, and one of each ragged kind."""
    fixed = {t: (RNG.integers(0, 2, ROWS * 3) if t == "b1" else
                 RNG.standard_normal(ROWS * 3) * 1000).astype(t).reshape(ROWS, 3)
             for t in ("b1", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8")}
    lengths = RNG.integers(0, 9, ROWS)
    return {
        **fixed,
        "tokens": Ragged.from_lengths(RNG.integers(0, 50_000, lengths.sum()).astype(np.int32),
                                      lengths, RAGGED),
        "text": Ragged.from_rows([f"row {i} é {'x' * (i % 7)}" for i in range(ROWS)], UTF8),
        "files": Ragged.from_rows([bytes(RNG.integers(0, 256, i % 50, dtype=np.uint8))
                                   for i in range(ROWS)], BINARY),
    }


def _shard(columns: dict, codec: str, checksum: str) -> tuple[bytes, pb.ShardHeader]:
    """A frame as the daemon builds it: tensors encoded without their checksum,
    summed by framing where it copies them into the frame."""
    headers, parts, offset = [], [], 0
    for name, column in columns.items():
        encoded = tensors.encode_column(name, column, codec, byte_shuffle=True, narrow=True,
                                        checksum="")
        assert encoded.header.checksum_algorithm == ""
        parts.extend(encoded.place(offset))
        offset += encoded.nbytes
        headers.append(encoded.header)
    header = pb.ShardHeader(epoch=1, sequence=2, num_rows=ROWS, tensors=headers,
                            produce_seconds=0.25)
    return framing.encode_shard(header, parts, checksum=checksum), header


def _equal(got: np.ndarray | Ragged, want: np.ndarray | Ragged) -> bool:
    if isinstance(want, Ragged):
        return (isinstance(got, Ragged) and got.kind == want.kind
                and got.values.tobytes() == want.values.tobytes()
                and got.lengths.tolist() == want.lengths.tolist())
    return got.dtype == want.dtype and got.shape == want.shape and \
        got.tobytes() == want.tobytes()


@pytest.mark.parametrize("codec", available_codecs())
@pytest.mark.parametrize("checksum", available_checksums())
def test_a_frame_built_in_one_buffer_decodes_to_the_same_columns(codec: str,
                                                                  checksum: str) -> None:
    columns = _columns()
    frame, sent = _shard(columns, codec, checksum)
    assert type(frame) is bytes  # what grpcio sends
    decoded = framing.decode(frame)
    assert decoded.shard == sent  # the checksums filled in are the ones sent
    for header in decoded.shard.tensors:
        assert header.checksum_algorithm == checksum
        got = tensors.decode_column(header, decoded.payload)
        assert _equal(got, columns[header.name]), header.name
    parsed = pb.ShardFrame.FromString(frame)  # padding is an unknown field to protobuf
    assert parsed.shard == decoded.shard and parsed.payload == bytes(decoded.payload)


def test_the_frame_does_not_share_memory_with_what_it_was_built_from() -> None:
    values = np.arange(1000, dtype=np.float32)
    frame, _ = _shard({"x": values}, "none", "crc32")
    before = bytes(frame)
    values[:] = -1
    assert frame == before


@pytest.mark.parametrize("checksum", available_checksums())
def test_a_corrupted_payload_byte_is_caught_in_every_tensor(checksum: str) -> None:
    columns = _columns()
    frame, _ = _shard(columns, "none", checksum)
    payload_start = len(frame) - framing.decode(frame).payload.nbytes
    for header in framing.decode(frame).shard.tensors:
        for tensor in (header, header.lengths) if header.HasField("lengths") else (header,):
            if not tensor.wire_size:
                continue
            damaged = bytearray(frame)
            damaged[payload_start + tensor.offset + tensor.wire_size // 2] ^= 0x10
            parsed = framing.decode(bytes(damaged))
            with pytest.raises(DataCorrupted, match="checksum mismatch"):
                tensors.decode_column(
                    next(t for t in parsed.shard.tensors if t.name == header.name),
                    parsed.payload)


def test_a_corrupted_header_byte_is_caught() -> None:
    frame, sent = _shard({"x": np.arange(100, dtype=np.int64)}, "none", "crc32")
    body = sent.SerializeToString()
    start = frame.index(body)
    damaged = bytearray(frame)
    damaged[start + len(body) // 2] ^= 0x01
    with pytest.raises(DataCorrupted, match="header"):
        framing.decode(bytes(damaged))


@pytest.mark.parametrize("count", [0, 1, 2, 30, 31, 32, 33, 60, 61, 70])
def test_any_amount_of_unused_header_room_is_padded(count: int) -> None:
    """Checksums that need 1 to 5 bytes leave 0 to about 4 bytes a tensor unused:
    padded by one or several fields, the frame still parses, by us and by protobuf."""
    for zeros in range(0, count + 1, max(1, count // 3)):
        # An all-zero tensor of 0 bytes sums to 0: its checksum is the shortest varint.
        columns = {f"t{i}": np.zeros(0 if i < zeros else 4, np.uint8) for i in range(count)}
        frame, sent = _shard(columns, "none", "crc32")
        decoded = framing.decode(frame)
        assert decoded.shard == sent
        assert pb.ShardFrame.FromString(frame).shard == sent


def _text_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 6, rows)
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "x": pa.array(rng.standard_normal(rows).astype(np.float32)),
        "tokens": pa.array([list(range(i, i + n)) for i, n in enumerate(lengths)],
                           pa.list_(pa.int32())),
        "text": pa.array([f"sample {i}" + "é" * (i % 4) for i in range(rows)]),
        "blob": pa.array([bytes([i % 256]) * (i % 9) for i in range(rows)], pa.binary()),
    })


