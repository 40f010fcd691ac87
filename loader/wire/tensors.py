"""Tensor encoding on the wire: narrowing, byte-shuffle, codec, checksum.

The daemon calls `encode`, the loader `decode`; this is the only place
that knows the order in which those steps apply:

    encode: narrow dtype -> byte-shuffle -> compress -> checksum of the wire bytes
    decode: verify checksum -> decompress -> unshuffle -> widen dtype
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import codecs
from .aligned import aligned_empty
from .checksums import get_checksum
from .codecs import byteshuffle, narrowing
from .errors import DataCorrupted, ProtocolError
from .v1 import tether_pb2 as pb

# dtype kinds that may cross the wire: bool, signed and unsigned ints, floats.
# Anything else (objects above all) is refused before numpy parses it.
WIRE_KINDS = frozenset("biuf")


@dataclass
class EncodedTensor:
    header: pb.TensorHeader
    data: memoryview


def little_endian(array: np.ndarray) -> np.ndarray:
    """`array` as C-contiguous little-endian: the only layout on the wire."""
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def encode(
    name: str, array: np.ndarray, codec: str, byte_shuffle: bool, narrow: bool,
    checksum: str = "crc32",
) -> EncodedTensor:
    """Wire form of one tensor. `array` must be little-endian and C-contiguous."""
    wire_dtype = narrowing.narrowest(array) if narrow else array.dtype
    wire = array if wire_dtype == array.dtype else array.astype(wire_dtype)
    raw = memoryview(wire).cast("B")
    shuffled = byte_shuffle and codec != "none" and wire_dtype.itemsize > 1
    if shuffled:
        raw = memoryview(byteshuffle.shuffle(raw, wire_dtype.itemsize))
    data = memoryview(codecs.get_codec(codec).compress(raw)).cast("B")
    header = pb.TensorHeader(
        name=name,
        dtype=array.dtype.str,
        shape=array.shape,
        wire_dtype="" if wire_dtype == array.dtype else wire_dtype.str,
        codec=codec,
        byte_shuffle=shuffled,
        wire_size=data.nbytes,
        raw_size=raw.nbytes,
        checksum=get_checksum(checksum)(data),
        checksum_algorithm=checksum,
    )
    return EncodedTensor(header, data)


def _wire_dtype(text: str, tensor: str) -> np.dtype:
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise ProtocolError(f"tensor {tensor!r}: unknown dtype {text!r}") from None
    if dtype.kind not in WIRE_KINDS or dtype.byteorder == ">" or dtype.fields:
        raise ProtocolError(f"tensor {tensor!r}: dtype {text!r} may not cross the wire")
    return dtype


def decode(header: pb.TensorHeader, payload: memoryview) -> np.ndarray:
    """The tensor a header describes, as an aligned array that the caller owns."""
    name = header.name
    dtype = _wire_dtype(header.dtype, name)
    wire_dtype = _wire_dtype(header.wire_dtype, name) if header.wire_dtype else dtype
    shape = tuple(header.shape)
    count = int(np.prod(shape, dtype=np.int64))
    if header.raw_size != count * wire_dtype.itemsize:
        raise ProtocolError(
            f"tensor {name!r}: {header.raw_size} raw bytes do not hold shape {shape} "
            f"of {wire_dtype}"
        )
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
