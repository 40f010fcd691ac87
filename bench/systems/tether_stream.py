"""Tether itself: the real daemon in a subprocess and the real loader.

Plain gRPC (`--insecure`) by default, like the Flight and raw baselines it
is compared with; `tls=True` measures the default, pinned TLS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import tether

from .base import Address, Batch, System

_URL_VARIABLE = "TETHER_BENCH_URL"  # hands the token and fingerprint to the client process


class TetherSystem(System):
    def __init__(self, codec: str, tls: bool = False) -> None:
        self.codec = codec
        self.tls = tls
        self.name = f"tether {codec}" + (" +TLS" if tls else "")

    def start(self, dataset: Path, workdir: Path) -> Address:
        from tether.daemon.spawn import DaemonProcess  # not in the client process (see base)

        daemon = DaemonProcess([dataset], workdir / "tether-state", "--log-level", "error",
                               *(() if self.tls else ("--insecure",)), capture_stderr=False)
        self.proc = daemon.proc
        self.endpoint = tether.parse_url(daemon.url)
        return (self.endpoint.host, self.endpoint.port)

    def client_env(self) -> dict[str, str]:
        return {_URL_VARIABLE: self.endpoint.url()}

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        endpoint = tether.parse_url(os.environ[_URL_VARIABLE]).with_address(*address)
        loader = tether.Loader(endpoint, dataset=dataset.name, batch_size=batch_size,
                               codec=self.codec,
                               decode_threads=int(os.environ.get("TETHER_DECODE_THREADS", 0)))
        yield from loader

    def wire_bytes(self, dataset: Path) -> int:
        """Everything this run's daemon (started for it) sent."""
        with tether.connect(self.endpoint) as client:
            return client.status().bytes_sent
