"""A Loader as a PyTorch dataset: `loader.to_torch_dataset()`, for `DataLoader`
and torchdata's `StatefulDataLoader` with `batch_size=None`.

Each pass over it is one epoch, as a DataLoader's pass over a map-style
dataset is: `for epoch in range(3): for batch in dl:` streams three
differently shuffled epochs, the epoch advancing by itself (no `set_epoch`).
Its `state_dict()` is `Loader.state_dict()` after the batch last handed out,
so `StatefulDataLoader` checkpoints the exact, elastic position and resumes
mid-epoch without replaying a batch; the dataset and its iterator both
satisfy `torch.distributed.checkpoint`'s `Stateful` protocol.

Imported only by `Loader.to_torch_dataset()`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from .state import LoaderState
from .torch import as_tensors
from .wire.errors import RequestError
from .wire.plan import Position

if TYPE_CHECKING:
    from .loader import Loader

WORKERS = (
    "a Tether dataset streams over one gRPC connection and takes no DataLoader workers: "
    "num_workers > 0 would start one stream per worker, each with its own copy of the "
    "prefetch window, and split each epoch's order among them. Decoding already runs in "
    "Tether's own threads (Loader(decode_threads=...)) and shards arrive ahead of the step "
    "(prefetch=): use DataLoader(ds, batch_size=None, num_workers=0); pin_memory=True works")


class HostArray(np.ndarray):
    """A numpy array of dates or times that a DataLoader must leave as it is:
    its default_convert turns every array of numpy's own type into a tensor,
    which fails for these (torch has no dates)."""


class LoaderDataset(IterableDataset):
    """The batches of a `tether.Loader` as dicts of tensors (text and dates as
    numpy arrays), from the position the loader had when made.

    >>> dl = StatefulDataLoader(loader.to_torch_dataset(), batch_size=None)  # doctest: +SKIP
    >>> for epoch in range(3):                                               # doctest: +SKIP
    ...     for batch in dl:
    ...         step(batch["x"], batch["y"])

    It streams from a copy of the loader (the same request and seed): the
    loader itself is left where it is. Make the Loader with `num_epochs=None`
    to let the training loop decide how many epochs come; a pass past the
    loader's last epoch is an error, never an empty epoch.
    """

    def __init__(self, loader: Loader) -> None:
        super().__init__()
        self._loader = loader._clone()
        self._epochs = loader.spec.num_epochs  # None: as many as asked
        # After the batch last handed out (what a checkpoint saves), and where
        # the next pass starts: a pass left unfinished (a peek at one batch) is
        # passed again from its start, as a DataLoader's next iter() would.
        self._state = self._next_pass = loader.state_dict()

    def __iter__(self) -> EpochIterator:
        if get_worker_info() is not None:
            raise RequestError(WORKERS)
        return EpochIterator(self)

    def __len__(self) -> int:
        """Batches this process gets in a full epoch (the loader's `len()`)."""
        return len(self._loader)

    @property
    def categories(self) -> dict[str, list[str]]:
        """Each category column's vocabulary (as `Loader.categories`), of the
        loader's copy this dataset streams from: known once a pass began."""
        return self._loader.categories

    def state_dict(self) -> dict[str, Any]:
        """Where the next batch comes from: `Loader.state_dict()`'s dict (JSON-able)."""
        return copy.deepcopy(self._state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at `state`; checked now, so a state of another stream fails here."""
        self._loader.load_state_dict(state)
        self._state = self._next_pass = copy.deepcopy(state)

    def _epoch(self) -> Iterator[dict[str, Any]]:
        """The rest of the epoch the pass starts in. A state saved after an
        epoch's last batch is that epoch's end: the pass is then the next epoch."""
        self._state = start = self._next_pass
        while True:
            position, handed = LoaderState.from_dict(start).spec.start, False
            for batch in self._one_epoch(start, position.epoch):
                handed = True
                yield batch
            self._state = self._next_pass = self._after(position.epoch)
            if handed or position.row == 0:
                return
            start = self._next_pass

    def _one_epoch(self, start: dict[str, Any], epoch: int) -> Iterator[dict[str, Any]]:
        if self._epochs is not None and epoch >= self._epochs:
            raise RequestError(
                f"the loader's {self._epochs} epoch(s) are all delivered: each pass over the "
                "dataset is one epoch, so make the Loader with num_epochs=None (as many as "
                "the training loop takes) or with as many as it runs")
        loader = self._loader
        loader.spec = replace(loader.spec, num_epochs=epoch + 1)  # this one epoch
        loader.load_state_dict(start)
        for batch in loader:
            self._state = loader.state_dict()
            yield _for_torch(batch)

    def _after(self, epoch: int) -> dict[str, Any]:
        """The state at the start of the epoch after `epoch`, of the version read."""
        ended = LoaderState.from_dict(self._loader.state_dict())
        return LoaderState(replace(ended.spec, start=Position(epoch + 1, 0)),
                           ended.fingerprint).to_dict()


class EpochIterator(Iterator[dict[str, Any]]):
    """One epoch of the dataset; the stream opens on the first `next()`, so
    `iter(ds)` then `load_state_dict(saved)` (what StatefulDataLoader does on
    resume) opens it once, at the saved position."""

    def __init__(self, dataset: LoaderDataset) -> None:
        self._dataset = dataset
        self._batches: Iterator[dict[str, Any]] | None = None

    def __next__(self) -> dict[str, Any]:
        if self._batches is None:
            self._batches = self._dataset._epoch()
        return next(self._batches)

    def state_dict(self) -> dict[str, Any]:
        return self._dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._batches is not None:
            self._batches.close()  # the loader's generator stops its stream
            self._batches = None
        self._dataset.load_state_dict(state)


def _for_torch(batch: dict[str, Any]) -> dict[str, Any]:
    tensors = as_tensors(batch)
    return {name: value.view(HostArray) if isinstance(value, np.ndarray)
            and value.dtype.kind in "Mm" else value for name, value in tensors.items()}

