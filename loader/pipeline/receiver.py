"""The client end of `Stream`: opens it, sends credits and acks, receives frames.

Credits are the backpressure. The daemon sends one shard per credit, and the
loader grants a credit only when a shard has left its window (every row of
it batched), so a training loop that stalls stops the daemon's disk reads.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator

import grpc

from ..wire import framing, rpc
from ..wire.errors import from_rpc_error
from ..wire.preload import preload
from ..wire.v1 import tether_pb2 as pb

_CLOSE = None


def connect_now(channel: grpc.Channel) -> None:
    """Start the channel's TCP, TLS and HTTP/2 handshakes now rather than at its
    first call, so that they overlap whatever comes before that call.

    grpcio's public way (channel_ready_future) polls on a thread that raises
    "Channel closed!" when the channel closes before it is ready; asking the
    core channel for its state with try_to_connect starts connecting and
    returns at once. A grpcio without it connects at the first call, as before.
    """
    check = getattr(getattr(channel, "_channel", None), "check_connectivity_state", None)
    if check is not None:
        with contextlib.suppress(ValueError):  # closed already
            check(True)


class Receiver:
    def __init__(self, channel: grpc.Channel, request: pb.OpenStream,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        preload(codecs=request.codec != "none")  # what its first frame needs
        self._offered = tuple(request.accept_checksums)
        self._outbox: queue.Queue[pb.StreamRequest | None] = queue.Queue()
        self._outbox.put(pb.StreamRequest(open=request))
        method = channel.stream_stream(
            rpc.method_path(rpc.STREAM),
            request_serializer=pb.StreamRequest.SerializeToString,
            response_deserializer=None,  # raw frames; framing.decode parses them
        )
        self._call = method(self._requests(), metadata=metadata)

    def _requests(self) -> Iterator[pb.StreamRequest]:
        while (message := self._outbox.get()) is not _CLOSE:
            yield message

    def grant(self, shards: int) -> None:
        """Allow the daemon to send `shards` more shards."""
        if shards > 0:
            self._outbox.put(pb.StreamRequest(credit=pb.Credit(shards=shards)))

    def want(self, cursor: tuple[int, int], have: bytes) -> None:
        """Ask for a shard, less the rows `have` marks (see pb.Want)."""
        want = pb.Want(epoch=cursor[0], sequence=cursor[1], have=have)
        self._outbox.put(pb.StreamRequest(want=want))

    def release(self, epoch: int, sequence: int, waited_seconds: float = 0.0,
                decode_seconds: float = 0.0, images_decoded: int = 0) -> None:
        """Shard (epoch, sequence) is fully consumed: ack it and free its slot.

        `waited_seconds` is how long the loader waited for data since the last
        release; the daemon's `auto` codec learns the link's rate from it, and
        its image decoding where to decode from `decode_seconds` (CPU time this
        loader spent decoding the shard's `images_decoded` images).
        """
        ack = pb.Ack(epoch=epoch, sequence=sequence, waited_seconds=waited_seconds,
                     decode_seconds=decode_seconds, images_decoded=images_decoded)
        self._outbox.put(pb.StreamRequest(ack=ack))
        self.grant(1)

    def frames(self) -> Iterator[framing.Frame]:
        try:
            for raw in self._call:
                yield framing.decode(raw, self._offered)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(exc) from None

    def close(self) -> None:
        self._outbox.put(_CLOSE)
        self._call.cancel()
