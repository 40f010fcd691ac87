"""The systems `tether bench` compares, by name. Adding one is one file and one line."""

from __future__ import annotations

from collections.abc import Callable

from .base import System
from .flight import FlightSystem
from .local import LocalRead
from .raw_grpc import RawGrpc
from .raw_tcp import RawTcp
from .tether_stream import TetherSystem
from .upload_first import UploadFirst

REGISTRY: dict[str, Callable[[], System]] = {
    "tether-auto": lambda: TetherSystem("auto"),
    "tether-none": lambda: TetherSystem("none"),
    "tether-lz4": lambda: TetherSystem("lz4"),
    "tether-zstd": lambda: TetherSystem("zstd"),
    "tether-auto-tls": lambda: TetherSystem("auto", tls=True),
    "tether-shuffled": lambda: TetherSystem("auto", shuffle=True),
    "tether-parquet": lambda: TetherSystem("auto", parquet=True),
    "tether-parquet-shuffled": lambda: TetherSystem("auto", shuffle=True, parquet=True),
    "flight-none": lambda: FlightSystem("none"),
    "flight-lz4": lambda: FlightSystem("lz4"),
    "flight-zstd": lambda: FlightSystem("zstd"),
    "raw-grpc": RawGrpc,
    "raw-tcp": RawTcp,
    "upload-first": UploadFirst,
    "local": LocalRead,
}

NAMES = tuple(REGISTRY)

__all__ = ["NAMES", "REGISTRY", "System"]
