"""Streams share one memory budget and wake each other through it: a stream
must never wait for another stream's lock while holding its own.

Found hung in `.ci/run`'s main suite (tests/e2e/test_faults.py, eight clients):
each of several streams acknowledged a shard under its own lock, gave the bytes
back to the budget, and the budget woke the other streams, taking their locks
in turn; two streams doing so at once each held the lock the other needed.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tether.daemon.sources.npy import NpySource
from tether.daemon.stream.budget import MemoryBudget
from tether.daemon.stream.codec_policy import FixedCodec, LinkMeter
from tether.daemon.stream.encoder import ShardEncoder
from tether.daemon.stream.shard_stream import ShardStream
from tether.daemon.stream.stats import Stats
from tether.wire import framing
from tether.wire.plan import HostPlan, Layout, shard_tasks
from tether.wire.v1 import tether_pb2 as pb

DEADLINE_S = 5.0


class Context:
    """The few calls a stream makes on gRPC's ServicerContext, for a stream run
    without a server (a client that stays connected)."""

    def add_callback(self, callback) -> bool:
        return True

    def is_active(self) -> bool:
        return True

    def cancel(self) -> None:
        pass

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def _requests(inbox: queue.Queue) -> Iterator[pb.StreamRequest]:
    while (message := inbox.get()) is not None:
        yield message


@pytest.fixture
def streams(tmp_path: Path):
    """Two streams of one daemon (a real source and encoder each), sharing a budget."""
    rows = 4096
    np.save(tmp_path / "x.npy", np.arange(rows, dtype=np.int64))
    source = NpySource("train", [tmp_path / "x.npy"], tmp_path)
    budget, totals = MemoryBudget(1 << 20), Stats()
    plan = HostPlan(Layout.random_access(rows), False, 0, batch_size=256, shard_rows=256)
    made = []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(2):
            encoder = ShardEncoder(source, source.select(["x"]), plan, FixedCodec("none"),
                                   narrow=False, checksum="crc32", stats=totals, pool=pool)
            _, entry = totals.open_stream("ipv4:127.0.0.1:1", "train")
            inbox: queue.Queue = queue.Queue()
            stream = ShardStream(shard_tasks(plan), 1, encoder, pb.StreamPlan(), pool, totals,
                                 entry, 8, LinkMeter(1e9), budget, 256 * 8)
            made.append((stream, stream.run(_requests(inbox), Context()), inbox))
        yield made
        for _, frames, inbox in made:
            inbox.put(None)
            frames.close()


def test_an_ack_never_waits_for_another_streams_lock_while_holding_its_own(streams):
    (first, first_frames, first_inbox), (second, second_frames, _) = streams
    next(second_frames)  # the second stream runs: it waits on the budget for room
    next(first_frames)  # the plan
    shard = framing.decode(next(first_frames)).shard
    with second._cond:  # the second stream busy under its own lock (say, its own ack)
        first_inbox.put(pb.StreamRequest(ack=pb.Ack(epoch=shard.epoch,
                                                    sequence=shard.sequence)))
        deadline = time.monotonic() + DEADLINE_S
        while first.stats.shards_acked == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.stats.shards_acked == 1, "the ack was not taken"
        # ... and the first stream's lock is free again, although the budget's
        # wake-up of the second stream must wait for the end of this block.
        taken = first._cond.acquire(timeout=DEADLINE_S)
        if taken:
            first._cond.release()
        assert taken, "the first stream held its lock while waiting for the second's"
