"""The systems `tether bench` compares, by name. Adding one is one file and one line."""

from __future__ import annotations

from collections.abc import Callable

from .base import System
from .flight import FlightSystem
from .local import LocalRead
from .raw_grpc import RawGrpc
from .raw_tcp import RawTcp
from .release import TetherRelease
from .tables import DownloadPandas, TetherReadPandas, TetherTable
from .tether_filter import TetherFilter
from .tether_images import TetherImages
from .tether_stream import TetherSystem
from .tether_text import TetherText
from .tether_torch import TetherJax, TetherTorch
from .upload_first import UploadFirst
from .upload_first_parquet import UploadFirstParquet
from .upload_first_tar import UploadFirstTar

REGISTRY: dict[str, Callable[[], System]] = {
    "tether-auto": lambda: TetherSystem("auto"),
    "tether-none": lambda: TetherSystem("none"),
    "tether-lz4": lambda: TetherSystem("lz4"),
    "tether-zstd": lambda: TetherSystem("zstd"),
    "tether-auto-tls": lambda: TetherSystem("auto", tls=True),
    "tether-none-tls": lambda: TetherSystem("none", tls=True),
    "tether-shuffled": lambda: TetherSystem("auto", shuffle=True),
    "tether-parquet": lambda: TetherSystem("auto", parquet=True),
    "tether-parquet-shuffled": lambda: TetherSystem("auto", shuffle=True, parquet=True),
    "flight-none": lambda: FlightSystem("none"),
    "flight-lz4": lambda: FlightSystem("lz4"),
    "flight-zstd": lambda: FlightSystem("zstd"),
    "flight-tls": lambda: FlightSystem("none", tls=True),
    "raw-grpc": RawGrpc,
    # the first release's code (git archive d7997d8), for the loopback targets
    "tether-release": TetherRelease,
    "tether-release-tls": lambda: TetherRelease(tls=True),
    "raw-tcp": RawTcp,
    "upload-first": UploadFirst,
    "local": LocalRead,
    # image folders (bench.data.IMAGES)
    "tether-decode-loader": lambda: TetherImages("loader"),
    "tether-decode-daemon": lambda: TetherImages("daemon"),
    "tether-decode-auto": lambda: TetherImages("auto"),
    "upload-first-tar": UploadFirstTar,
    # token lists (bench.data.TEXT)
    "tether-pack": lambda: TetherText("pack"),
    "tether-padded": lambda: TetherText("padded"),
    # a table to filter (bench.data.FILTERING)
    "tether-filter": lambda: TetherFilter(pushdown=True),
    "tether-filter-parquet": lambda: TetherFilter(pushdown=True, parquet=True),
    "tether-filter-after": lambda: TetherFilter(pushdown=False),
    "upload-first-parquet": UploadFirstParquet,
    # a pandas-made table to clean (bench.data.TABLES)
    "tether-table": TetherTable,
    "download-pandas": DownloadPandas,
    "tether-read": TetherReadPandas,
    # the same stream into the frameworks' ready arrays
    "tether-torch": TetherTorch,
    "tether-jax": TetherJax,
}

NAMES = tuple(REGISTRY)
# What a run compares when no --systems is given: all but those asked for by name.
DEFAULTS = tuple(name for name in NAMES if REGISTRY[name]().default)


def for_family(family: str, names: tuple[str, ...] = DEFAULTS) -> tuple[str, ...]:
    """Those of `names` that move data of `family` (bench.data.family)."""
    return tuple(n for n in names if REGISTRY[n]().family == family)


__all__ = ["DEFAULTS", "NAMES", "REGISTRY", "System", "for_family"]
