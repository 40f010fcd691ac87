"""What a benchmarked system is: a server on this machine, a client that yields batches."""

from __future__ import annotations

import subprocess
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
    # Which data it moves (bench.data.family): the tensor systems cannot read an
    # image folder, and the image systems have nothing to decode in .npy columns.
    family: str = "tensors"
    unit: str = ""  # what `units` counts, when rows are not what training consumes
    # In a run without --systems: a system that answers a narrower question (which
    # framework's hand-off) runs only when named.
    default: bool = True
    # The registry name its client process runs it by, when not its own (a release's
    # client is that release's bench, with that release's registry).
    client_name: str = ""

    def units(self, batch: Batch) -> int:
        """The useful units in a batch, e.g. tokens that are not padding (with `unit`)."""
        return 0

    def warm_up(self) -> None:  # noqa: B027 - most systems import nothing more
        """In the client process, before the clock starts: import what the
        system delivers into (JAX is already), so that no run times an import."""

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

    # tether.daemon.spawn is imported where used: the client processes import
    # this module too, and loading the daemon would add to their measured RSS.

    def stop(self) -> None:
        from tether.daemon.spawn import stop_process

        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None

    def _spawn(self, module: str, *args: str) -> str:
        """Start `python -m MODULE ARGS`; return the first line it prints (its address).

        No time limit: a baseline server loads the whole dataset before it listens.
        """
        from tether.daemon.spawn import start_module

        try:
            self.proc, line = start_module(module, *args, timeout=None)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: server did not start: {exc}") from None
        return line


def rebatch(columns: Iterator[Batch], batch_size: int) -> Iterator[Batch]:
    """Cut a stream of column chunks into batches, with Tether's own batcher."""
    from tether.pipeline.batcher import Batcher
    from tether.pipeline.decoder import Shard
    from tether.wire.plan import Position

    def shards() -> Iterator[Shard]:
        for sequence, chunk in enumerate(columns):
            rows = len(next(iter(chunk.values())))
            yield Shard(0, sequence, rows, chunk)

    return iter(Batcher(shards(), batch_size, batch_size, Position(0, 0),
                        release=lambda shard: None))
