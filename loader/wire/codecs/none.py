"""The identity codec: the bytes travel as they are."""

from __future__ import annotations

import numpy as np

from ..aligned import aligned_empty


class NoneCodec:
    name = "none"

    def available(self) -> bool:
        return True

    def compress(self, data: memoryview) -> memoryview:
        return data

    def decompress(self, data: memoryview, raw_size: int) -> memoryview:
        # The one copy on the loader's side: gRPC hands us immutable bytes at
        # an arbitrary address; the aligned copy is what device_put can adopt.
        out = aligned_empty(raw_size, np.uint8)
        out[:] = np.frombuffer(data, dtype=np.uint8, count=raw_size)
        return memoryview(out)
