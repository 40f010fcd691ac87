"""Tether: stream a dataset from the machine where it lives into a JAX loop.

The remote (GPU) side imports this package; it needs only grpcio, protobuf
and numpy. `tether.daemon` is the local side (`pip install tether[daemon]`).
Both import the wire code from `tether.wire`. The names below load on first
use, so `import tether` (and the daemon, which never needs the loader) stays
cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .wire import VERSION as __version__  # noqa: F401 (tether.__version__)

_EXPORTS = {
    "Client": "client", "connect": "client",
    "Loader": "loader",
    "RetryPolicy": "retry",
    "Endpoint": "wire.url", "parse_url": "wire.url",
    "transform": "wire.transforms",
    "sync": "results", "restore": "results",
    # The owner's side (`pip install tether[daemon]`), loaded only when asked for:
    # the loader itself never imports the daemon (tests/unit/test_architecture.py).
    "serve": "daemon.api",
    **{name: "wire.errors" for name in (
        "AuthError", "Busy", "ColumnError", "ConnectionFailed", "DataCorrupted", "DatasetError",
        "DatasetNotFound", "ProtocolError", "RequestError", "SecurityError", "TetherError")},
}

__all__ = [
    "AuthError",
    "Busy",
    "Client",
    "ColumnError",
    "ConnectionFailed",
    "DataCorrupted",
    "DatasetError",
    "DatasetNotFound",
    "Endpoint",
    "Loader",
    "ProtocolError",
    "RequestError",
    "RetryPolicy",
    "SecurityError",
    "TetherError",
    "connect",
    "parse_url",
    "restore",
    "serve",
    "sync",
    "transform",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tether' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from .client import Client, connect
    from .loader import Loader
    from .results import restore, sync
    from .retry import RetryPolicy
    from .wire.errors import (
        AuthError,
        Busy,
        ColumnError,
        ConnectionFailed,
        DataCorrupted,
        DatasetError,
        DatasetNotFound,
        ProtocolError,
        RequestError,
        SecurityError,
        TetherError,
    )
    from .wire.transforms import transform
    from .wire.url import Endpoint, parse_url
