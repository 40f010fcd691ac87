"""Which codec each tensor travels with.

`auto` sends raw bytes when the client is on this machine (compression would
only cost CPU) and zstd with byte-shuffle otherwise. The benchmark issue
tunes `auto` from the measured link rate; this module is where it will.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from tether.codecs import NAMES
from tether.errors import RequestError

_REMOTE_PREFERENCE = ("zstd", "lz4", "none")


def peer_is_local(peer: str) -> bool:
    """Whether a gRPC peer string ("ipv4:127.0.0.1:5000", "unix:...") is this machine."""
    kind, _, rest = peer.partition(":")
    if kind == "unix":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_codec(requested: str, accepted: Sequence[str], local_peer: bool) -> str:
    """The codec for a stream; refuses one the client cannot decode."""
    if requested in ("", "auto"):
        if local_peer:
            return "none"
        return next(c for c in _REMOTE_PREFERENCE if c in accepted or c == "none")
    if requested not in NAMES:
        raise RequestError(f"unknown codec {requested!r}; choose auto or one of {', '.join(NAMES)}")
    if requested not in accepted and requested != "none":
        raise RequestError(
            f"the client cannot decode {requested!r} (it accepts {', '.join(accepted) or 'none'}); "
            "install pyarrow on the client or choose codec='none'"
        )
    return requested
