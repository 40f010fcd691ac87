"""The one module that knows how a ShardFrame sits on the wire.

A frame is the protobuf encoding of `tether.v1.ShardFrame` (the proto package)
(plan = 1, shard = 2, payload = 3, header_checksum = 4,
header_checksum_algorithm = 5), written and read by hand so that the
payload, megabytes of tensor bytes, is never copied by protobuf: the daemon
copies each tensor once, into the frame, the loader slices the payload as a
memoryview. Any protobuf parser still reads these bytes as a ShardFrame.
The header checksum covers the header's bytes exactly as written; each
tensor's own checksum (in the header) covers its bytes in the payload.

A shard frame is written in one buffer that becomes the `bytes` grpcio sends
(grpcio 1.85 takes bytes only, and copies them once more itself): the payload
at a fixed offset, after room for the header, so that each tensor's checksum
is taken from its bytes just copied into the frame (still in cache) and only
then written into the header. What the header leaves of its room is filled
by padding fields (number 15), which every reader skips as an unknown field.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .checksums import get_checksum
from .errors import DataCorrupted, ProtocolError
from .v1 import tether_pb2 as pb

_LEN = 2  # protobuf wire type of length-delimited fields
_PLAN, _SHARD, _PAYLOAD, _HEADER_CHECKSUM, _HEADER_ALGORITHM = 1, 2, 3, 4, 5
_PADDING = 15  # not in ShardFrame: an unknown field, skipped by protobuf and by `decode`
_MAX_UINT32 = 0xFFFFFFFF  # a checksum's largest varint: what the header's room allows for
_MAX_PAD_FIELD = 129  # a tag byte, a one-byte length, at most 127 bytes
_PYBUF_WRITE = 0x200  # CPython's flag for a writable PyMemoryView_FromMemory
_VARINT = 0
_VARINT_TAG = _HEADER_CHECKSUM << 3 | _VARINT


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_prefix(number: int, length: int) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(length)


def _header_fields(number: int, body: bytes, checksum: str) -> list[bytes]:
    """The header field, then its checksum (written even when 0) and algorithm."""
    algorithm = checksum.encode()
    return [_field_prefix(number, len(body)), body,
            _varint(_VARINT_TAG), _varint(get_checksum(checksum)(memoryview(body))),
            _field_prefix(_HEADER_ALGORITHM, len(algorithm)), algorithm]


def encode_plan(plan: pb.StreamPlan, checksum: str = "crc32") -> bytes:
    return b"".join(_header_fields(_PLAN, plan.SerializeToString(), checksum))


def _padding(size: int) -> bytes:
    """Unknown fields of exactly `size` bytes (0 or at least 2)."""
    out = bytearray()
    while size:
        field = min(size, _MAX_PAD_FIELD)
        if size - field == 1:  # no field is one byte long: leave two for the last
            field -= 1
        out += _field_prefix(_PADDING, field - 2) + bytes(field - 2)
        size -= field
    return bytes(out)


@functools.cache
def _bytes_api() -> tuple[Callable, Callable, Callable]:
    api = ctypes.pythonapi
    new, address, view = (api.PyBytes_FromStringAndSize, api.PyBytes_AsString,
                          api.PyMemoryView_FromMemory)
    new.restype, new.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)
    address.restype, address.argtypes = ctypes.c_void_p, (ctypes.py_object,)
    view.restype = ctypes.py_object
    view.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)
    return new, address, view


def _writable_bytes(size: int) -> tuple[bytes | bytearray, memoryview]:
    """A new, uninitialised bytes object and a writable view of its buffer.

    Filled through the view before anyone else sees it (what C extensions do
    with PyBytes_FromStringAndSize(NULL, n)), it is handed to grpcio without
    the copy `bytes(bytearray)` would make. Elsewhere than CPython, a bytearray.
    The view does not keep the bytes alive: the caller holds both.
    """
    if platform.python_implementation() != "CPython" or size == 0:
        buffer = bytearray(size)
        return buffer, memoryview(buffer)
    new, address, view = _bytes_api()
    frame = new(None, size)
    return frame, view(address(frame), size, _PYBUF_WRITE)


def _tensor_headers(header: pb.ShardHeader) -> list[pb.TensorHeader]:
    """Every tensor header of a shard: each column's, and a ragged column's lengths'."""
    out = []
    for tensor in header.tensors:
        out.append(tensor)
        if tensor.HasField("lengths"):
            out.append(tensor.lengths)
    return out


def _header_room(header: pb.ShardHeader, checksum: str) -> int:
    """The most bytes the header fields can take once every checksum is filled in."""
    widest = pb.ShardHeader()
    widest.CopyFrom(header)
    for tensor in _tensor_headers(widest):
        if not tensor.checksum_algorithm:
            tensor.checksum, tensor.checksum_algorithm = _MAX_UINT32, checksum
    body = widest.ByteSize()
    algorithm = len(checksum.encode())
    return (len(_field_prefix(_SHARD, body)) + body + len(_varint(_VARINT_TAG))
            + len(_varint(_MAX_UINT32)) + len(_field_prefix(_HEADER_ALGORITHM, algorithm))
            + algorithm)


def encode_shard(header: pb.ShardHeader, parts: Sequence[memoryview | bytes],
                 checksum: str = "crc32") -> bytes:
    """One frame: the header and its checksum, and `parts` back to back as the payload.

    The header's tensor offsets must already point into that payload.
    `checksum` is the stream's negotiated algorithm. A tensor header with no
    checksum algorithm gets its checksum here (in place, in `header`), taken
    from its bytes in the frame right after they are copied there.
    """
    payload_size = sum(memoryview(p).nbytes for p in parts)
    room = _header_room(header, checksum) + 2  # so that what is left is never 1 byte
    prefix = _field_prefix(_PAYLOAD, payload_size)
    frame, view = _writable_bytes(room + len(prefix) + payload_size)
    with view:
        view[room:room + len(prefix)] = prefix
        payload = view[room + len(prefix):]
        position = 0
        for part in parts:
            with memoryview(part) as source, source.cast("B") as data:
                payload[position:position + data.nbytes] = data
                position += data.nbytes
        summed = get_checksum(checksum)
        for tensor in _tensor_headers(header):
            if not tensor.checksum_algorithm:
                end = tensor.offset + tensor.wire_size
                tensor.checksum = summed(payload[tensor.offset:end])
                tensor.checksum_algorithm = checksum
        fields = b"".join(_header_fields(_SHARD, header.SerializeToString(), checksum))
        padding = _padding(room - len(fields))
        view[:len(padding)] = padding
        view[len(padding):room] = fields
        payload.release()
    return bytes(frame) if isinstance(frame, bytearray) else frame


@dataclass
class Frame:
    plan: pb.StreamPlan | None
    shard: pb.ShardHeader | None
    payload: memoryview


def _read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(view) or shift > 63:
            raise ProtocolError("truncated or overlong varint in frame")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def decode(data: bytes, offered: Sequence[str] = ()) -> Frame:
    """Split a received frame into its parsed header and a view of its payload.

    The header's bytes are checked against the frame's header checksum before
    protobuf parses them: a flipped bit (a codec, `byte_shuffle`, a shape) is
    DataCorrupted, never a silently wrong tensor. With `offered` (what the
    loader offered), a frame summed otherwise is refused: a plain connection's
    frames never go unchecked.
    """
    view = memoryview(data)
    payload = view[0:0]
    header: tuple[int, memoryview] | None = None
    checksum: int | None = None
    algorithm: str | None = None
    pos = 0
    while pos < len(view):
        tag, pos = _read_varint(view, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(view, pos)
            if number == _HEADER_CHECKSUM:
                checksum = value
            continue  # else an unknown scalar field from a newer peer
        if wire_type != _LEN:
            raise ProtocolError(f"unexpected wire type {wire_type} for field {number} in frame")
        length, pos = _read_varint(view, pos)
        if pos + length > len(view):
            raise ProtocolError(f"frame field {number} claims {length} bytes past the frame end")
        field = view[pos:pos + length]
        pos += length
        if number in (_PLAN, _SHARD):
            if header is not None:
                raise ProtocolError("frame carries two headers")
            header = (number, field)
        elif number == _PAYLOAD:
            payload = field
        elif number == _HEADER_ALGORITHM:
            algorithm = bytes(field).decode("ascii", errors="replace")
    if header is None:
        raise ProtocolError("frame carries neither a plan nor a shard header")
    number, body = header
    if checksum is None or not algorithm:
        raise ProtocolError("frame header has no checksum: the daemon is older than this "
                            "loader; upgrade tether on the daemon's machine")
    if get_checksum(algorithm)(body) != checksum:
        raise DataCorrupted("frame header checksum mismatch; the header was damaged in "
                            "transit")
    frame = Frame(plan=None, shard=None, payload=payload)
    try:
        if number == _PLAN:
            frame.plan = pb.StreamPlan.FromString(body)
        else:
            frame.shard = pb.ShardHeader.FromString(body)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ProtocolError(f"undecodable frame header: {exc}") from None
    if offered:
        _check_offered(algorithm, frame.shard, offered)
    return frame


def _check_offered(algorithm: str, header: pb.ShardHeader | None,
                   offered: Sequence[str]) -> None:
    """The frame, and each tensor (and its lengths), summed with an algorithm the
    loader offered."""
    if algorithm not in offered:
        raise ProtocolError(f"frame summed with {algorithm!r}, which this loader did not offer "
                            f"({', '.join(offered)})")
    for tensor in header.tensors if header is not None else ():
        for summed in (tensor, tensor.lengths) if tensor.kind else (tensor,):
            if (summed.checksum_algorithm or "crc32") not in offered:
                raise ProtocolError(f"tensor {tensor.name!r} summed with "
                                    f"{summed.checksum_algorithm!r}, which this loader did "
                                    f"not offer ({', '.join(offered)})")
