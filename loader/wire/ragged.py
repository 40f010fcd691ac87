"""Columns whose rows differ in length: token lists, text, file bytes.

A `Ragged` column is one flat `values` array and the `offsets` where each row
starts in it (Arrow's list layout), so a batch of 10,000 token lists is two
numpy arrays, not 10,000 objects. Row i is `values[offsets[i]:offsets[i+1]]`.
Slices share `values` (their offsets need not start at 0); `compact()` gives
the copy whose offsets do.

The `kind` says what a row is: `ragged` (a 1-D array of numbers), `utf8`
(text, values are its UTF-8 bytes) or `binary` (bytes). On the wire a
ragged column travels as its values and its row lengths, each narrowed and
compressed like any tensor (tether.wire.tensors).

>>> tokens = Ragged.from_rows([np.array([1, 2, 3]), np.array([4])])
>>> tokens.lengths.tolist(), tokens[1].tolist()
([3, 1], [4])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Kinds of column. TENSOR is the proto's default (""): fixed-shape rows.
TENSOR = ""
RAGGED = "ragged"
UTF8 = "utf8"
BINARY = "binary"
# A column of encoded image files: binary on disk, and on the wire either
# binary or, decoded by the daemon, uint8 pixels [H, W, 3].
IMAGE = "image"
VARIABLE_KINDS = frozenset({RAGGED, UTF8, BINARY})
COLUMN_KINDS = frozenset({TENSOR, RAGGED, UTF8, BINARY, IMAGE})


@dataclass(frozen=True, eq=False)
class Ragged:
    values: np.ndarray  # (total, *inner): every row's values back to back
    offsets: np.ndarray  # int64 (rows + 1,): where each row starts in values
    kind: str = RAGGED

    def __post_init__(self) -> None:
        if self.kind not in VARIABLE_KINDS:
            raise ValueError(f"unknown ragged kind {self.kind!r}")

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray, kind: str = RAGGED) -> Ragged:
        """Rows of `lengths[i]` values each, taken in order from `values`."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] != len(values):
            raise ValueError(f"row lengths add up to {offsets[-1]}, but there are "
                             f"{len(values)} values")
        return cls(values, offsets, kind)

    @classmethod
    def from_rows(cls, rows: Sequence, kind: str | None = None,
                  dtype: np.dtype | str | None = None) -> Ragged:
        """From a list of arrays (or lists), of `str` or of `bytes`."""
        if kind is None:
            first = rows[0] if len(rows) else None
            kind = UTF8 if isinstance(first, str) else \
                BINARY if isinstance(first, bytes | bytearray | memoryview) else RAGGED
        if kind == RAGGED:
            parts = [np.asarray(row, dtype=dtype) for row in rows]
            values = np.concatenate(parts) if parts else np.zeros(0, dtype or np.int64)
            return cls.from_lengths(values, np.array([len(p) for p in parts], np.int64))
        parts = [row.encode() if kind == UTF8 else bytes(row) for row in rows]
        values = np.frombuffer(b"".join(parts), dtype=np.uint8)
        return cls.from_lengths(values, np.array([len(p) for p in parts], np.int64), kind)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of this column's rows (not of a shared parent's values)."""
        span = int(self.offsets[-1] - self.offsets[0]) if len(self) else 0
        row = self.values[:1].nbytes if len(self.values) else self.values.itemsize
        return span * row + self.offsets.nbytes

    def __getitem__(self, key: int | slice) -> Ragged | np.ndarray | str | bytes:
        """A row (as an array, str or bytes) or a slice of rows (a Ragged view)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self.take(np.arange(start, stop, step))
            return Ragged(self.values, self.offsets[start:max(start, stop) + 1], self.kind)
        index = range(len(self))[key]
        return self._row(int(self.offsets[index]), int(self.offsets[index + 1]))

    def _row(self, start: int, stop: int) -> np.ndarray | str | bytes:
        values = self.values[start:stop]
        if self.kind == UTF8:
            return values.tobytes().decode("utf-8")
        if self.kind == BINARY:
            return values.tobytes()
        return values

    def compact(self) -> Ragged:
        """This column with offsets from 0 and only its own values."""
        if len(self.offsets) and self.offsets[0] == 0 and self.offsets[-1] == len(self.values):
            return self
        start, stop = int(self.offsets[0]), int(self.offsets[-1])
        return Ragged(self.values[start:stop], self.offsets - start, self.kind)

    def take(self, rows: np.ndarray) -> Ragged:
        """These rows, in this order (a copy)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # The source index of every output value: its row's start, plus its place in the row.
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(self.values[index], offsets, self.kind)

    @staticmethod
    def concat(parts: Sequence[Ragged]) -> Ragged:
        """The rows of `parts`, one after the other (a copy)."""
        parts = [p.compact() for p in parts]
        kinds = {p.kind for p in parts}
        if len(kinds) != 1:
            raise ValueError(f"cannot join ragged columns of kinds {sorted(kinds)}")
        values = np.concatenate([p.values for p in parts])
        lengths = np.concatenate([p.lengths for p in parts])
        return Ragged.from_lengths(values, lengths, parts[0].kind)

    def to_numpy(self) -> np.ndarray:
        """An object array of the rows: arrays, `str` or `bytes`."""
        out = np.empty(len(self), dtype=object)
        offsets = self.offsets.tolist()
        for i in range(len(self)):
            out[i] = self._row(offsets[i], offsets[i + 1])
        return out

    def to_list(self) -> list:
        """The rows as a list of arrays, `str` or `bytes`."""
        return list(self.to_numpy())

    def __repr__(self) -> str:
        return (f"Ragged(kind={self.kind!r}, rows={len(self)}, values={self.values.dtype}"
                f"{list(self.values.shape)})")
