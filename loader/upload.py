"""What an upload reads and shows: its bytes (open_source) and a progress bar
(tether.transfers sends them)."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20
PROGRESS_FROM_BYTES = 16 << 20  # smaller uploads finish before a bar helps


class Progress:
    """A one-line progress bar on stderr: bytes, percent, rate."""

    def __init__(self, name: str, total: int, enabled: bool) -> None:
        self.name, self.total, self.enabled = name, total, enabled
        self.done, self.started, self._shown = 0, time.monotonic(), 0.0

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if self.enabled and (now - self._shown > 0.2 or self.done == self.total):
            self._shown = now
            share = self.done / max(self.total, 1)
            rate = self.done / max(now - self.started, 1e-9) / 1e6
            bar = "#" * int(30 * share)
            print(f"\rupload {self.name} [{bar:<30}] {100 * share:5.1f}% "
                  f"{self.done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB {rate:,.1f} MB/s",
                  end="\n" if self.done == self.total else "", file=sys.stderr, flush=True)


def open_source(data: bytes | bytearray | memoryview | str | os.PathLike
                ) -> tuple[BinaryIO, int]:
    """The bytes to send and their size. A `str` is always a path: text goes as bytes.

    Opened before the call starts, so a missing file is a FileNotFoundError
    here and not "Exception iterating requests!" from inside gRPC."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            shown = str(path) if len(str(path)) <= 80 else str(path)[:80] + "..."
            raise FileNotFoundError(f"upload: no file at {shown!r}; a str is a path: to "
                                    "send text, pass bytes (text.encode())")
        stream = open(path, "rb")  # noqa: SIM115 - closed by chunks()
        return stream, os.fstat(stream.fileno()).st_size
    view = memoryview(data).cast("B")
    return io.BytesIO(view), view.nbytes
