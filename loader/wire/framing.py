"""The one module that knows how a ShardFrame sits on the wire.

A frame is the protobuf encoding of `tether.v1.ShardFrame` (the proto package)
(plan = 1, shard = 2, payload = 3), written and read by hand so that the
payload, megabytes of tensor bytes, is never copied by protobuf: the daemon
joins header and payload once, the loader slices the payload as a
memoryview. Any protobuf parser still reads these bytes as a ShardFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ProtocolError
from .v1 import tether_pb2 as pb

_LEN = 2  # protobuf wire type of length-delimited fields
_PLAN, _SHARD, _PAYLOAD = 1, 2, 3
_VARINT = 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_prefix(number: int, length: int) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(length)


def encode_plan(plan: pb.StreamPlan) -> bytes:
    body = plan.SerializeToString()
    return _field_prefix(_PLAN, len(body)) + body


def encode_shard(header: pb.ShardHeader, parts: Sequence[memoryview | bytes]) -> bytes:
    """One frame: the header, then `parts` back to back as the payload.

    The header's tensor offsets must already point into that payload.
    """
    body = header.SerializeToString()
    payload_size = sum(memoryview(p).nbytes for p in parts)
    return b"".join(
        [_field_prefix(_SHARD, len(body)), body, _field_prefix(_PAYLOAD, payload_size), *parts]
    )


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
    """Split a received frame into its parsed header and a view of its payload."""
    view = memoryview(data)
    frame = Frame(plan=None, shard=None, payload=view[0:0])
    pos = 0
    while pos < len(view):
        tag, pos = _read_varint(view, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:  # unknown scalar field from a newer peer
            _, pos = _read_varint(view, pos)
            continue
        if wire_type != _LEN:
            raise ProtocolError(f"unexpected wire type {wire_type} for field {number} in frame")
        length, pos = _read_varint(view, pos)
        if pos + length > len(view):
            raise ProtocolError(f"frame field {number} claims {length} bytes past the frame end")
        field = view[pos:pos + length]
        pos += length
        try:
            if number == _PLAN:
                frame.plan = pb.StreamPlan.FromString(field)
            elif number == _SHARD:
                frame.shard = pb.ShardHeader.FromString(field)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ProtocolError(f"undecodable frame header: {exc}") from None
        if number == _PAYLOAD:
            frame.payload = field
    if frame.plan is None and frame.shard is None:
        raise ProtocolError("frame carries neither a plan nor a shard header")
    return frame
