"""Which codec each tensor travels with.

A fixed codec is used as asked. `auto` weighs, per column, what each codec
costs against what the link can carry:

    seconds per raw byte = max(encode / daemon workers,
                               decode / loader threads,
                               1 / (compression ratio x link bytes per second))

and picks the cheapest, if it beats raw bytes by 15%. When the loader runs
on this machine (loopback, or a local tunnel or proxy), both ends share its
cores, so codec CPU is added to the pipeline's own CPU and divided among the
cores instead: compression then pays only on a link slower than the CPU.

Codec speeds and ratios are measured on a 1 MiB sample of the column itself
(again every PROBE_EVERY shards, as data drifts); the link rate is learned
from ack timing (LinkMeter). So `auto` sends raw bytes where the link
outruns the codecs (loopback, fast LANs), compresses where it does not, and
changes its mind when the link does. Before anything is measured it assumes
100 Mbit/s: the first window of shards is encoded on that guess.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tether.wire import tensors
from tether.wire.codecs import NAMES, check_requested
from tether.wire.errors import RequestError

log = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 20
CLEAR_WIN = 0.85
# CPU both ends spend per byte besides the codec (read, checksum, gRPC, copy),
# measured on loopback with codec none: about 2 s per GB.
PIPELINE_CPU_S_PER_BYTE = 2e-9
PROBE_EVERY = 32
LOADER_THREADS = 2  # decode threads a loader runs by default
# Before anything is measured every link is assumed to be 100 Mbit/s, even to a
# peer on this machine: that peer may be a tunnel (ngrok) or a shaping proxy.
# On a fast link the first frames then cost some compression CPU, and the
# meter switches to raw bytes within a window.
INITIAL_GUESS_BPS = 100e6 / 8


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


@dataclass
class CodecCost:
    encode_s_per_byte: float
    decode_s_per_byte: float
    ratio: float

    def seconds_per_byte(self, link_bytes_per_s: float, workers: int,
                         shared_cores: int | None) -> float:
        wire = 1.0 / (self.ratio * link_bytes_per_s)
        if shared_cores:
            cpu = self.encode_s_per_byte + self.decode_s_per_byte + PIPELINE_CPU_S_PER_BYTE
            return max(cpu / shared_cores, wire)
        return max(self.encode_s_per_byte / workers, self.decode_s_per_byte / LOADER_THREADS, wire)


def measure(name: str, sample: np.ndarray, codec: str, narrow: bool,
            rounds: int = 2) -> CodecCost:
    """Encode and decode `sample` with `codec`, timed: the best of `rounds`, since
    the first pays for fresh allocations (and the first codec measured for all)."""
    encode_s = decode_s = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        encoded = tensors.encode(name, sample, codec, byte_shuffle=True, narrow=narrow)
        encoded_at = time.perf_counter()
        tensors.decode(encoded.header, encoded.data)
        decoded_at = time.perf_counter()
        encode_s = min(encode_s, encoded_at - start)
        decode_s = min(decode_s, decoded_at - encoded_at)
    return CodecCost(encode_s_per_byte=encode_s / sample.nbytes,
                     decode_s_per_byte=decode_s / sample.nbytes,
                     ratio=sample.nbytes / max(encoded.data.nbytes, 1))


class FixedCodec:
    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.link = LinkMeter(float("inf"))

    def choose(self, column: str, array: np.ndarray) -> str:
        return self.codec


class AutoCodec:
    def __init__(self, candidates: Sequence[str], workers: int, narrow: bool,
                 local_peer: bool) -> None:
        self.candidates = list(candidates)
        self.workers = workers
        self.shared_cores = (os.cpu_count() or 1) if local_peer else None
        self.narrow = narrow
        self.link = LinkMeter(INITIAL_GUESS_BPS)
        self._costs: dict[str, dict[str, CodecCost]] = {}
        self._uses: dict[str, int] = {}
        self._lock = threading.Lock()

    def _costs_for(self, column: str, array: np.ndarray) -> dict[str, CodecCost]:
        with self._lock:
            uses = self._uses.get(column, 0)
            self._uses[column] = uses + 1
            known = self._costs.get(column)
        if known is not None and uses % PROBE_EVERY:
            return known
        rows = max(1, SAMPLE_BYTES // max(array[:1].nbytes, 1))
        sample = np.ascontiguousarray(array[:rows])
        costs = {codec: measure(column, sample, codec, self.narrow) for codec in self.candidates}
        with self._lock:
            self._costs[column] = costs
        return costs

    def choose(self, column: str, array: np.ndarray) -> str:
        rate = self.link.bytes_per_second
        costs = self._costs_for(column, array)
        seconds = {c: costs[c].seconds_per_byte(rate, self.workers, self.shared_cores)
                   for c in self.candidates}
        best = min(seconds, key=seconds.__getitem__)
        log.debug("column %s: link %.1f MB/s, ns/byte %s", column, rate / 1e6,
                  {c: round(s * 1e9, 2) for c, s in seconds.items()})
        # The model counts codec CPU as if it ran beside the network work; it
        # does not, so compression must win clearly to be worth it.
        return best if seconds[best] < CLEAR_WIN * seconds["none"] else "none"


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
    if requested in ("", "auto"):
        usable = [c for c in NAMES if c in accepted or c == "none"]
        return AutoCodec(usable, workers, narrow, local_peer)
    check_requested(requested)
    if requested not in accepted and requested != "none":
        raise RequestError(
            f"the client cannot decode {requested!r} (it accepts {', '.join(accepted) or 'none'}); "
            "install pyarrow on the client or choose codec='none'"
        )
    return FixedCodec(requested)
