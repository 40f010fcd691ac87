"""Hand batches to JAX, placed on device ahead of use.

`jax.device_put` is asynchronous, so keeping `buffer_size` batches in flight
overlaps the host-to-device copy of the next batches with the current step.
On CPU the loader's 64-byte-aligned arrays are adopted without a copy.

With a `jax.sharding.Sharding` each column of a batch becomes one global
`jax.Array` whose leading (batch) axis is split over the sharding's devices:
every process contributes its own rows, as `jax.make_array_from_process_local_data`
expects. This module never imports JAX itself until a `DeviceIterator` is made,
so `import tether` stays cheap for those who do not use it.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .ahead import PlacedAhead


def process_layout() -> tuple[int, int] | None:
    """`(jax.process_index(), jax.process_count())`, or None if JAX is not imported.

    JAX is never imported from here: a process that has not imported it is
    not a JAX process, and gets None. Asking JAX starts its backend, after
    which `jax.distributed.initialize()` fails; on several hosts, call
    jax.distributed.initialize() before creating the Loader.

    >>> jax.distributed.initialize()                         # doctest: +SKIP
    >>> index, count = tether.jax.process_layout()           # doctest: +SKIP
    """
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    return jax.process_index(), jax.process_count()


class DeviceIterator(PlacedAhead):
    """Yields batches as `jax.Array`s, `buffer_size` of them already on device.

    Without `sharding` each batch is `jax.device_put` on the default device.
    With one (e.g. `NamedSharding(mesh, PartitionSpec("data"))`, or a pytree
    of shardings matching the batch) each array is one global `jax.Array` of
    `process_count × rows` along its leading axis, built from this process's
    rows by `jax.make_array_from_process_local_data`. The sharding must split
    that axis over all processes, evenly over their devices.

    `layout`, the `(process_index, process_count)` the rows were loaded for,
    is checked against JAX's when there is a sharding and several processes:
    two hosts that both read process 0's rows would otherwise each train on
    the same part of the data, with nothing failing.

    Its `state_dict()` describes the position after the batch it yielded
    last, not after the ones still waiting in its buffer: checkpoint this,
    not the loader, when training from `loader.to_jax()`.
    """

    made_by = "loader.to_jax()"

    def __init__(self, batches: Iterable[tuple[Any, Any]], sharding: Any = None,
                 buffer_size: int = 2, initial_state: Any = None,
                 layout: tuple[int, int] | None = None,
                 length: Callable[[], int] | None = None) -> None:
        import jax

        super().__init__(batches, buffer_size, initial_state, length)
        self._jax = jax
        self._sharding = sharding
        if sharding is not None and layout is not None:
            _check_layout(jax, layout)
        self._said: set[tuple[Any, str]] = set()  # (column, warning) already given

    def _place(self, batch: Any) -> Any:
        """On device; a batch's text, bytes, dates and times (numpy object,
        datetime64 and timedelta64 arrays) stay numpy arrays beside the jax
        ones: JAX has no strings and no dates."""
        if isinstance(batch, dict) and any(_stays_on_host(v) for v in batch.values()):
            on_host = {k: v for k, v in batch.items() if _stays_on_host(v)}
            self._say_once(on_host, "stay numpy arrays beside the jax ones (JAX has no "
                           "strings, dates or times)")
            placed = self._place({k: v for k, v in batch.items() if k not in on_host})
            return {k: on_host[k] if k in on_host else placed[k] for k in batch}
        jax = self._jax
        if not jax.config.jax_enable_x64:
            _check_fits_32_bits(jax, batch)
            if isinstance(batch, dict):
                self._say_once({k: v for k, v in batch.items()
                                if getattr(v, "dtype", None) == np.float64},
                               "are float64: JAX's default 32-bit mode makes them float32 on "
                               'device (jax.config.update("jax_enable_x64", True) keeps them)')
        if self._sharding is None:
            return jax.device_put(batch)
        count = jax.process_count()
        # Stated, not inferred: a sharding that does not split the rows over
        # every process (so processes would hold replicas) fails here instead
        # of silently mixing different rows into one "replicated" array.
        global_shapes = jax.tree_util.tree_map(lambda x: _global_shape(x, count), batch)
        try:
            return jax.make_array_from_process_local_data(self._sharding, batch, global_shapes)
        except ValueError as exc:
            leaves = jax.tree_util.tree_leaves(batch)
            shape = getattr(leaves[0], "shape", ()) if leaves else ()
            raise ValueError(
                f"cannot lay out a batch of shape {shape} on each of {count} process(es) with "
                f"{self._sharding}: {str(exc).rstrip('.')}. The sharding must split the "
                "leading (batch) axis over every process, evenly over their devices; the short "
                "last batch of an epoch needs drop_last=True") from exc

    def _say_once(self, columns: dict[str, Any], what: str) -> None:
        """Warn once per column about what it becomes on device."""
        new = sorted(str(name) for name in columns if (name, what) not in self._said)
        if new:
            self._said.update((name, what) for name in columns)
            warnings.warn(f"columns {new} {what}", stacklevel=4)


def _stays_on_host(x: Any) -> bool:
    kind = getattr(getattr(x, "dtype", None), "kind", None)
    return kind is not None and kind in "OMm"


# What JAX's default 32-bit mode makes of 64-bit integers on device, and the
# range that survives it: anything outside would silently wrap around.
_NARROWED = {np.dtype(np.int64): np.dtype(np.int32), np.dtype(np.uint64): np.dtype(np.uint32)}


def _check_fits_32_bits(jax: Any, batch: Any) -> None:
    """Refuse a 64-bit integer column whose values JAX's 32-bit mode would wrap.

    Values inside the 32-bit range are narrowed as JAX does; a row id of
    2**31 + 5 would arrive as a negative number, with no error, so it stops here.
    """
    for path, x in jax.tree_util.tree_flatten_with_path(batch)[0]:
        narrow = _NARROWED.get(getattr(x, "dtype", None))
        if narrow is None or not x.size:
            continue
        low, high = x.min(), x.max()
        info = np.iinfo(narrow)
        if low < info.min or high > info.max:
            key = getattr(path[0], "key", None) if len(path) == 1 else None
            name = repr(key) if key is not None else jax.tree_util.keystr(path) or "(the batch)"
            raise ValueError(
                f"column {name} is {x.dtype} with values from {low} to {high}, outside "
                f"{narrow}'s range [{info.min}, {info.max}]: JAX's default 32-bit mode would "
                "silently wrap them on device. Call jax.config.update(\"jax_enable_x64\", True) "
                "before creating arrays, or drop or convert the column (e.g. iterate the "
                "loader's numpy batches and pass them to tether.jax.device_iterator)")


def _global_shape(x: Any, process_count: int) -> tuple[int, ...] | None:
    shape = tuple(getattr(x, "shape", ()))
    return (shape[0] * process_count, *shape[1:]) if shape else None


def _check_layout(jax: Any, loader_layout: tuple[int, int]) -> None:
    """Refuse rows loaded for another process than this JAX process."""
    jax_layout = (jax.process_index(), jax.process_count())
    if jax_layout[1] > 1 and tuple(loader_layout) != jax_layout:
        raise ValueError(
            f"the loader reads the rows of process {loader_layout[0]} of {loader_layout[1]}, "
            f"but this is JAX process {jax_layout[0]} of {jax_layout[1]}: pass "
            "process_index, process_count = tether.jax.process_layout() to the Loader")


def device_iterator(batches: Iterable[Any], sharding: Any = None,
                    buffer_size: int = 2) -> DeviceIterator:
    """Yield each batch (any pytree of numpy arrays) as `jax.Array`s.

    With `sharding` (e.g. a `NamedSharding` over a mesh) each array is one
    global array laid out accordingly; on several processes each passes its
    own rows and the global array, `process_count` times as many rows, is
    assembled from them.

    >>> for batch in tether.jax.device_iterator(loader, buffer_size=2):  # doctest: +SKIP
    ...     state = train_step(state, batch)
    """
    return DeviceIterator(((b, None) for b in batches), sharding, buffer_size)
