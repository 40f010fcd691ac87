"""The same stream into each framework's ready arrays: `to_torch()` against
`to_jax()` (on the CPU here, a batch is ready when the framework holds it:
torch tensors sharing the batch's memory, jax arrays placed by device_put).
Both systems stream codec "none" and differ only in the last step; they run
when named (`--systems tether-torch,tether-jax`), not in every tensor run."""

from __future__ import annotations

from collections.abc import Iterator

import tether

from .base import Batch
from .tether_stream import TetherSystem


class TetherTorch(TetherSystem):
    default = False

    def __init__(self) -> None:
        super().__init__("none")
        self.name = "tether to_torch"

    def warm_up(self) -> None:
        import torch  # noqa: F401  (2 s the first time: not the stream's)

    def delivered(self, loader: tether.Loader) -> Iterator[Batch]:
        yield from loader.to_torch()  # tensors: len() and nbytes, as the runner counts


class TetherJax(TetherSystem):
    default = False

    def __init__(self) -> None:
        super().__init__("none")
        self.name = "tether to_jax"

    def warm_up(self) -> None:
        import jax

        # int64 stays int64, as in torch: both frameworks then hold the same bytes
        jax.config.update("jax_enable_x64", True)

    def delivered(self, loader: tether.Loader) -> Iterator[Batch]:
        for batch in loader.to_jax():
            for column in batch.values():
                column.block_until_ready()  # placed, not only queued
            yield batch

