"""Hand batches to PyTorch: `loader.to_torch()` and `loader.to_torch_dataset()`.

A column becomes a `torch.Tensor` that shares the batch's memory where the
loader owns that memory and may let it be written (no copy); a column the
loader cannot hand over (read-only bytes of a decompressed frame) is copied
once, so an in-place op on a tensor never reaches the loader's buffers. Every
batch is new memory: a tensor kept by the caller stays valid and unchanged
however far iteration goes.

Text, bytes, dates and times, and token lists of varying length stay numpy
arrays beside the tensors (torch has no strings and no dates), as with
`to_jax()`. Unsigned types torch supports only in part are widened exactly
(`TORCH_DTYPES`). Imported only by those methods: `import tether` never
imports torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

try:
    import torch
except ImportError as exc:  # the loader's own stack has no torch
    raise ImportError("loader.to_torch() needs PyTorch: pip install torch") from exc

from .ahead import PlacedAhead
from .wire.errors import RequestError

# numpy -> torch where they differ: torch's uint16, uint32 and uint64 lack most
# operators (no add, no sum on CPU), so they widen to the signed type that holds
# every value. uint64 becomes int64 when its values fit, else it is refused.
WIDENED = {np.dtype(np.uint16): np.dtype(np.int32), np.dtype(np.uint32): np.dtype(np.int64),
           np.dtype(np.uint64): np.dtype(np.int64)}


def as_tensor(name: str, column: Any) -> Any:
    """One column as torch takes it: a tensor, or the numpy array it stays."""
    if not isinstance(column, np.ndarray) or column.dtype.kind in "OMmSU":
        return column
    wide = WIDENED.get(column.dtype)
    if wide is not None:
        if column.dtype == np.uint64 and column.size and column.max() > np.iinfo(np.int64).max:
            raise ValueError(
                f"column {name!r} is uint64 with values up to {column.max()}, past int64's "
                "range; torch's uint64 tensors lack most operators, so Tether hands uint64 "
                "over as int64 only when every value fits: drop or convert the column "
                "(e.g. in a tether.transform on the daemon)")
        return torch.from_numpy(column.astype(wide))
    if not column.flags.writeable:  # the loader's read-only bytes: a copy torch may write
        column = column.copy()
    return torch.from_numpy(column)


def as_tensors(batch: dict[str, Any]) -> dict[str, Any]:
    return {name: as_tensor(name, column) for name, column in batch.items()}


class TorchIterator(PlacedAhead):
    """Yields batches as dicts of `torch.Tensor`; with a `device`, the next
    `buffer_size` batches are already copied there (from pinned memory, with
    `non_blocking=True`, on CUDA), overlapping the copy with the step.

    Its `state_dict()` is the loader's position after the batch it yielded
    last, not after those still in its buffer: checkpoint this, not the loader.
    """

    made_by = "loader.to_torch()"

    def __init__(self, batches: Iterable[tuple[dict[str, Any], Any]], device: Any = None,
                 pin_memory: bool | None = None, buffer_size: int = 2,
                 initial_state: Any = None, length: Callable[[], int] | None = None) -> None:
        self._device = None if device is None else torch.device(device)
        on_cpu = self._device is None or self._device.type == "cpu"
        self._pin = (not on_cpu and self._device.type == "cuda") if pin_memory is None \
            else pin_memory
        if self._pin and not torch.cuda.is_available():
            raise RequestError("pin_memory=True needs CUDA, and torch sees none here: pass "
                               "pin_memory=False, or leave it None (pinned only for cuda)")
        # on the CPU there is nothing to copy ahead
        super().__init__(batches, min(buffer_size, 1) if on_cpu else buffer_size, initial_state,
                         length)
        self._said = False

    def _place(self, batch: dict[str, Any]) -> dict[str, Any]:
        tensors = as_tensors(batch)
        host = sorted(k for k, v in tensors.items() if not isinstance(v, torch.Tensor))
        if host and not self._said:
            self._said = True
            warnings.warn(f"columns {host} stay numpy arrays beside the tensors (torch has no "
                          "strings, dates, times or rows of varying length: pad= makes "
                          "token lists a tensor)", stacklevel=4)
        if self._device is None or self._device.type == "cpu":
            return tensors
        return {k: self._to_device(v) if isinstance(v, torch.Tensor) else v
                for k, v in tensors.items()}

    def _to_device(self, tensor: Any) -> Any:
        if self._pin:
            tensor = tensor.pin_memory()
        return tensor.to(self._device, non_blocking=self._pin)
