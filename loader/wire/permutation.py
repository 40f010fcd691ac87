"""A keyed pseudorandom permutation of [0, n), computed per index.

`Permutation(n, key)[positions]` gives the element at those positions of a
shuffled `range(n)` without building the shuffled array: memory stays O(1)
whatever the dataset's size, and any position is as cheap as the first. That
is what lets a plan jump to any point of any epoch, on either side of the
wire. The construction is a balanced Feistel network over the next even
power of two, with cycle-walking back into [0, n) (as Grain's index_shuffle
does). Everything is integer arithmetic on uint64 arrays, so the result is
the same on every numpy version and platform: the loader and the daemon
always agree.
"""

from __future__ import annotations

import numpy as np

# Four rounds make a Feistel network a strong pseudorandom permutation
# (Luby-Rackoff); the round function is a multiply-xorshift hash.
ROUNDS = 4
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijective, well-mixing hash of uint64 values."""
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def derive_key(*parts: int) -> int:
    """One 64-bit key from several integers (seed, epoch, window, ...)."""
    key = np.zeros(1, dtype=np.uint64)
    for part in parts:
        key = mix64(key ^ np.array([part & (2**64 - 1)], dtype=np.uint64))
    return int(key[0])


class Permutation:
    """A shuffled `range(n)`, indexed without being built.

    >>> p = Permutation(10, key=derive_key(0, 1))
    >>> sorted(p[np.arange(10)].tolist()) == list(range(10))
    True
    """

    def __init__(self, n: int, key: int) -> None:
        if n < 1:
            raise ValueError(f"a permutation needs at least one element, got {n}")
        self.n = n
        bits = max(2, int(n - 1).bit_length())
        bits += bits % 2  # balanced halves
        # Halves of up to 16 bits are hashed in uint32, twice as fast as uint64.
        self._dtype = np.dtype(np.uint32 if n < 1 << 32 else np.uint64)  # n itself must fit
        width = self._dtype.itemsize * 8
        kind = self._dtype.type
        self._half = kind(bits // 2)
        self._mask = kind((1 << (bits // 2)) - 1)
        self._drop = kind(width - bits // 2)  # keep the product's high bits
        self._shift = kind(width // 2 - 1)
        self._mul1 = kind(int(_MIX1) & ((1 << width) - 1) | 1)
        self._mul2 = kind(int(_MIX2) & ((1 << width) - 1) | 1)
        self._keys = [kind(derive_key(key, r) & ((1 << width) - 1)) for r in range(ROUNDS)]

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for key in self._keys:
            hashed = right ^ key
            hashed *= self._mul1
            hashed ^= hashed >> self._shift
            hashed *= self._mul2
            hashed >>= self._drop
            hashed ^= left
            left, right = right, hashed
        left <<= self._half
        left |= right
        return left

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n})")
        if self.n == 1:
            return np.zeros_like(positions)
        out = self._encrypt(positions.astype(self._dtype))
        limit = self._dtype.type(self.n)
        outside = np.flatnonzero(out >= limit)
        while outside.size:  # cycle-walk: the domain is under 4n, so few rounds
            walked = self._encrypt(out[outside])
            out[outside] = walked
            outside = outside[walked >= limit]
        return out.astype(np.int64)
