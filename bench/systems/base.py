"""What a benchmarked system is: a server on this machine, a client that yields batches."""

from __future__ import annotations

import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

Batch = dict[str, np.ndarray]
Address = tuple[str, int]


class System(ABC):
    """One data path.

    `start` runs the server side (if any) and returns its address; the runner
    may put a shaped link in front of it. `batches` is the client side: it
    runs in a separate process (tether.bench.client), on a fresh instance,
    so it may depend only on the dataset folder and the address.
    """

    name: str
    proc: subprocess.Popen | None = None

    def start(self, dataset: Path, workdir: Path) -> Address | None:
        return None

    @abstractmethod
    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        """Every row of the dataset once, in batches of numpy arrays."""

    def wire_bytes(self, dataset: Path) -> int | None:
        """Bytes a run moves over the link; None when there is no link."""
        return None

    def client_env(self) -> dict[str, str]:
        """Environment the client process needs besides the address."""
        return {}

    @property
    def server_pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def _spawn(self, *args: str) -> str:
        """Start `python -m ARGS`; return the first line it prints (its address)."""
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", *args], stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"{self.name}: server did not start ({' '.join(args)})")
        return line


def rebatch(columns: Iterator[Batch], batch_size: int) -> Iterator[Batch]:
    """Cut a stream of column chunks into batches, with Tether's own batcher."""
    from tether.batcher import Batcher
    from tether.decoder import Shard

    def shards() -> Iterator[Shard]:
        for sequence, chunk in enumerate(columns):
            rows = len(next(iter(chunk.values())))
            yield Shard(0, sequence, sequence, rows, chunk)

    return iter(Batcher(shards(), batch_size, drop_last=False, release=lambda shard: None))
