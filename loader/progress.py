"""What an iteration is doing, in figures and (with `progress=True`) a bar.

The training loop either runs a step or waits for the next batch. The time
it waits, over the time since it asked for the first batch, is the share a
faster loader would give back. The decoder splits that wait by what held the
shard up (tether.pipeline.decoder.Waits): the network, the daemon's reading and
encoding (each frame says how long it took), or decoding here.

>>> loader = tether.Loader(url, dataset="train", batch_size=256, progress=True)  # doctest: +SKIP
>>> for batch in loader: ...                                                      # doctest: +SKIP
>>> loader.stats()["waited_share"]                                                # doctest: +SKIP
0.42
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .pipeline.decoder import Waits
from .wire.errors import RequestError


def require_tqdm() -> None:
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        raise RequestError("progress=True draws its bar with tqdm: pip install tqdm") from None


class Progress:
    """Counts an iteration's batches and waits; draws a bar per epoch if asked."""

    def __init__(self, waits: Callable[[], Waits], epoch_rows: Callable[[int], int | None],
                 show: bool) -> None:
        self._waits = waits  # the decoders' totals, read when the figures are asked for
        self._epoch_rows = epoch_rows
        self._show = show
        self._bar: Any = None
        self._bar_epoch: int | None = None
        self.rows = 0
        self.epoch_rows_done = 0
        self.waited = 0.0
        self._started: float | None = None

    def wrap(self, batches: Iterable[dict], epoch: Callable[[], int]) -> Iterator[dict]:
        source = iter(batches)
        try:
            while True:
                asked = time.perf_counter()
                if self._started is None:
                    self._started = asked
                batch = next(source, None)
                self.waited += time.perf_counter() - asked
                if batch is None:
                    return
                self._count(batch, epoch())
                yield batch
        finally:
            self._close_bar()

    def _count(self, batch: dict, epoch: int) -> None:
        rows = len(next(iter(batch.values()))) if batch else 0
        if epoch != self._bar_epoch:
            self._close_bar()
            self._bar_epoch, self.epoch_rows_done = epoch, 0
            if self._show:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self._epoch_rows(epoch), unit="rows",
                                 desc=f"epoch {epoch}", dynamic_ncols=True)
        self.rows += rows
        self.epoch_rows_done += rows
        if self._bar is not None:
            self._bar.update(rows)
            figures = self.figures()
            self._bar.set_postfix_str(
                f"{figures['samples_per_s']:,.0f} samples/s, "
                f"{figures['wire_mb_per_s']:.1f} MB/s, x{figures['compression_ratio']:.1f}, "
                f"waited {figures['waited_share']:.0%}", refresh=False)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def figures(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._started if self._started is not None else 0.0
        waits = self._waits()
        return {
            "rows": self.rows,
            "epoch_rows_done": self.epoch_rows_done,
            "seconds": elapsed,
            "samples_per_s": self.rows / elapsed if elapsed else 0.0,
            "wire_mb_per_s": waits.wire_bytes / 1e6 / elapsed if elapsed else 0.0,
            "compression_ratio": waits.raw_bytes / waits.wire_bytes if waits.wire_bytes else 1.0,
            "waited_share": self.waited / elapsed if elapsed else 0.0,
            "waited_seconds": {"network": waits.network, "daemon": waits.daemon,
                               "loader": waits.loader},
        }


def total_waits(waits: Iterable[Waits]) -> Waits:
    total = Waits()
    for part in waits:
        total.network += part.network
        total.daemon += part.daemon
        total.loader += part.loader
        total.wire_bytes += part.wire_bytes
        total.raw_bytes += part.raw_bytes
    return total
