"""Tensor encoding on the wire: narrowing, byte-shuffle, codec, checksum.

The daemon calls `encode`, the loader `decode`; this is the only place
that knows the order in which those steps apply:

    encode: narrow dtype -> byte-shuffle -> compress -> checksum of the wire bytes
    decode: verify checksum -> decompress -> unshuffle -> widen dtype

A column of rows of varying length (a `Ragged`: tokens, text, file bytes)
travels as its values, all rows back to back, and its row lengths: two
tensors encoded the same way, the lengths' header nested in the values'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import codecs
from .aligned import aligned_empty
from .checksums import get_checksum
from .codecs import byteshuffle, narrowing
from .errors import DataCorrupted, ProtocolError
from .ragged import BINARY, UTF8, VARIABLE_KINDS, Ragged
from .rpc import MAX_SHARD_BYTES
from .v1 import tether_pb2 as pb

# The dtype strings a header may name, as text: anything else (objects above
# all, platform-sized long doubles) is refused before numpy parses it.
WIRE_DTYPES = frozenset(np.dtype(t).newbyteorder("<").str for t in (
    "b1", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8",
    # dates and times: 64-bit counts of a unit since the epoch (or midnight)
    "M8[D]", "M8[s]", "M8[ms]", "M8[us]", "M8[ns]", "m8[s]", "m8[ms]", "m8[us]", "m8[ns]"))
# No tensor of a frame decodes to more than a frame's worth of tensors.
MAX_TENSOR_BYTES = MAX_SHARD_BYTES


@dataclass
class EncodedTensor:
    header: pb.TensorHeader
    data: memoryview
    lengths: memoryview | None = None  # a ragged column's row lengths, after `data`

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (self.lengths.nbytes if self.lengths is not None else 0)

    def place(self, offset: int) -> list[memoryview]:
        """Put this tensor at `offset` of the payload; its parts, in order."""
        self.header.offset = offset
        if self.lengths is None:
            return [self.data]
        self.header.lengths.offset = offset + self.data.nbytes
        return [self.data, self.lengths]


def little_endian(array: np.ndarray) -> np.ndarray:
    """`array` as C-contiguous little-endian: the only layout on the wire."""
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def encode(
    name: str, array: np.ndarray, codec: str | codecs.Compression, byte_shuffle: bool,
    narrow: bool, checksum: str = "crc32",
) -> EncodedTensor:
    """Wire form of one tensor. `array` must be little-endian and C-contiguous.

    `codec` is a wire codec's name, or a Compression (codec, level, shuffle);
    `byte_shuffle` allows the shuffle, which a Compression may decline."""
    setting = codec if isinstance(codec, codecs.Compression) else codecs.Compression(codec)
    wire_dtype = narrowing.narrowest(array) if narrow else array.dtype
    wire = array if wire_dtype == array.dtype else array.astype(wire_dtype)
    raw = memoryview(wire.reshape(-1).view(np.uint8))  # (a cast fails on a 0 in the shape)
    shuffled = (byte_shuffle and setting.byte_shuffle and setting.codec != "none"
                and wire_dtype.itemsize > 1)
    if shuffled:
        raw = memoryview(byteshuffle.shuffle(raw, wire_dtype.itemsize))
    data = memoryview(codecs.compressor(setting.codec, setting.level).compress(raw)).cast("B")
    header = pb.TensorHeader(
        name=name,
        dtype=array.dtype.str,
        shape=array.shape,
        wire_dtype="" if wire_dtype == array.dtype else wire_dtype.str,
        codec=setting.codec,
        byte_shuffle=shuffled,
        wire_size=data.nbytes,
        raw_size=raw.nbytes,
        # "": the caller sums the bytes where it copies them (framing.encode_shard)
        checksum=get_checksum(checksum)(data) if checksum else 0,
        checksum_algorithm=checksum,
    )
    return EncodedTensor(header, data)


def encode_column(
    name: str, column: np.ndarray | Ragged, codec: str | codecs.Compression,
    byte_shuffle: bool, narrow: bool, checksum: str = "crc32",
) -> EncodedTensor:
    """Wire form of one column: a tensor, or a ragged column's values and lengths."""
    if not isinstance(column, Ragged):
        return encode(name, little_endian(column), codec, byte_shuffle, narrow, checksum)
    column = column.compact()
    values = encode(name, little_endian(column.values), codec, byte_shuffle, narrow, checksum)
    # Lengths are ours, never the user's dtype: always narrowed (most fit a byte or two).
    lengths = encode(name, column.lengths, codec, byte_shuffle, True, checksum)
    values.header.kind = column.kind
    values.header.lengths.CopyFrom(lengths.header)
    values.lengths = lengths.data
    return values


def _wire_dtype(text: str, tensor: str) -> np.dtype:
    if text not in WIRE_DTYPES:  # checked as text, before numpy parses it
        raise ProtocolError(f"tensor {tensor!r}: dtype {text!r} may not cross the wire; "
                            f"known: {', '.join(sorted(WIRE_DTYPES))}")
    return np.dtype(text)


def _narrowing(wire: np.dtype, declared: np.dtype) -> bool:
    """Whether `wire` is a lossless integer narrowing of `declared` (codecs.narrowing)."""
    return (wire.kind in "iu" and declared.kind in "iu" and wire.itemsize < declared.itemsize
            and np.can_cast(wire, declared, casting="safe"))


def check_header(header: pb.TensorHeader) -> int:
    """Check what a tensor header claims, before anything is allocated for it;
    the bytes the decoded tensor will take.

    Sizes are Python integers (a shape's product overflows no int64), bounded
    by the frame limit: a few KB of zstd that claim gigabytes, or a `|u1`
    wire type declared as a 16-byte float, are refused here.
    """
    name = header.name
    dtype = _wire_dtype(header.dtype, name)
    wire_dtype = dtype
    if header.wire_dtype:
        wire_dtype = _wire_dtype(header.wire_dtype, name)
        if not _narrowing(wire_dtype, dtype):
            raise ProtocolError(f"tensor {name!r}: {header.wire_dtype} on the wire cannot "
                                f"stand for {header.dtype}; only integers are narrowed")
    shape = tuple(header.shape)
    if not shape:
        raise ProtocolError(f"tensor {name!r} has no rows dimension")
    count = math.prod(shape)
    size = count * dtype.itemsize
    if max(size, header.raw_size, header.wire_size, *shape) > MAX_TENSOR_BYTES:
        raise ProtocolError(
            f"tensor {name!r} claims shape {list(shape)} of {header.dtype} "
            f"({header.raw_size} raw bytes, {header.wire_size} on the wire), over the "
            f"{MAX_TENSOR_BYTES >> 20} MiB frame limit")
    if header.raw_size != count * wire_dtype.itemsize:
        raise ProtocolError(
            f"tensor {name!r}: {header.raw_size} raw bytes do not hold shape {shape} "
            f"of {wire_dtype}"
        )
    if header.codec not in codecs.NAMES:
        raise ProtocolError(f"tensor {name!r}: unknown codec {header.codec!r}")
    return size


def check_column_header(header: pb.TensorHeader) -> int:
    """`check_header` for a column, ragged or not; the bytes it will take decoded."""
    name = header.name
    if not header.kind:
        if header.HasField("lengths"):
            raise ProtocolError(f"tensor {name!r} has row lengths but no ragged kind")
        return check_header(header)
    if header.kind not in VARIABLE_KINDS:
        raise ProtocolError(f"tensor {name!r}: unknown kind {header.kind!r}")
    lengths = header.lengths
    if not header.HasField("lengths") or lengths.kind or lengths.HasField("lengths") \
            or len(lengths.shape) != 1 or _wire_dtype(lengths.dtype, name).kind not in "iu":
        raise ProtocolError(f"ragged tensor {name!r} needs one 1-D integer lengths tensor")
    if header.kind in (UTF8, BINARY) and (header.dtype != "|u1" or len(header.shape) != 1):
        raise ProtocolError(f"{header.kind} tensor {name!r} must be 1-D bytes (|u1)")
    # An offsets array (8 bytes a row) is made from the lengths: count it too.
    return check_header(header) + check_header(lengths) + 8 * (lengths.shape[0] + 1)


def decode_column(header: pb.TensorHeader, payload: memoryview) -> np.ndarray | Ragged:
    """The column a header describes: an aligned array, or a Ragged."""
    check_column_header(header)
    values = decode(header, payload)
    if not header.kind:
        return values
    lengths = decode(header.lengths, payload)
    name = header.name
    # Each length is at most the values' count (bounded by the frame), so their
    # sum cannot wrap: lengths that wrap around to the right sum are refused.
    if lengths.size and (int(lengths.min()) < 0 or int(lengths.max()) > len(values)):
        raise ProtocolError(f"ragged tensor {name!r} has a row length outside 0..{len(values)}")
    total = int(lengths.sum(dtype=np.int64))
    if total != len(values):
        raise ProtocolError(f"ragged tensor {name!r}: row lengths add up to {total}, not its "
                            f"{len(values)} values")
    if header.kind == UTF8:  # checked here: a str is made of it later, in the training thread
        try:
            _check_utf8(values)
        except UnicodeDecodeError as exc:
            raise DataCorrupted(f"text tensor {name!r} is not valid UTF-8: {exc}") from None
    return Ragged.from_lengths(values, lengths, header.kind)


def _check_utf8(values: np.ndarray) -> None:
    """Raise UnicodeDecodeError unless `values` (bytes) are valid UTF-8."""
    str(memoryview(values), "utf-8")


def decode(header: pb.TensorHeader, payload: memoryview) -> np.ndarray:
    """The tensor a header describes, as an aligned array that the caller owns."""
    check_header(header)
    name = header.name
    dtype = np.dtype(header.dtype)
    wire_dtype = np.dtype(header.wire_dtype) if header.wire_dtype else dtype
    shape = tuple(header.shape)
    end = header.offset + header.wire_size
    if end > payload.nbytes:
        raise ProtocolError(f"tensor {name!r} ends at byte {end}, past the payload's end")
    data = payload[header.offset:end]
    if get_checksum(header.checksum_algorithm or "crc32")(data) != header.checksum:
        raise DataCorrupted(
            f"tensor {name!r}: checksum mismatch; the bytes were damaged in transit"
        )
    try:
        raw = codecs.get_codec(header.codec).decompress(data, header.raw_size)
    except Exception as exc:
        raise DataCorrupted(
            f"tensor {name!r}: {header.codec} could not decompress: {exc}"
        ) from None
    if memoryview(raw).nbytes != header.raw_size:
        raise DataCorrupted(f"tensor {name!r}: decompressed to the wrong size")
    if header.byte_shuffle:
        raw = byteshuffle.unshuffle(raw, wire_dtype.itemsize)
    array = np.frombuffer(raw, dtype=wire_dtype).reshape(shape)
    if wire_dtype == dtype:
        return array
    widened = aligned_empty(shape, dtype)
    np.copyto(widened, array, casting="safe")
    return widened
