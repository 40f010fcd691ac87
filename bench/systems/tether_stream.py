"""Tether itself: the real daemon in a subprocess and the real loader.

Plain gRPC (`--insecure`) by default, like the Flight and raw baselines it
is compared with; `tls=True` measures the default, pinned TLS. `shuffle`
measures the global shuffle's cost against the same system unshuffled;
`parquet` serves a Parquet copy of the dataset (row groups of about 4 MiB)
instead of its .npy columns, to measure the windowed shuffle over row groups.

Subclasses for other kinds of data (tether_images, tether_text) change only
what is served (`served`) and how the loader asks for it (`loader_options`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tether

from .base import Address, Batch, System

_URL_VARIABLE = "TETHER_BENCH_URL"  # hands the token and fingerprint to the client process
SHUFFLED = " shuffled"  # a system's name with shuffle on is its unshuffled twin's plus this


class TetherSystem(System):
    def __init__(self, codec: str, tls: bool = False, shuffle: bool = False,
                 parquet: bool = False) -> None:
        self.codec = codec
        self.tls = tls
        self.shuffle = shuffle
        self.parquet = parquet
        self.name = f"tether {codec}" + (" +TLS" if tls else "") + \
            (" parquet" if parquet else "") + (SHUFFLED if shuffle else "")

    def served(self, dataset: Path, workdir: Path) -> Path:
        """The path the daemon serves for this run's `dataset`."""
        if self.parquet:  # written before the clock starts, like the .npy columns
            from ..data import write_parquet

            return write_parquet(dataset, workdir / "parquet" / f"{dataset.name}.parquet")
        return dataset

    def dataset_name(self, dataset: Path) -> str:
        """The name the daemon serves `served(dataset)` under."""
        return dataset.name

    def loader_options(self) -> dict[str, Any]:
        """Loader arguments besides the stream's codec, shuffle and batch size."""
        return {}

    def start(self, dataset: Path, workdir: Path) -> Address:
        from tether.daemon.spawn import DaemonProcess  # not in the client process (see base)

        daemon = DaemonProcess([self.served(dataset, workdir)], workdir / "tether-state",
                               "--log-level", "error",
                               *(() if self.tls else ("--insecure",)), capture_stderr=False)
        self.proc = daemon.proc
        self.endpoint = tether.parse_url(daemon.url)
        return (self.endpoint.host, self.endpoint.port)

    def client_env(self) -> dict[str, str]:
        return {_URL_VARIABLE: self.endpoint.url()}

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        loader = tether.Loader(endpoint_of(address), dataset=self.dataset_name(dataset),
                               batch_size=batch_size, codec=self.codec, shuffle=self.shuffle,
                               seed=0,
                               decode_threads=int(os.environ.get("TETHER_DECODE_THREADS", 0)),
                               **self.loader_options())
        yield from self.delivered(loader)

    def delivered(self, loader: tether.Loader) -> Iterator[Batch]:
        """The loader's batches as the training loop takes them (numpy here)."""
        return iter(loader)

    def wire_bytes(self, dataset: Path) -> int:
        """Everything this run's daemon (started for it) sent."""
        with tether.connect(self.endpoint) as client:
            return client.status().bytes_sent


def endpoint_of(address: Address) -> tether.Endpoint:
    """The daemon's URL (token, fingerprint) at `address` (a shaped link's proxy)."""
    return tether.parse_url(os.environ[_URL_VARIABLE]).with_address(*address)
