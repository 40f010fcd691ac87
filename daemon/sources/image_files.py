"""Image files read whole, by row, checked against what the scan saw."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Sequence

import numpy as np

from tether.wire.errors import DataCorrupted
from tether.wire.ragged import BINARY, Ragged
from tether.wire.rpc import MAX_SHARD_BYTES

# A file must fit a frame; one larger is refused before it is read.
MAX_FILE_BYTES = MAX_SHARD_BYTES


class ImageFiles:
    """Image files read by row: their sizes and modification times as first
    seen, the checks against them, and the reads."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        stats = [os.stat(f) for f in files]
        self.sizes = np.array([s.st_size for s in stats], dtype=np.int64)
        self.mtimes = np.array([s.st_mtime_ns for s in stats], dtype=np.int64)
        self.stale = False  # set once a file is seen to have changed

    def digest(self, names: Sequence[str]) -> str:
        """Of every file's name, size and mtime: hashed once, not per call."""
        text = "".join(f"{n}\0{s}\0{m}\n" for n, s, m in
                       zip(names, self.sizes.tolist(), self.mtimes.tolist(), strict=True))
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def unchanged(self, rows: np.ndarray) -> bool:
        for row in np.unique(rows).tolist():
            try:
                now = os.stat(self.files[row])
            except OSError:
                self.stale = True
                return False
            if now.st_size != self.sizes[row] or now.st_mtime_ns != self.mtimes[row]:
                self.stale = True
                return False
        return True

    def read(self, rows: np.ndarray) -> Ragged:
        """The files of `rows`, whole, as one Ragged of bytes: each read
        straight into its place in one buffer."""
        lengths = self.sizes[rows]
        if len(lengths) and int(lengths.max()) > MAX_FILE_BYTES:
            row = int(rows[int(np.argmax(lengths))])
            raise DataCorrupted(f"image {self.files[row]} is {int(self.sizes[row]) >> 20} MiB, "
                                f"over the {MAX_FILE_BYTES >> 20} MiB limit of a row; remove it")
        values = np.empty(int(lengths.sum()), dtype=np.uint8)
        view = memoryview(values)
        start = 0
        for row, length in zip(rows.tolist(), lengths.tolist(), strict=True):
            end = start + length
            with _open_regular(self.files[row]) as f:
                done = start
                while done < end:
                    got = f.readinto(view[done:end])
                    if not got:
                        break
                    done += got
                if done != end or f.read(1):
                    self.stale = True
                    raise OSError(f"{self.files[row]} changed size while being read "
                                  f"(was {length} bytes); open the loader again")
            start = end
        return Ragged.from_lengths(values, lengths, BINARY)

    @property
    def mean_bytes(self) -> int:
        return max(1, round(float(self.sizes.mean()))) if len(self.sizes) else 1


def _open_regular(path: str) -> io.FileIO:
    """`path` opened for reading if it is still a plain file: opening a FIFO put
    in an image's place would block forever, so it is opened without blocking
    and refused by its type."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is no longer a plain file; open the loader again")
        os.set_blocking(fd, True)
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
