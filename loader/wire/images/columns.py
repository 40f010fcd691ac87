"""Decode a shard's image columns, on whichever side decodes them.

The daemon (decode="daemon") and the loader (decode="loader") both call
`decode_shard_images`, so a shard's pixels, and the rows a corrupt image
leaves out, are the same wherever it was decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ..ragged import Ragged

Columns = dict[str, np.ndarray | Ragged]


class _Names(Sequence[str]):
    """Names of a shard's rows for error messages, made only when one is needed."""

    def __init__(self, count: int, name_of: Callable[[int], str]) -> None:
        self._count = count
        self._name_of = name_of

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._name_of(i) for i in range(self._count)[index]]
        return self._name_of(range(self._count)[index])


def decode_shard_images(columns: Columns, image_columns: Sequence[str], size: tuple[int, int],
                        skip_bad: bool, name_of: Callable[[int], str],
                        max_pixels: int | None = None
                        ) -> tuple[Columns, np.ndarray, float, int]:
    """`columns` with each of `image_columns` (files, a binary Ragged) decoded to
    uint8 [rows, H, W, 3]; with `skip_bad`, rows holding a corrupt image are
    left out of every column. Returns (columns, indices of the rows left out,
    seconds of CPU spent decoding, images decoded). `name_of(row)` names a row's
    file in the error a corrupt image raises; `max_pixels`, an image's budget
    (None: this process's default)."""
    from .decode import decode_images

    out = dict(columns)
    rows = len(next(iter(columns.values())))
    dropped = np.zeros(rows, dtype=bool)
    started, images = time.thread_time(), 0
    for name in image_columns:
        files = out[name]
        if not isinstance(files, Ragged):
            continue  # already pixels (decoded by the daemon)
        pixels, bad = decode_images(files, size, _Names(rows, name_of), skip_bad=skip_bad,
                                    max_pixels=max_pixels)
        images += len(files)
        if bad.any():  # other columns lose those rows below; earlier image columns too
            keep = np.flatnonzero(~bad)
            out = {k: v if k == name else _take(v, keep) for k, v in out.items()}
            dropped[np.flatnonzero(~dropped)[bad]] = True
            name_of = _renumbered(name_of, keep)
            rows = len(keep)
        out[name] = pixels
    return out, np.flatnonzero(dropped), time.thread_time() - started, images


def _take(column: np.ndarray | Ragged, rows: np.ndarray) -> np.ndarray | Ragged:
    return column.take(rows) if isinstance(column, Ragged) else column[rows]


def _renumbered(name_of: Callable[[int], str], keep: np.ndarray) -> Callable[[int], str]:
    return lambda row: name_of(int(keep[row]))
