"""What a codec is."""

from __future__ import annotations

from typing import Protocol


class Codec(Protocol):
    name: str

    def available(self) -> bool:
        """Whether this process can use the codec (its library imports)."""

    def compress(self, data: memoryview) -> memoryview | bytes:
        """Compressed bytes of `data`."""

    def decompress(self, data: memoryview, raw_size: int) -> memoryview:
        """A writable, 64-byte-aligned buffer of exactly `raw_size` bytes."""
