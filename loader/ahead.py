"""Batches placed ahead of use: the hand-offs' shared part (tether.jax, tether.torch).

A framework's copy to its device is asynchronous, so keeping `buffer_size`
placed batches in flight overlaps the copy of the next ones with the current
step. The state handed out is the loader's position after the batch yielded
last, not after those still in the buffer: a checkpoint of the iterator
resumes at the very next batch the training loop has not seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class PlacedAhead(Iterator[Any]):
    """Yields `_place(batch)` for each (batch, state), `buffer_size` placed ahead."""

    made_by = "the loader's to_* methods"  # named in len()'s error

    def __init__(self, batches: Iterable[tuple[Any, Any]], buffer_size: int,
                 initial_state: Any = None, length: Callable[[], int] | None = None) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        self._source = iter(batches)
        self._buffer_size = buffer_size
        self._ahead: deque[tuple[Any, Any]] = deque()
        self._state = initial_state
        self._length = length  # batches an epoch, asked when len() is

    def _place(self, batch: Any) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        """The loader's `len()`: batches this process gets per epoch."""
        if self._length is None:
            raise TypeError(f"this {type(self).__name__} does not know how many batches come; "
                            f"len() works on {self.made_by}")
        return self._length()

    def _fill(self) -> None:
        while len(self._ahead) < self._buffer_size:
            item = next(self._source, None)
            if item is None:
                return
            batch, state = item
            self._ahead.append((self._place(batch), state))

    def __next__(self) -> Any:
        self._fill()
        if not self._ahead:
            raise StopIteration
        batch, self._state = self._ahead.popleft()
        self._fill()  # start the next copies before the caller's step
        return batch

    def state_dict(self) -> Any:
        return self._state
