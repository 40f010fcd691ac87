"""Hand batches to JAX, placed on device ahead of use.

`jax.device_put` is asynchronous, so keeping `buffer_size` batches in flight
overlaps the host-to-device copy of the next batches with the current step.
On CPU the loader's 64-byte-aligned arrays are adopted without a copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any


class DeviceIterator(Iterator[Any]):
    """Yields batches as `jax.Array`s, `buffer_size` of them already on device.

    Its `state_dict()` describes the position after the batch it yielded
    last, not after the ones still waiting in its buffer: checkpoint this,
    not the loader, when training from `loader.to_jax()`.
    """

    def __init__(self, batches: Iterable[tuple[Any, Any]], sharding: Any = None,
                 buffer_size: int = 2, initial_state: Any = None) -> None:
        import jax

        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        self._jax = jax
        self._sharding = sharding
        self._source = iter(batches)
        self._buffer_size = buffer_size
        self._ahead: deque[tuple[Any, Any]] = deque()
        self._state = initial_state

    def _place(self, batch: Any) -> Any:
        jax = self._jax
        if self._sharding is None:
            return jax.device_put(batch)
        if jax.process_count() > 1:
            return jax.tree_util.tree_map(
                lambda x: jax.make_array_from_process_local_data(self._sharding, x), batch)
        return jax.device_put(batch, self._sharding)

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
        self._fill()  # start the next copy before the caller's step
        return batch

    def state_dict(self) -> Any:
        return self._state


def device_iterator(batches: Iterable[Any], sharding: Any = None,
                    buffer_size: int = 2) -> DeviceIterator:
    """Yield each batch (any pytree of numpy arrays) as `jax.Array`s.

    With `sharding` (e.g. a `NamedSharding` over a mesh) each array is laid
    out accordingly; on several hosts each host passes its own rows and the
    global array is assembled from them.

    >>> for batch in tether.jax.device_iterator(loader, buffer_size=2):  # doctest: +SKIP
    ...     state = train_step(state, batch)
    """
    return DeviceIterator(((b, None) for b in batches), sharding, buffer_size)
