"""Which compression each tensor travels with: codec, zstd level, byte-shuffle.

A fixed setting (`zstd`, `zstd:9`, `lz4:noshuffle`, ...) is used as asked.
`auto` weighs, per column, what each setting costs against what the link
can carry:

    seconds per raw byte = max(CPU per byte / CPU_SHARE,
                               1 / (compression ratio x link bytes per second))

    CPU per byte = max(encode / daemon workers, decode / loader threads)

and picks the cheapest, if it beats raw bytes by 15%. When the loader runs
on this machine (loopback, or a local tunnel or proxy), both ends share its
cores, so codec CPU is added to the pipeline's own CPU and divided among the
cores instead: compression then pays only on a link slower than the CPU.
Only CPU_SHARE of the CPU is planned for, since gRPC, the checksums and the
loader need the rest.

The settings: none, lz4 and zstd at levels ZSTD_LEVELS, each with and
without byte-shuffle. Their speeds and ratios are measured on a 1 MiB
sample of the column itself (the settings near the best again every
PROBE_EVERY shards, as data drifts), climbing each codec's levels only while the last one measured
could run CLIMB_HEADROOM times slower and still outrun the link: a slow
link gets zstd's slow, tight levels, a fast one never pays to measure
them. The link rate is learned from ack timing (LinkMeter); a link slower
than the levels were climbed for (the best setting is the top one measured
and a slower one could keep up) makes auto measure again. So
`auto` sends raw bytes where the link outruns the codecs (loopback, fast
LANs), compresses harder the slower the link, and changes its mind when the
link does. Before anything is measured it assumes 100 Mbit/s.

The first shard never waits for the slow levels: a column's first
measurement times only the levels up to QUICK_LEVEL (a few milliseconds),
and the climb above them runs in a background thread while the stream
sends, once the link's rate is known (at most CLIMB_WAIT_S after the
start), against the rate measured then. Timing zstd up to level 19 first
held a fresh daemon's first batch for a second over a 20 ms link.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tether.wire import tensors
from tether.wire.codecs import NAMES, Compression, requested_setting
from tether.wire.codecs.narrowing import narrowest
from tether.wire.errors import RequestError

log = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 20
# A codec's next level is measured only if the CPU could spend this many times
# the last one's time per byte and still outrun the link: each level on the
# ladder is 2 to 20 times slower than the one before it.
CLIMB_HEADROOM = 3.0
CLEAR_WIN = 0.85
# CPU both ends spend per byte besides the codec (read, checksum, gRPC, copy),
# measured on loopback with codec none: about 2 s per GB.
PIPELINE_CPU_S_PER_BYTE = 2e-9
CPU_SHARE = 0.8
# Settings within this share of the fastest count as equal: the cheaper in CPU wins.
TIE = 0.02
PROBE_EVERY = 32
# Measuring again (every PROBE_EVERY shards) times only the settings within this
# share of the best: the others lost by more than data drift moves them.
REFRESH_NEAR = 0.1
LOADER_THREADS = 2  # decode threads a loader runs by default
# Before anything is measured every link is assumed to be 100 Mbit/s, even to a
# peer on this machine: that peer may be a tunnel (ngrok) or a shaping proxy.
# On a fast link the first frames then cost some compression CPU, and the
# meter switches to raw bytes within a window.
INITIAL_GUESS_BPS = 100e6 / 8
# Measured (bench/compression.py): 5..13 are never tighter than 3 and 17 on the
# bench's data, 19 is zstd's tightest before its memory-hungry ultra levels.
ZSTD_LEVELS = (1, 3, 9, 17, 19)
# A column's first measurement stops at this level; the rest are climbed in the background.
QUICK_LEVEL = 1
# The background climb waits for the link's measured rate this long at most: on the
# initial guess a loopback stream would climb levels it never uses.
CLIMB_WAIT_S = 2.0
NONE = Compression("none")


class LinkMeter:
    """Bytes per second the link carries, learned from acks.

    Each ack says which shard the loader finished and how long it waited for
    data since the previous one. While it waited, delivery was limited by the
    link, and the delivery rate over the last acks is the link's rate. While
    it did not wait, the training loop was the limit and the link is at least
    as fast as the delivery: the estimate may then only rise.
    """

    STARVED = 0.05  # share of time waiting for data that marks a link-bound loader

    def __init__(self, initial: float, window: int = 16, trust_bytes: int = 8 << 20) -> None:
        self._estimate = initial
        self._trust_bytes = trust_bytes
        self._acks: deque[tuple[float, int, float]] = deque(maxlen=window)
        self._total = 0

    def observe(self, nbytes: int, waited_seconds: float, now: float | None = None) -> None:
        """Shard of `nbytes` on the wire acknowledged at `now`."""
        now = time.monotonic() if now is None else now
        self._acks.append((now, nbytes, waited_seconds))
        self._total += nbytes
        if self._total < self._trust_bytes or len(self._acks) < 2:
            return
        span = self._acks[-1][0] - self._acks[0][0]
        if span <= 0:
            return
        rate = sum(b for _, b, _ in list(self._acks)[1:]) / span
        starved = sum(w for _, _, w in list(self._acks)[1:]) / span
        self._estimate = rate if starved >= self.STARVED else max(rate, self._estimate)

    @property
    def bytes_per_second(self) -> float:
        return self._estimate

    @property
    def measured(self) -> bool:
        """Whether the estimate comes from acks rather than the initial guess."""
        return self._total >= self._trust_bytes and len(self._acks) >= 2


@dataclass
class CodecCost:
    encode_s_per_byte: float
    decode_s_per_byte: float
    ratio: float

    def cpu_seconds_per_byte(self, workers: int, shared_cores: int | None) -> float:
        if shared_cores:
            cpu = self.encode_s_per_byte + self.decode_s_per_byte + PIPELINE_CPU_S_PER_BYTE
            return cpu / shared_cores / CPU_SHARE
        return max(self.encode_s_per_byte / workers,
                   self.decode_s_per_byte / LOADER_THREADS) / CPU_SHARE

    def wire_seconds_per_byte(self, link_bytes_per_s: float) -> float:
        return 1.0 / (self.ratio * link_bytes_per_s)

    def seconds_per_byte(self, link_bytes_per_s: float, workers: int,
                         shared_cores: int | None) -> float:
        return max(self.cpu_seconds_per_byte(workers, shared_cores),
                   self.wire_seconds_per_byte(link_bytes_per_s))


def measure(name: str, sample: np.ndarray, setting: Compression | str, narrow: bool,
            rounds: int = 2) -> CodecCost:
    """Encode and decode `sample` with `setting`, timed: the best of `rounds`, since
    the first pays for fresh allocations (and the first codec measured for all);
    one round where it takes long enough for a context switch not to matter."""
    encode_s = decode_s = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        encoded = tensors.encode(name, sample, setting, byte_shuffle=True, narrow=narrow)
        encoded_at = time.perf_counter()
        tensors.decode(encoded.header, encoded.data)
        decoded_at = time.perf_counter()
        encode_s = min(encode_s, encoded_at - start)
        decode_s = min(decode_s, decoded_at - encoded_at)
        if encode_s > 0.02:
            break
    return CodecCost(encode_s_per_byte=encode_s / sample.nbytes,
                     decode_s_per_byte=decode_s / sample.nbytes,
                     ratio=sample.nbytes / max(encoded.data.nbytes, 1))


def ladders(codecs: Sequence[str], shuffles: Sequence[bool] = (True, False)
            ) -> list[list[Compression]]:
    """The settings of `codecs`, in ladders of one codec and shuffle, cheapest level first."""
    out = [[NONE]] if "none" in codecs else []
    for shuffle in shuffles:
        if "lz4" in codecs:
            out.append([Compression("lz4", None, shuffle)])
        if "zstd" in codecs:
            out.append([Compression("zstd", level, shuffle) for level in ZSTD_LEVELS])
    return out


def best_setting(costs: dict[Compression, CodecCost], link_bytes_per_s: float, workers: int,
                 shared_cores: int | None) -> Compression:
    """The measured setting that delivers raw bytes fastest; raw bytes unless
    compression wins clearly (the model counts codec CPU as if it ran beside the
    network work, which it does not quite)."""
    seconds = {s: c.seconds_per_byte(link_bytes_per_s, workers, shared_cores)
               for s, c in costs.items()}
    fastest = min(seconds.values())
    near = [s for s in seconds if seconds[s] <= fastest * (1 + TIE)]
    best = min(near, key=lambda s: (costs[s].cpu_seconds_per_byte(workers, shared_cores), s))
    if NONE in seconds and best != NONE and not seconds[best] < CLEAR_WIN * seconds[NONE]:
        return NONE
    return best


class FixedCodec:
    def __init__(self, setting: Compression | str) -> None:
        self.fixed = setting if isinstance(setting, Compression) else Compression.parse(setting)
        self.codec = self.fixed.codec
        self.link = LinkMeter(float("inf"))

    def setting(self, column: str, array: np.ndarray) -> Compression:
        return self.fixed

    def choose(self, column: str, array: np.ndarray) -> str:
        return self.codec

    def close(self) -> None:
        """Nothing runs beside the stream."""


class AutoCodec:
    def __init__(self, candidates: Sequence[str], workers: int, narrow: bool,
                 local_peer: bool) -> None:
        self.candidates = list(candidates)
        self.workers = workers
        self.shared_cores = (os.cpu_count() or 1) if local_peer else None
        self.narrow = narrow
        self.link = LinkMeter(INITIAL_GUESS_BPS)
        self._costs: dict[str, dict[Compression, CodecCost]] = {}
        self._uses: dict[str, int] = {}
        self._probing: dict[str, threading.Lock] = {}
        self._climbs: dict[str, threading.Thread] = {}
        self._climbing = threading.Lock()  # one column's climb at a time: the cores encode too
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def _worth_climbing(self, cost: CodecCost, rate: float) -> bool:
        """Whether a slower level than `cost`'s could still keep up with the link."""
        return cost.cpu_seconds_per_byte(self.workers, self.shared_cores) * CLIMB_HEADROOM \
            < cost.wire_seconds_per_byte(rate)

    def _sample(self, array: np.ndarray) -> np.ndarray:
        rows = max(1, SAMPLE_BYTES // max(array[:1].nbytes, 1))
        return np.array(array[:rows])  # a copy: a background climb outlives the shard

    def _probe(self, column: str, sample: np.ndarray, rate: Callable[[], float],
               known: dict[Compression, CodecCost], top: int | None = None
               ) -> tuple[dict[Compression, CodecCost], bool]:
        """Every setting's cost (those in `known` kept), climbing each codec's
        levels as far as they may pay at `rate()`, or to level `top`; and whether
        a ladder stopped at `top` with higher levels still worth measuring."""
        wide = (narrowest(sample) if self.narrow else sample.dtype).itemsize > 1
        costs, capped = dict(known), False
        for ladder in ladders(self.candidates, (True, False) if wide else (True,)):
            for setting in ladder:
                if self._closed.is_set():
                    return costs, False
                cost = costs.get(setting) or measure(column, sample, setting, self.narrow)
                costs[setting] = cost
                if not self._worth_climbing(cost, rate()):
                    break  # the next levels are slower still
                if top is not None and setting.level is not None and setting.level >= top \
                        and setting != ladder[-1]:
                    capped = True
                    break
        return costs, capped

    def _refresh(self, column: str, array: np.ndarray, rate: float,
                 known: dict[Compression, CodecCost]) -> dict[Compression, CodecCost]:
        """`known` with the settings near the best (and raw bytes) measured again."""
        seconds = {s: c.seconds_per_byte(rate, self.workers, self.shared_cores)
                   for s, c in known.items()}
        fastest = min(seconds.values())
        sample = self._sample(array)
        return {**known, **{s: measure(column, sample, s, self.narrow) for s in known
                            if s == NONE or seconds[s] <= fastest * (1 + REFRESH_NEAR)}}

    def _costs_for(self, column: str, array: np.ndarray,
                   rate: float) -> dict[Compression, CodecCost]:
        with self._lock:
            uses = self._uses.get(column, 0)
            self._uses[column] = uses + 1
            known = self._costs.get(column)
            probing = self._probing.setdefault(column, threading.Lock())
        if known is not None and uses % PROBE_EVERY:
            return known
        # One thread measures a column at a time (on two cores a second would only
        # slow the first); the others wait for the first measurement, or go on with
        # the last one (a background climb holds the lock while it runs).
        if not probing.acquire(blocking=known is None):
            return known
        try:
            with self._lock:
                measured = self._costs.get(column)  # a climb may have finished meanwhile
            if known is None and measured is not None:
                return measured  # measured while this worker waited
            if measured is not None:
                costs = self._refresh(column, array, rate, measured)
            else:
                costs, capped = self._probe(column, self._sample(array), lambda: rate, {},
                                            top=QUICK_LEVEL)
                if capped:
                    self._climb_in_background(column, array)
            with self._lock:
                self._costs[column] = costs
            return costs
        finally:
            probing.release()

    def _climb_in_background(self, column: str, array: np.ndarray) -> None:
        """Measure the levels above those known for `column`, in a thread, once the
        link's rate is measured (or CLIMB_WAIT_S has passed); shards go on meanwhile
        with what is known."""
        with self._lock:
            running = self._climbs.get(column)
            if self._closed.is_set() or (running is not None and running.is_alive()):
                return
            thread = self._climbs[column] = threading.Thread(
                target=self._climb, args=(column, self._sample(array)),
                name=f"tether-climb-{column}", daemon=True)
        thread.start()

    def _climb(self, column: str, sample: np.ndarray) -> None:
        deadline = time.monotonic() + CLIMB_WAIT_S
        while not self.link.measured and time.monotonic() < deadline:
            if self._closed.wait(0.02):
                return
        with self._climbing, self._probing[column]:
            with self._lock:
                known = self._costs.get(column, {})
            costs, _ = self._probe(column, sample, lambda: self.link.bytes_per_second, known)
            with self._lock:
                self._costs[column] = costs
                self._uses[column] = 1  # measured now: the next refresh is PROBE_EVERY away

    def join_climbs(self, timeout: float = 30.0) -> None:
        """Wait for the background climbs running now (for tests and benchmarks)."""
        with self._lock:
            threads = list(self._climbs.values())
        for thread in threads:
            thread.join(timeout)

    def close(self) -> None:
        """The stream has ended: background climbs stop at their next setting."""
        self._closed.set()

    def _climb_later(self, column: str, array: np.ndarray, best: Compression,
                     cost: CodecCost, rate: float) -> None:
        """Climb again when the link has slowed past what the levels were climbed
        for: the best is its ladder's top measured level and a slower level could
        keep up with the link."""
        if best.level is None or best.level == ZSTD_LEVELS[-1] \
                or not self._worth_climbing(cost, rate):
            return
        higher = Compression(best.codec, ZSTD_LEVELS[ZSTD_LEVELS.index(best.level) + 1],
                             best.byte_shuffle)
        with self._lock:
            climbed = higher in self._costs.get(column, {})
        if not climbed:
            self._climb_in_background(column, array)

    def setting(self, column: str, array: np.ndarray) -> Compression:
        if not array.nbytes:  # nothing to compress (a text column of empty strings)
            return NONE
        rate = self.link.bytes_per_second
        costs = self._costs_for(column, array, rate)
        best = best_setting(costs, rate, self.workers, self.shared_cores)
        self._climb_later(column, array, best, costs[best], rate)
        log.debug("column %s: link %.1f MB/s, %s; ns/byte %s", column, rate / 1e6, best,
                  {str(s): round(c.seconds_per_byte(rate, self.workers, self.shared_cores)
                                 * 1e9, 2) for s, c in costs.items()})
        return best

    def choose(self, column: str, array: np.ndarray) -> str:
        """The codec's name alone (setting() says the level and shuffle too)."""
        return self.setting(column, array).codec


def peer_is_local(peer: str) -> bool:
    """Whether a gRPC peer string ("ipv4:127.0.0.1:5000", "unix:...") is this machine."""
    kind, _, rest = peer.partition(":")
    if kind == "unix":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def codec_policy(requested: str, accepted: Sequence[str], workers: int, narrow: bool,
                 local_peer: bool) -> FixedCodec | AutoCodec:
    """The policy for a stream; refuses a codec the client cannot decode."""
    setting = requested_setting(requested)
    if setting is None:
        usable = [c for c in NAMES if c in accepted or c == "none"]
        return AutoCodec(usable, workers, narrow, local_peer)
    if setting.codec not in accepted and setting.codec != "none":
        raise RequestError(
            f"the client cannot decode {setting.codec!r} (it accepts "
            f"{', '.join(accepted) or 'none'}); install pyarrow on the client or choose "
            "codec='none'"
        )
    return FixedCodec(setting)
