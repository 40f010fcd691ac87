"""One memory budget for every stream's window together.

A stream reserves a shard's bytes before it reads and encodes it, and gives
them back when the client acknowledges it (or the stream ends). When the
budget is spent, streams wait for each other's acks instead of reading on:
one client that opens streams with huge credits and never reads can no
longer take the daemon's memory. A stream with nothing in flight may always
take one shard, so every stream makes progress.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

# The default budget: this share of the machine's memory, at most DEFAULT_CAP.
# A loader's window is prefetch x shard_bytes (8 x 4 MiB by default), so the
# cap leaves room for dozens of ordinary streams.
DEFAULT_SHARE = 0.25
DEFAULT_CAP = 2 << 30


def default_limit() -> int:
    """TETHER_MAX_MEMORY (e.g. "1GB") when set, else a share of the machine's memory."""
    configured = os.environ.get("TETHER_MAX_MEMORY")
    if configured:
        from tether.wire.sizes import parse_size

        return parse_size(configured)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return DEFAULT_CAP
    return min(DEFAULT_CAP, int(memory * DEFAULT_SHARE))


class MemoryBudget:
    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or default_limit()
        self.used = 0
        self._lock = threading.Lock()
        self._waiters: set[Callable[[], None]] = set()

    def take(self, nbytes: int, holding: int) -> bool:
        """Reserve `nbytes` if they fit, or if the caller holds nothing yet."""
        with self._lock:
            if self.used + nbytes > self.limit and holding > 0:
                return False
            self.used += nbytes
            return True

    def give(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes
            waiters = list(self._waiters)
        for wake in waiters:  # streams waiting for room look again
            wake()

    def subscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._waiters.add(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._waiters.discard(wake)
