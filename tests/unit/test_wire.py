"""Frames and tensors on the wire: round trips, protobuf compatibility, damage."""

from __future__ import annotations

import numpy as np
import pytest

from tether.wire import framing, tensors
from tether.wire.aligned import is_aligned
from tether.wire.checksums import available_checksums
from tether.wire.codecs import available_codecs
from tether.wire.errors import DataCorrupted, ProtocolError
from tether.wire.v1 import tether_pb2 as pb

ARRAYS = {
    "f32": np.random.default_rng(1).standard_normal((300, 7)).astype(np.float32),
    "f64": np.linspace(0, 1, 512).reshape(64, 8),
    "f16": np.arange(100, dtype=np.float16),
    "tokens": np.random.default_rng(2).zipf(1.3, 1000).clip(0, 60000).astype(np.int64),
    "negative": np.arange(-200, 200, dtype=np.int64),
    "u8": np.arange(256, dtype=np.uint8).reshape(16, 16),
    "flags": np.arange(50) % 3 == 0,
    "wide": np.array([0, 2**40], dtype=np.int64),
}


def _frame(named: dict[str, np.ndarray], codec: str, checksum: str = "crc32") -> bytes:
    headers, parts, offset = [], [], 0
    for name, array in named.items():
        encoded = tensors.encode(name, array, codec, byte_shuffle=True, narrow=True,
                                 checksum=checksum)
        encoded.header.offset = offset
        offset += encoded.data.nbytes
        headers.append(encoded.header)
        parts.append(encoded.data)
    header = pb.ShardHeader(epoch=3, sequence=9, num_rows=0, tensors=headers)
    return framing.encode_shard(header, parts)


@pytest.mark.parametrize("codec", available_codecs())
@pytest.mark.parametrize("checksum", available_checksums())
@pytest.mark.parametrize("name", ARRAYS)
def test_tensor_round_trip_is_bit_exact(codec: str, checksum: str, name: str) -> None:
    array = ARRAYS[name]
    frame = framing.decode(_frame({name: array}, codec, checksum))
    decoded = tensors.decode(frame.shard.tensors[0], frame.payload)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert decoded.tobytes() == array.tobytes()
    assert is_aligned(decoded) and decoded.flags.writeable


def test_integers_are_narrowed_on_the_wire_and_widened_back() -> None:
    encoded = tensors.encode("t", ARRAYS["tokens"], "none", byte_shuffle=False, narrow=True)
    assert encoded.header.wire_dtype == "<u2"
    assert encoded.data.nbytes == ARRAYS["tokens"].size * 2
    negative = tensors.encode("n", ARRAYS["negative"], "none", byte_shuffle=False, narrow=True)
    assert negative.header.wire_dtype == "<i2"
    wide = tensors.encode("w", ARRAYS["wide"], "none", byte_shuffle=False, narrow=True)
    assert wide.header.wire_dtype == ""  # does not fit 32 bits: sent as is


def test_frame_is_a_valid_protobuf_shard_frame() -> None:
    raw = _frame({"a": ARRAYS["f32"], "b": ARRAYS["u8"]}, "none")
    parsed = pb.ShardFrame.FromString(raw)  # protobuf's own parser agrees with ours
    ours = framing.decode(raw)
    assert parsed.shard == ours.shard
    assert parsed.payload == bytes(ours.payload)
    plan = pb.StreamPlan(num_rows=5, shard_rows=2, shards_per_epoch=3)
    assert pb.ShardFrame.FromString(framing.encode_plan(plan)).plan == plan


def test_a_flipped_payload_bit_is_caught() -> None:
    raw = bytearray(_frame({"a": ARRAYS["f32"]}, "none"))
    raw[-10] ^= 0x01
    frame = framing.decode(bytes(raw))
    with pytest.raises(DataCorrupted, match="checksum mismatch"):
        tensors.decode(frame.shard.tensors[0], frame.payload)


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_truncated_frames_are_refused(cut: int) -> None:
    raw = _frame({"a": ARRAYS["f32"]}, "none")
    with pytest.raises(ProtocolError):
        framing.decode(raw[:cut])


def test_headers_that_lie_are_refused() -> None:
    raw = _frame({"a": ARRAYS["f32"]}, "none")
    frame = framing.decode(raw)
    header = frame.shard.tensors[0]
    for field, value, message in [
        ("dtype", "O", "may not cross the wire"),
        ("dtype", "nonsense", "may not cross the wire"),
        ("raw_size", header.raw_size + 4, "do not hold shape"),
        ("wire_size", header.wire_size + 10**6, "past the payload"),
        ("wire_size", header.wire_size + 10**9, "frame limit"),
    ]:
        bad = pb.TensorHeader()
        bad.CopyFrom(header)
        setattr(bad, field, value)
        with pytest.raises(ProtocolError, match=message):
            tensors.decode(bad, frame.payload)


def test_big_endian_sources_travel_little_endian() -> None:
    big = np.arange(10, dtype=">f4")
    little = tensors.little_endian(big)
    assert little.dtype == np.dtype("<f4") and np.array_equal(little, big)


@pytest.mark.parametrize("itemsize", [2, 4, 8])
def test_byte_shuffle_layout_is_blosc_planes(itemsize: int) -> None:
    from tether.wire.codecs import byteshuffle

    data = np.random.default_rng(3).integers(0, 256, 1024 * itemsize, dtype=np.uint8)
    shuffled = byteshuffle.shuffle(memoryview(data), itemsize)
    assert np.array_equal(shuffled, data.reshape(-1, itemsize).T.ravel())
    assert np.array_equal(byteshuffle.unshuffle(memoryview(shuffled), itemsize), data)
