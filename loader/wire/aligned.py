"""64-byte-aligned numpy buffers.

`jax.device_put` on CPU adopts an aligned host buffer in place but copies an
unaligned one (measured: about 2 GB/s), so everything the loader hands out
starts on a 64-byte boundary.
"""

from __future__ import annotations

import numpy as np

ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...] | int, dtype: np.dtype | str) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def is_aligned(array: np.ndarray) -> bool:
    return array.ctypes.data % ALIGNMENT == 0
