"""One logical stream of shards, across as many connections as it takes.

When the connection breaks (reset, keepalive timeout, daemon restarted) the
stream reopens at the next shard it has not received, with credits for the
room the loader still has, after a backoff (RetryPolicy). The daemon's plan
is deterministic, so the new connection carries on with exactly the shards
the old one would have sent: the loader sees one unbroken sequence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import grpc

from ..retry import RetryPolicy
from ..wire.errors import ConnectionFailed, DatasetError, ProtocolError
from ..wire.framing import Frame
from ..wire.plan import Cursor, HostPlan
from ..wire.spec import Connection, StreamSpec
from ..wire.v1 import tether_pb2 as pb
from .decoder import check_plan, check_shard
from .receiver import Receiver

log = logging.getLogger(__name__)


def following(shard: pb.ShardHeader) -> Cursor:
    """The cursor after `shard`; an epoch's last shard says it is (the stream
    of one part of a dataset cannot know its epochs' lengths in advance)."""
    if shard.last_in_epoch:
        return Cursor(shard.epoch + 1, 0)
    return Cursor(shard.epoch, shard.sequence + 1)

def check_counts(plan: pb.StreamPlan, host_plan: HostPlan, epoch: int) -> None:
    """The daemon counts a full epoch's batches and dropped rows as the loader's
    own copy of the plan does: both follow one plan, or neither is trusted."""
    counted = (plan.batches_per_epoch, plan.dropped_rows)
    expected = (host_plan.batches(epoch), host_plan.dropped_rows(epoch))
    if counted != expected:
        raise ProtocolError(f"the daemon's plan counts {counted[0]} batches and {counted[1]} "
                            f"dropped rows an epoch, where its layout gives {expected[0]} and "
                            f"{expected[1]}")


class _Closed(Exception):
    """The stream was closed while it was reconnecting."""


# What must not change between connections of one stream.
_PLAN_FIELDS = ("fingerprint", "num_rows", "shard_rows", "shards_per_epoch", "seed", "layout")


class ResumableStream:
    """`connection` holds what this client adds to every connection (accepted
    codecs and checksums, the version to insist on, its part of a split dataset)."""

    def __init__(self, channel: grpc.Channel, spec: StreamSpec, window: int, retry: RetryPolicy,
                 metadata: tuple[tuple[str, str], ...] = (),
                 reopen: Callable[[], grpc.Channel] | None = None, name: str = "the daemon",
                 connection: Connection | None = None) -> None:
        self.name = name  # the daemon, for messages
        self._channel: grpc.Channel | None = channel
        self._reopen = reopen  # a fresh channel after a failure (None: keep this one)
        self._metadata = metadata
        self._spec = spec
        self._connection = connection or Connection()
        self._retry = retry
        self._window = window
        self._next: Cursor | None = None  # None: the plan's first shard
        self._held = 0  # shards received and not yet released
        self._lock = threading.Lock()  # _held and _receiver: the consumer's thread releases
        self._receiver: Receiver | None = None
        self._connection_start = Cursor(0, 0)  # shards before it came on a dead connection
        self._frames: Iterator[Frame] | None = None
        self.plan: pb.StreamPlan | None = None
        self.host_plan: HostPlan | None = None
        self.reconnects = 0
        # Shards named by want() and not received yet: a new connection names them again.
        self._wants: dict[Cursor, bytes] = {}
        self._closed = threading.Event()  # close() ends reconnecting, and its backoff waits

    def _drop_channel(self) -> None:
        """After a failure, connect anew: some grpcio releases (1.66) keep failing
        TLS handshakes on a channel whose server was killed and restarted, and
        a new channel re-checks the pinned certificate of whoever answers now."""
        if self._reopen is not None and self._channel is not None:
            self._channel.close()
            self._channel = None

    def _connect(self) -> Iterator[Frame]:
        if self._closed.is_set():
            raise _Closed
        if self._channel is None:
            self._channel = self._reopen()
        try:
            return self._open_stream()
        except ConnectionFailed:
            self._drop_channel()
            raise

    def _open_stream(self) -> Iterator[Frame]:
        with self._lock:
            held_when_asked = self._held
        connection = replace(self._connection, resume=self._next,
                             initial_credits=max(0, self._window - held_when_asked))
        if self.plan is not None:  # the same plan, whatever else changed
            connection = replace(connection, shard_rows=self.plan.shard_rows,
                                 fingerprint=self.plan.fingerprint)
        request = self._spec.to_proto(connection)
        receiver = Receiver(self._channel, request, self._metadata)
        frames = receiver.frames()
        try:
            first = next(frames, None)
        except BaseException:
            receiver.close()
            raise
        if first is None or first.plan is None:
            receiver.close()
            raise ProtocolError("the daemon did not open the stream with a plan")
        if self.plan is None:
            try:
                check_plan(first.plan, self._spec.image_size)
            except ProtocolError as exc:
                receiver.close()
                raise ProtocolError(f"{self.name}: {exc}") from None
            self.plan = first.plan
            self.host_plan = self._spec.host_plan(first.plan)
            try:
                check_counts(first.plan, self.host_plan, self._spec.start.epoch + 1)
            except ProtocolError as exc:
                receiver.close()
                raise ProtocolError(f"{self.name}: {exc}") from None
        elif any(getattr(first.plan, f) != getattr(self.plan, f) for f in _PLAN_FIELDS):
            receiver.close()
            raise DatasetError("the dataset changed while the loader was reconnecting")
        with self._lock:
            old, self._receiver = self._receiver, receiver
            self._connection_start = self._next or Cursor(0, 0)  # every shard comes after
            # Shards released while connecting went to the dead connection.
            receiver.grant(held_when_asked - self._held)
            for cursor, have in self._wants.items():
                receiver.want(cursor, have)
        if old is not None:
            old.close()
        return frames

    def open(self) -> pb.StreamPlan:
        """Connect (retrying while the daemon is unreachable) and return the plan."""
        self._frames = self._retry.call(self._connect, timeout=self._retry.connect_timeout)
        return self.plan

    def frames(self) -> Iterator[Frame]:
        """Shard frames in plan order, reconnecting whenever the connection breaks."""
        while True:
            try:
                for frame in self._frames:
                    if frame.shard is None:
                        raise ProtocolError(f"{self.name} sent a second plan mid-stream")
                    with self._lock:
                        self._held += 1
                        held, window = self._held, self._window
                    if held > window:  # a credit flood would queue without bound
                        raise ProtocolError(
                            f"{self.name} sent shard {frame.shard.sequence} of epoch "
                            f"{frame.shard.epoch} beyond the credits granted: {held} shards "
                            f"held for a window of {window}")
                    try:
                        check_shard(frame.shard, self.plan)
                    except ProtocolError as exc:
                        raise ProtocolError(f"{self.name}: {exc}") from None
                    self._next = following(frame.shard)
                    if self._wants:
                        with self._lock:
                            self._wants.pop(Cursor(frame.shard.epoch, frame.shard.sequence),
                                            None)
                    yield frame
                return
            except ConnectionFailed as exc:
                if self._closed.is_set():
                    return  # closed by the consumer: the break was its own doing
                if self._retry.timeout <= 0:
                    raise
                self.reconnects += 1
                self._drop_channel()
                try:
                    self._frames = self._retry.call(self._connect, first_error=exc,
                                                    sleep=self._closed.wait)
                except _Closed:
                    return
                except ConnectionFailed as gave_up:
                    raise ConnectionFailed(f"daemon {self.name}: {gave_up}") from gave_up
                log.info("reconnected to %s; resuming at %s", self.name, self._next)

    def want(self, cursor: Cursor, have: bytes) -> None:
        """Ask for shard `cursor` without the rows `have` marks (streams opened
        with wants=True; shards never named are skipped)."""
        with self._lock:
            self._wants[cursor] = have
            self._receiver.want(cursor, have)

    def grant(self, shards: int) -> None:
        with self._lock:
            self._window += shards
            self._receiver.grant(shards)

    def release(self, epoch: int, sequence: int, waited_seconds: float,
                decode_seconds: float = 0.0, images_decoded: int = 0) -> None:
        """A shard is consumed: free its slot; ack it if this connection sent it."""
        position = Cursor(epoch, sequence)
        with self._lock:
            self._held -= 1
            if position >= self._connection_start:
                self._receiver.release(epoch, sequence, waited_seconds, decode_seconds,
                                       images_decoded)
            else:  # sent on a connection that is gone: only the room comes back
                self._receiver.grant(1)

    def close(self) -> None:
        self._closed.set()
        if self._receiver is not None:
            self._receiver.close()
