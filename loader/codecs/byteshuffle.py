"""Byte-shuffle pre-filter (as in Blosc): byte 0 of every element, then byte 1, ...

Floats and small integers compress far better shuffled, because the high
bytes of neighbouring elements are nearly equal.
"""

from __future__ import annotations

import numpy as np

from ..aligned import aligned_empty


def shuffle(data: memoryview, itemsize: int) -> np.ndarray:
    """Shuffled copy of `data`, whose length is a multiple of `itemsize`."""
    elements = np.frombuffer(data, dtype=np.uint8).reshape(-1, itemsize)
    out = aligned_empty(elements.size, np.uint8)
    out.reshape(itemsize, -1)[:] = elements.T
    return out


def unshuffle(data: memoryview, itemsize: int) -> np.ndarray:
    """Inverse of `shuffle`, into a new aligned buffer."""
    planes = np.frombuffer(data, dtype=np.uint8).reshape(itemsize, -1)
    out = aligned_empty(planes.size, np.uint8)
    out.reshape(-1, itemsize)[:] = planes.T
    return out
