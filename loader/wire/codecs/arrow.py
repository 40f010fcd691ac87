"""lz4 (frame format) and zstd through pyarrow's bundled codecs.

pyarrow releases the GIL while it (de)compresses and allocates its output
64-byte-aligned and writable, so the decompressed buffer is handed out as is.
"""

from __future__ import annotations

import functools
import importlib.util


class ArrowCodec:
    def __init__(self, name: str, level: int | None = None) -> None:
        self.name = name
        self.level = level

    def available(self) -> bool:
        return importlib.util.find_spec("pyarrow") is not None

    @functools.cached_property
    def _codec(self):
        import pyarrow as pa

        return pa.Codec(self.name, compression_level=self.level)

    def compress(self, data: memoryview) -> memoryview:
        return memoryview(self._codec.compress(data, asbytes=False))

    def decompress(self, data: memoryview, raw_size: int) -> memoryview:
        return memoryview(self._codec.decompress(data, decompressed_size=raw_size, asbytes=False))
