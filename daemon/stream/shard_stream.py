"""One client's `Stream`: credits in, shard frames out, reading ahead within credits.

The daemon starts reading and encoding a shard only against a credit, on the
shared encode pool, so a stream never has more shards in memory than its
client has room for, and a stalled client stops this stream's disk reads.
Each shard also takes its bytes from the daemon's one memory budget until it
is acknowledged, so many streams together stay within it. A client that
stops reading leaves a send blocked; past the stall timeout the stream is
cancelled, and what it held is freed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future

import grpc

from tether.wire import framing
from tether.wire.errors import RequestError
from tether.wire.plan import SCANNING, Cursor, ShardTask
from tether.wire.v1 import tether_pb2 as pb

from .budget import MemoryBudget
from .codec_policy import LinkMeter
from .encoder import ShardEncoder
from .stats import Stats, StreamStats
from .wanted import WantedShards

log = logging.getLogger(__name__)

# How long the stream sleeps between checks that its client is still there.
_POLL_SECONDS = 1.0
# A send blocked this long means the client stopped reading: the stream is
# cancelled (TETHER_STALL_SECONDS changes it, see Servicer).
DEFAULT_STALL_SECONDS = 120.0
# What a caching loader's stream produces while it names no shard.
_NOT_WANTED_YET = object()


class ShardStream:
    def __init__(self, tasks: Iterator[ShardTask | object], initial_credits: int,
                 encoder: ShardEncoder, plan_message: pb.StreamPlan,
                 pool: Executor, totals: Stats, stats: StreamStats, max_window: int,
                 link: LinkMeter, budget: MemoryBudget, shard_bytes: int,
                 stall_seconds: float = DEFAULT_STALL_SECONDS,
                 wanted: WantedShards | None = None) -> None:
        self.tasks = tasks
        self.wanted = wanted  # None: every shard of the plan is sent
        self.encoder = encoder
        self.plan_message = plan_message
        self.pool = pool
        self.totals = totals
        self.stats = stats
        self.max_window = max_window
        self.link = link
        self.budget = budget
        self.shard_bytes = shard_bytes  # what a shard may hold, raw: its share of the budget
        self.stall_seconds = stall_seconds
        self._reserved = 0  # shards holding budget: produced, not yet acknowledged
        self._sending_since: float | None = None
        self._cond = threading.Condition()
        self._granted = 0  # credits accepted in total
        self._sizes: dict[tuple[int, int], int] = {}  # wire size of each unacked shard
        self._error: Exception | None = None
        self._grant(initial_credits)

    def _grant(self, shards: int) -> None:
        """Accept credits, clamped so the window never exceeds max_window shards."""
        room = self.max_window - (self._granted - self.stats.shards_acked)
        accepted = max(0, min(shards, room))
        if accepted < shards:
            log.debug("clamped a credit of %d to %d (window %d)", shards, accepted, self.max_window)
        self._granted += accepted
        self.stats.credits = self._granted - self.stats.produced

    def _may_produce(self) -> bool:
        """Whether a credit is free, and the budget has room for one more shard (taken)."""
        with self._cond:
            if self.stats.produced >= self._granted or self._error is not None:
                return False
            if not self.budget.take(self.shard_bytes, holding=self._reserved):
                return False
            self._reserved += 1
            return True

    def _release(self, shards: int | None = None) -> None:
        """Give `shards` reservations (None: all) back to the budget.

        Never called holding _cond: the budget wakes every stream waiting for
        room, each taking its own lock, so two streams releasing at once under
        their own locks would each wait for the other's for ever."""
        with self._cond:
            shards = self._reserved if shards is None else shards
            self._reserved -= shards
        self.budget.give(shards * self.shard_bytes)

    def _wake(self) -> None:
        """Look again for work: the budget has room, or the call ended."""
        with self._cond:
            self._cond.notify_all()

    def _next_task(self) -> ShardTask | object | None:
        if self.wanted is None:
            return next(self.tasks, None)
        with self._cond:
            task = self.wanted.next_task()
        return _NOT_WANTED_YET if task is None else task

    def _watch(self, context: grpc.ServicerContext, done: threading.Event) -> None:
        """Cancel the stream when one send has been blocked past the stall timeout:
        its client stopped reading, and the frames queued for it are held here."""
        while not done.wait(min(1.0, self.stall_seconds / 4)):
            since = self._sending_since
            if since is not None and time.monotonic() - since > self.stall_seconds:
                log.warning("stream %s -> %s: the client read nothing for %.0f s; cancelled",
                            self.stats.dataset, self.stats.peer, self.stall_seconds)
                context.cancel()
                return

    def _read_requests(self, requests: Iterable[pb.StreamRequest]) -> None:
        try:
            for message in requests:
                kind = message.WhichOneof("kind")
                acked = False
                with self._cond:
                    if kind == "credit":
                        self._grant(message.credit.shards)
                    elif kind == "ack":
                        ack = message.ack
                        size = self._sizes.pop((ack.epoch, ack.sequence), None)
                        if size is not None:  # ignore acks for shards this stream never sent
                            self.stats.shards_acked += 1
                            self.link.observe(size, ack.waited_seconds)
                            if self.encoder.images is not None and ack.images_decoded:
                                self.encoder.images.place.observe_loader(
                                    ack.decode_seconds, ack.images_decoded)
                            acked = True
                    elif kind == "want" and self.wanted is not None:
                        self.wanted.add(message.want)
                    else:
                        what = kind or "empty"
                        self._error = RequestError(f"unexpected {what} message mid-stream")
                    self._cond.notify_all()
                if acked:
                    self._release(1)
        except grpc.RpcError:
            pass  # the client went away; run() notices through the context
        except Exception as exc:  # a malformed message: refuse the stream, not the daemon
            with self._cond:
                self._error = RequestError(f"bad stream message: {exc}")
                self._cond.notify_all()

    def _produce(self, pending: deque[tuple[Cursor, Future[bytes]]],
                 context: grpc.ServicerContext) -> bool:
        """Start reading and encoding shards while the credits and the budget
        allow; whether the plan is exhausted. The next task is found outside
        the lock: a part's stream may scan its order a while (reporting
        SCANNING meanwhile), and the client's credits, acks and departure must
        get through."""
        while self._may_produce() and context.is_active():
            task = self._next_task()
            if task is _NOT_WANTED_YET or task is None or task is SCANNING:
                self._release(1)  # the reservation made for it
            if task is None:
                return True
            if task is _NOT_WANTED_YET or (task is SCANNING and pending):
                return False  # send what is ready; scan on after
            if task is not SCANNING:
                pending.append((task.cursor, self.pool.submit(self.encoder.encode, task)))
                with self._cond:
                    self.stats.produced += 1
                    self.stats.credits = self._granted - self.stats.produced
        return False

    def run(self, requests: Iterable[pb.StreamRequest],
            context: grpc.ServicerContext) -> Iterator[bytes]:
        threading.Thread(target=self._read_requests, args=(requests,),
                         name="tether-credits", daemon=True).start()
        context.add_callback(self._wake)
        self.budget.subscribe(self._wake)
        done = threading.Event()
        threading.Thread(target=self._watch, args=(context, done), name="tether-stall",
                         daemon=True).start()
        yield framing.encode_plan(self.plan_message, checksum=self.encoder.checksum)
        pending: deque[tuple[Cursor, Future[bytes]]] = deque()
        exhausted = False
        try:
            while True:
                exhausted = exhausted or self._produce(pending, context)
                with self._cond:
                    if self._error is not None:
                        raise self._error
                    if not pending:
                        if exhausted or not context.is_active():
                            return
                        waited = time.perf_counter()
                        self._cond.wait(_POLL_SECONDS)
                        self.stats.credit_wait_seconds += time.perf_counter() - waited
                        continue
                waited = time.perf_counter()
                frame = pending[0][1].result()
                self.stats.producing_seconds += time.perf_counter() - waited
                position, _ = pending.popleft()
                with self._cond:
                    self._sizes[position] = len(frame)
                self._sending_since = time.monotonic()
                yield frame
                self.stats.sending_seconds += time.monotonic() - self._sending_since
                self._sending_since = None
                self.totals.sent(self.stats, len(frame))
        finally:
            done.set()
            self.budget.unsubscribe(self._wake)
            for _, future in pending:
                future.cancel()
            self._release()

