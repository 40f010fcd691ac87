"""Byte-shuffle pre-filter (as in Blosc): byte 0 of every element, then byte 1, ...

Floats and small integers compress far better shuffled, because the high
bytes of neighbouring elements are nearly equal.

Each byte plane is moved with one strided numpy copy. The obvious
`reshape(-1, k).T` copy runs at about 2 GB/s for shuffle but 0.4 GB/s for
unshuffle on 4-byte elements here (numpy walks the transposed side with a
k-byte stride in its inner loop); plane by plane both directions run at
about 2.1 GB/s.
"""

from __future__ import annotations

import numpy as np

from ..aligned import aligned_empty


def shuffle(data: memoryview, itemsize: int) -> np.ndarray:
    """Shuffled copy of `data`, whose length is a multiple of `itemsize`."""
    source = np.frombuffer(data, dtype=np.uint8)
    out = aligned_empty(source.size, np.uint8)
    planes = out.reshape(itemsize, -1)
    for byte in range(itemsize):
        planes[byte] = source[byte::itemsize]
    return out


def unshuffle(data: memoryview, itemsize: int) -> np.ndarray:
    """Inverse of `shuffle`, into a new aligned buffer."""
    planes = np.frombuffer(data, dtype=np.uint8).reshape(itemsize, -1)
    out = aligned_empty(planes.size, np.uint8)
    for byte in range(itemsize):
        out[byte::itemsize] = planes[byte]
    return out
