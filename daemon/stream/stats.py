"""Counters behind `tether status`: totals, and one entry per open stream."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

from tether.wire import VERSION
from tether.wire.v1 import tether_pb2 as pb


@dataclass
class StreamStats:
    peer: str
    dataset: str
    started: float = field(default_factory=time.monotonic)
    shards_sent: int = 0
    bytes_sent: int = 0
    shards_acked: int = 0
    produced: int = 0  # shards whose reading and encoding has begun
    credits: int = 0
    producing_seconds: float = 0.0  # waiting for a shard's read and encode
    credit_wait_seconds: float = 0.0  # nothing to do: no credit from the loader
    sending_seconds: float = 0.0  # a frame handed to gRPC, not yet taken

    @property
    def in_flight(self) -> int:
        return self.produced - self.shards_acked

    def to_proto(self) -> pb.StreamStatus:
        return pb.StreamStatus(
            peer=self.peer, dataset=self.dataset, shards_sent=self.shards_sent,
            bytes_sent=self.bytes_sent, shards_acked=self.shards_acked,
            in_flight=self.in_flight, credits=self.credits,
            seconds=time.monotonic() - self.started,
            producing_seconds=self.producing_seconds,
            credit_wait_seconds=self.credit_wait_seconds, sending_seconds=self.sending_seconds,
        )


class Stats:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._streams: dict[int, StreamStats] = {}
        self.streams_total = self.shards_sent = self.bytes_sent = 0
        self.rows_read = self.bytes_read = self.errors = 0

    def open_stream(self, peer: str, dataset: str) -> tuple[int, StreamStats]:
        entry = StreamStats(peer, dataset)
        with self._lock:
            key = next(self._ids)
            self._streams[key] = entry
            self.streams_total += 1
        return key, entry

    def streams_from(self, host: str) -> int:
        """Open streams whose peer is at `host` (gRPC's "ipv4:ADDRESS", any port)."""
        with self._lock:
            return sum(s.peer.rsplit(":", 1)[0] == host for s in self._streams.values())

    def close_stream(self, key: int) -> None:
        with self._lock:
            self._streams.pop(key, None)

    def sent(self, entry: StreamStats, nbytes: int) -> None:
        with self._lock:
            entry.shards_sent += 1
            entry.bytes_sent += nbytes
            self.shards_sent += 1
            self.bytes_sent += nbytes

    def read(self, rows: int, nbytes: int) -> None:
        with self._lock:
            self.rows_read += rows
            self.bytes_read += nbytes

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def to_proto(self) -> pb.StatusResponse:
        with self._lock:
            return pb.StatusResponse(
                version=VERSION,
                uptime_seconds=time.monotonic() - self.started,
                streams_total=self.streams_total, shards_sent=self.shards_sent,
                bytes_sent=self.bytes_sent, rows_read=self.rows_read,
                bytes_read=self.bytes_read, errors=self.errors,
                streams=[s.to_proto() for s in self._streams.values()],
            )
