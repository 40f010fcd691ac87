"""A compression setting: codec, level and byte-shuffle, and its text form.

Only the codec and byte-shuffle travel in a tensor's header: a zstd frame
decompresses the same whatever level made it, so the level stays on the
daemon. The text form names a fixed setting in a stream request:

    none   lz4   zstd          (zstd at level 1, byte-shuffled, as before levels)
    zstd:9                     (level 9)
    zstd:9:noshuffle   lz4:noshuffle
"""

from __future__ import annotations

from dataclasses import dataclass

NO_SHUFFLE = "noshuffle"
LEVELS = {"zstd": range(1, 23)}  # the codecs that take a level, and the levels they take


@dataclass(frozen=True, order=True)
class Compression:
    codec: str
    level: int | None = None  # None: the codec's default
    byte_shuffle: bool = True  # where the element is wider than a byte and codec is not none

    def __str__(self) -> str:
        text = self.codec if self.level is None else f"{self.codec}:{self.level}"
        return text if self.byte_shuffle or self.codec == "none" else f"{text}:{NO_SHUFFLE}"

    @classmethod
    def parse(cls, text: str) -> Compression:
        """`zstd:9:noshuffle` and the like; ValueError says what is wrong."""
        codec, *rest = text.split(":")
        shuffle = rest[-1:] != [NO_SHUFFLE]
        if not shuffle:
            rest = rest[:-1]
        if not rest:
            return cls(codec, None, shuffle)
        if len(rest) > 1 or not rest[0].isdigit():
            raise ValueError(f"{text!r} is not CODEC[:LEVEL][:{NO_SHUFFLE}]")
        level = int(rest[0])
        if level not in LEVELS.get(codec, ()):
            known = LEVELS.get(codec)
            raise ValueError(f"{codec!r} takes no level {level}" + (
                f" (levels {known.start}..{known.stop - 1})" if known else ""))
        return cls(codec, level, shuffle)
