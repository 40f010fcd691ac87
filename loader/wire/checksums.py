"""Per-tensor checksums, negotiated like codecs.

`crc32c` (the `crc32c` package, hardware-accelerated: about 17 GB/s here)
is used when both sides have it; zlib's `crc32` (about 2 GB/s, always
present) otherwise. At loopback speeds zlib's CRC alone would cost a core
per 2 GB/s on each side, hence the faster one where it can be had.
"""

from __future__ import annotations

import hashlib
import importlib.util
import zlib
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from .errors import ProtocolError

Checksum = Callable[[memoryview], int]


def _crc32c(data: memoryview) -> int:
    import crc32c

    return crc32c.crc32c(data)


def _unchecked(data: memoryview) -> int:
    return 0


# TLS authenticates every byte it carries (an AEAD cipher): over TLS the
# per-tensor sums only repeat that check, at about 0.06 CPU s/GB on each side.
UNCHECKED = "none"

_REGISTRY: dict[str, tuple[Checksum, Callable[[], bool]]] = {
    "crc32c": (_crc32c, lambda: importlib.util.find_spec("crc32c") is not None),
    "crc32": (zlib.crc32, lambda: True),
    UNCHECKED: (_unchecked, lambda: False),  # offered over TLS only (offered_checksums)
}


def available_checksums() -> list[str]:
    """The algorithms this process can compute, best first."""
    return [name for name, (_, available) in _REGISTRY.items() if available()]


def get_checksum(name: str) -> Checksum:
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise ProtocolError(f"unknown checksum algorithm {name!r}") from None


def offered_checksums(tls: bool) -> list[str]:
    """What a loader offers the daemon: over TLS, no sums first; else the algorithms."""
    return ([UNCHECKED] if tls else []) + available_checksums()


def choose_checksum(accepted: Sequence[str], tls: bool = False) -> str:
    """The best algorithm both this process and the peer can compute; none at all
    where the peer offers that and the call came over TLS."""
    if tls and UNCHECKED in accepted:
        return UNCHECKED
    return next((n for n in available_checksums() if n in accepted), "crc32")


def sha256_of(stream: BinaryIO, digest: Any = None) -> str:
    """The hex SHA-256 of what `stream` holds from where it is, read 1 MiB at a
    time (memory flat whatever the size); `digest`, a hashlib object, seeds it.
    What names a whole file across the wire: uploads, downloads, snapshots."""
    digest = digest or hashlib.sha256()
    while block := stream.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()
