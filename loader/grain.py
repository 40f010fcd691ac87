"""A Loader as a Grain source: `loader.to_grain()`, a `grain.IterDataset` of batches.

Grain's pipelines (`.map`, `.filter`, `.batch`, ...) wrap a parent iterator
and delegate `get_state()` / `set_state()` to it; this module is that parent.
Its state is `Loader.state_dict()`, the position after the batch last
yielded, so Grain's checkpointing (`grain.checkpoint.CheckpointSave`, or any
JSON item in an Orbax checkpoint) saves Tether's exact, elastic position.

Imported only by `Loader.to_grain()`: `import tether` never imports Grain.
"""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

try:
    import grain
except ImportError as exc:  # the loader's own stack has no Grain
    raise ImportError("loader.to_grain() needs Grain: pip install grain") from exc

from .pipeline.batcher import Batch
from .wire.errors import RequestError

if TYPE_CHECKING:
    from .loader import Loader

MP_PREFETCH = (
    "a Tether dataset streams over this process's gRPC connection and cannot be pickled into "
    "mp_prefetch's worker processes (each would stream its own copy of the rows); the Loader "
    "already decodes in threads (decode_threads=) and holds shards ahead (prefetch=): drop "
    ".mp_prefetch(), or use grain.experimental.ThreadPrefetchIterDataset(ds, "
    "prefetch_buffer_size=N) to run the .map stages ahead of the training step")


class LoaderIterDataset(grain.IterDataset):
    """The batches of a `tether.Loader`, each a dict of numpy arrays, from the
    position the loader had when `to_grain()` was called.

    >>> ds = loader.to_grain().map(augment).filter(keep)   # doctest: +SKIP
    >>> batches = iter(ds)                                  # doctest: +SKIP
    >>> state = batches.get_state()  # JSON-able: Loader.state_dict() # doctest: +SKIP

    Like any IterDataset, each `iter()` starts at that same position. The
    iterators share the loader's one stream: starting a new one ends the
    stream of the one before it.
    """

    def __init__(self, loader: Loader) -> None:
        super().__init__()
        self._loader = loader
        self._start = loader.state_dict()

    def __iter__(self) -> LoaderDatasetIterator:
        return LoaderDatasetIterator(self._loader, self._start)

    def __len__(self) -> int:
        """The loader's `len()`: batches this process gets per epoch."""
        return len(self._loader)

    def __reduce__(self) -> Any:  # what mp_prefetch does first, in the parent process
        raise RequestError(MP_PREFETCH)

    def __str__(self) -> str:
        return f"LoaderIterDataset(dataset={self._loader.spec.dataset!r})"


class LoaderDatasetIterator(grain.DatasetIterator):
    """Iterates the loader; its state is `Loader.state_dict()` after the batch last yielded.

    The stream opens on the first `next()`, so `iter(ds)` then `set_state(saved)`
    (what `grain.checkpoint.CheckpointRestore` does) opens it once, at the
    saved position.
    """

    def __init__(self, loader: Loader, start: dict[str, Any]) -> None:
        super().__init__()
        self._loader = loader
        self._state = start
        self._batches: Generator[Batch, None, None] | None = None

    def __next__(self) -> Batch:
        self._assert_not_closed()
        if self._batches is None:
            self._loader.load_state_dict(self._state)
            self._batches = iter(self._loader)
        batch = next(self._batches)
        self._state = self._loader.state_dict()
        return batch

    def get_state(self) -> dict[str, Any]:
        return copy.deepcopy(self._state)

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume at `state` (from `get_state()`, or `Loader.state_dict()`); checked now,
        so a state of another stream fails here rather than at the next batch."""
        self._loader.load_state_dict(state)
        self._end_stream()
        self._state = copy.deepcopy(state)

    def close(self) -> None:
        self._end_stream()
        super().close()

    def _end_stream(self) -> None:
        batches, self._batches = self._batches, None
        if batches is not None:
            batches.close()  # the loader's generator stops its stream

    def __str__(self) -> str:
        return f"LoaderDatasetIterator(dataset={self._loader.spec.dataset!r})"
