"""Tether itself: the real daemon in a subprocess and the real loader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import tether

from .base import Address, Batch, System


class TetherSystem(System):
    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.name = f"tether {codec}"

    def start(self, dataset: Path, workdir: Path) -> Address:
        url = self._spawn("tether.daemon", str(dataset), "--port", "0", "--state-dir",
                          str(workdir / "tether-state"), "--log-level", "warning")
        self.endpoint = tether.parse_url(url)
        return (self.endpoint.host, self.endpoint.port)

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        host, port = address
        loader = tether.Loader(f"tether://{host}:{port}/", dataset=dataset.name,
                               batch_size=batch_size, codec=self.codec,
                               decode_threads=int(os.environ.get("TETHER_DECODE_THREADS", 0)))
        yield from loader

    def wire_bytes(self, dataset: Path) -> int:
        """Everything this run's daemon (started for it) sent."""
        with tether.connect(self.endpoint) as client:
            return client.status().bytes_sent
