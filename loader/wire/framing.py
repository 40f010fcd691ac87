"""The one module that knows how a ShardFrame sits on the wire.

A frame is the protobuf encoding of `tether.v1.ShardFrame` (the proto package)
(plan = 1, shard = 2, payload = 3, header_checksum = 4,
header_checksum_algorithm = 5), written and read by hand so that the
payload, megabytes of tensor bytes, is never copied by protobuf: the daemon
joins header and payload once, the loader slices the payload as a
memoryview. Any protobuf parser still reads these bytes as a ShardFrame.
The header checksum covers the header's bytes exactly as written; each
tensor's own checksum (in the header) covers its bytes in the payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .checksums import get_checksum
from .errors import DataCorrupted, ProtocolError
from .v1 import tether_pb2 as pb

_LEN = 2  # protobuf wire type of length-delimited fields
_PLAN, _SHARD, _PAYLOAD, _HEADER_CHECKSUM, _HEADER_ALGORITHM = 1, 2, 3, 4, 5
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


def encode_shard(header: pb.ShardHeader, parts: Sequence[memoryview | bytes],
                 checksum: str = "crc32") -> bytes:
    """One frame: the header and its checksum, then `parts` back to back as the payload.

    The header's tensor offsets must already point into that payload.
    `checksum` is the stream's negotiated algorithm.
    """
    payload_size = sum(memoryview(p).nbytes for p in parts)
    return b"".join([*_header_fields(_SHARD, header.SerializeToString(), checksum),
                     _field_prefix(_PAYLOAD, payload_size), *parts])


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


def decode(data: bytes) -> Frame:
    """Split a received frame into its parsed header and a view of its payload.

    The header's bytes are checked against the frame's header checksum before
    protobuf parses them: a flipped bit (a codec, `byte_shuffle`, a shape) is
    DataCorrupted, never a silently wrong tensor.
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
    return frame
