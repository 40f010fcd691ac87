"""Lossless integer narrowing: int64 token ids below 65536 travel as uint16.

The daemon picks the narrowest integer type that holds the tensor's range;
the loader widens back to the declared dtype, so callers never see it.
"""

from __future__ import annotations

import numpy as np

_CANDIDATES = {
    True: (np.uint8, np.uint16, np.uint32),  # non-negative values
    False: (np.int8, np.int16, np.int32),
}


def narrowest(array: np.ndarray) -> np.dtype:
    """The smallest integer dtype that holds every value of `array` exactly."""
    dtype = array.dtype
    if dtype.kind not in "iu" or dtype.itemsize == 1 or array.size == 0:
        return dtype
    low, high = int(array.min()), int(array.max())
    for candidate in _CANDIDATES[low >= 0]:
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            narrow = np.dtype(candidate).newbyteorder("<")
            return narrow if narrow.itemsize < dtype.itemsize else dtype
    return dtype
