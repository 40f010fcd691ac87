"""Hand batches to JAX, placed on device ahead of use.

`jax.device_put` is asynchronous, so keeping `buffer_size` batches in flight
overlaps the host-to-device copy of the next batches with the current step.
On CPU the loader's 64-byte-aligned arrays are adopted without a copy.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any


def device_iterator(
    batches: Iterable[Any], sharding: Any = None, buffer_size: int = 2
) -> Iterator[Any]:
    """Yield each batch (any pytree of numpy arrays) as `jax.Array`s.

    With `sharding` (e.g. a `NamedSharding` over a mesh) each array is laid
    out accordingly; on several hosts each host passes its own rows and the
    global array is assembled from them.

    >>> for batch in tether.jax.device_iterator(loader, buffer_size=2):  # doctest: +SKIP
    ...     state = train_step(state, batch)
    """
    import jax

    if buffer_size < 1:
        raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")

    def place(batch: Any) -> Any:
        if sharding is None:
            return jax.device_put(batch)
        if jax.process_count() > 1:
            return jax.tree_util.tree_map(
                lambda x: jax.make_array_from_process_local_data(sharding, x), batch
            )
        return jax.device_put(batch, sharding)

    source = iter(batches)
    ahead = deque(place(b) for b in itertools.islice(source, buffer_size))
    while ahead:
        yield ahead.popleft()
        ahead.extend(place(b) for b in itertools.islice(source, 1))
