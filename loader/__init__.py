"""Tether: stream a dataset from the machine where it lives into a JAX loop.

The remote (GPU) side imports this package; it needs only grpcio, protobuf
and numpy. `tether.daemon` is the local side (`pip install tether[daemon]`).
"""

from .client import Client, connect
from .errors import (
    AuthError,
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
from .loader import Loader
from .retry import RetryPolicy
from .url import Endpoint, parse_url

__version__ = "0.1.0"

__all__ = [
    "AuthError",
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
]
