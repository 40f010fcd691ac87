"""Compression codecs, by wire name. Adding one is one file and one line below.

A codec turns bytes into fewer bytes on the daemon and back on the loader.
`none` needs nothing; `lz4` and `zstd` use pyarrow's codecs, so a loader
without pyarrow says so in its request and is sent `none` only. The daemon
may compress at another level than the registered one (`compressor`); the
level is not on the wire, decompression needs none.
"""

from __future__ import annotations

import functools

from .arrow import ArrowCodec
from .base import Codec
from .none import NoneCodec
from .setting import Compression

_REGISTRY: dict[str, Codec] = {
    "none": NoneCodec(),
    "lz4": ArrowCodec("lz4"),
    "zstd": ArrowCodec("zstd", level=1),
}

NAMES = tuple(_REGISTRY)


def get_codec(name: str) -> Codec:
    from ..errors import RequestError

    try:
        return _REGISTRY[name]
    except KeyError:
        raise RequestError(f"unknown codec {name!r}; known: {', '.join(NAMES)}") from None


@functools.lru_cache(maxsize=64)
def compressor(name: str, level: int | None) -> Codec:
    """The codec `name` compressing at `level` (None: its registered level)."""
    codec = get_codec(name)
    return codec if level is None else ArrowCodec(name, level=level)


def requested_setting(name: str) -> Compression | None:
    """The fixed setting a stream request names (None for `auto`), or RequestError."""
    from ..errors import RequestError

    if name in ("", "auto"):
        return None
    codec = name.split(":")[0]
    if codec not in NAMES:
        raise RequestError(f"unknown codec {codec!r}; choose auto or one of "
                           f"{', '.join(NAMES)} (zstd with a level: zstd:1 .. zstd:22)")
    try:
        return Compression.parse(name)
    except ValueError as exc:
        raise RequestError(f"codec {exc}; e.g. zstd, zstd:9 or zstd:9:noshuffle") from None


def check_requested(name: str) -> None:
    """Refuse a codec a stream request may not ask for (`auto` or a known setting)."""
    requested_setting(name)


def available_codecs() -> list[str]:
    """The codecs this process can decode (pyarrow's need pyarrow installed)."""
    return [name for name, codec in _REGISTRY.items() if codec.available()]


__all__ = ["NAMES", "Codec", "Compression", "available_codecs", "check_requested", "compressor",
           "get_codec", "requested_setting"]
