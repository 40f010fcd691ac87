"""What a caller sends reaches the log short, printable, and not too often.

An unauthenticated caller with long method paths wrote 66 MB of log in 5 s,
and a 60 MB dataset name went into the log whole (issue 9). `clip` bounds
and escapes any text from a caller; `RateLimited` lets a repeated warning
through a few times a minute and then says how many it held back.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable

CLIP_CHARS = 200

# Bidirectional formatting characters: they reorder what a terminal shows.
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unsafe_char(ch: str) -> bool:
    """C0 and C1 controls, DEL, bidi formatting, and other invisible formatting or
    separator characters: what could hide, reorder or fake text on a terminal."""
    code = ord(ch)
    return (code < 0x20 or 0x7f <= code <= 0x9f or ch in _BIDI
            or unicodedata.category(ch) in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def escape(text: str) -> str:
    """`text` with every unsafe character written as a Python escape (\\n, \\x1b, \\u202e)."""
    if not any(unsafe_char(ch) or ch == "\\" for ch in text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if unsafe_char(ch) or ch == "\\"
                   else ch for ch in text)


def clip(text: object, limit: int = CLIP_CHARS) -> str:
    """`text` escaped and cut to about `limit` characters, saying how much was cut."""
    text = str(text)
    shown = escape(text[:limit])
    if len(text) <= limit and len(shown) <= limit:
        return shown
    return shown[:limit] + f"... ({len(text):,} characters in all)"  # escapes lengthen it


class RateLimited:
    """A logger that lets each kind of message through at most `burst` times
    every `period` seconds; the next one after a quiet spell says how many
    were held back.

    `key` names the kind (use the format string, never caller text, so the
    table of kinds stays small).

    >>> refusals = RateLimited(logging.getLogger("x"))
    >>> refusals.warning("refused %s", "refused %s", "Describe")
    """

    MAX_KINDS = 1024

    def __init__(self, logger: logging.Logger, burst: int = 10, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.burst, self.period, self.clock = logger, burst, period, clock
        self._lock = threading.Lock()
        self._kinds: dict[str, list] = {}  # key -> [window start, count, held back]

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self.clock()
        with self._lock:
            state = self._kinds.get(key)
            if state is None:
                if len(self._kinds) >= self.MAX_KINDS:
                    self._kinds.clear()
                state = self._kinds[key] = [now, 0, 0]
            held = 0
            if now - state[0] >= self.period:
                held, state[:] = state[2], [now, 0, 0]
            state[1] += 1
            if state[1] > self.burst:
                state[2] += 1
                return
        if held:
            self.logger.log(level, "(%d more like the next were not logged in the last %.0f s)",
                            held, self.period)
        self.logger.log(level, msg, *args)

    def warning(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def info(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.INFO, key, msg, *args)
