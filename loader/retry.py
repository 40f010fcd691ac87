"""Reconnection policy: exponential backoff with jitter, bounded in total time."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .wire.errors import ConnectionFailed

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How the loader reconnects after the connection breaks.

    Waits `initial` seconds, doubling up to `maximum`, each wait jittered by
    +-50% so that many loaders do not reconnect in lockstep; gives up after
    `timeout` seconds without a working connection (0: never retry). The
    first connection of an iteration is given `connect_timeout` instead, so
    that a wrong URL fails in seconds, not minutes.
    """

    timeout: float = 300.0
    connect_timeout: float = 10.0
    initial: float = 0.1
    maximum: float = 5.0

    def call(self, attempt: Callable[[], T], first_error: ConnectionFailed | None = None,
             timeout: float | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
        """`attempt()` until it does not raise ConnectionFailed, or `timeout` is up."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay, tries, error = self.initial, 0, first_error
        while True:
            if error is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectionFailed(
                        f"gave up connecting after {tries} attempts in {timeout:.0f} s: "
                        f"{error}; loader.state_dict() holds the position to resume from"
                    ) from error
                pause = min(delay * random.uniform(0.5, 1.5), left)
                log.warning("connection lost (%s); reconnecting in %.1f s", error, pause)
                sleep(pause)
                delay = min(delay * 2, self.maximum)
            tries += 1
            try:
                return attempt()
            except ConnectionFailed as exc:
                error = exc
