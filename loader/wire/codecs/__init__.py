"""Compression codecs, by wire name. Adding one is one file and one line below.

A codec turns bytes into fewer bytes on the daemon and back on the loader.
`none` needs nothing; `lz4` and `zstd` use pyarrow's codecs, so a loader
without pyarrow says so in its request and is sent `none` only.
"""

from __future__ import annotations

from .arrow import ArrowCodec
from .base import Codec
from .none import NoneCodec

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


def check_requested(name: str) -> None:
    """Refuse a codec a stream request may not ask for (`auto` or a known one)."""
    if name != "auto" and name not in NAMES:
        from ..errors import RequestError

        raise RequestError(f"unknown codec {name!r}; choose auto or one of {', '.join(NAMES)}")


def available_codecs() -> list[str]:
    """The codecs this process can decode (pyarrow's need pyarrow installed)."""
    return [name for name, codec in _REGISTRY.items() if codec.available()]


__all__ = ["Codec", "NAMES", "available_codecs", "check_requested", "get_codec"]
