"""How full packed rows are, and how fast packing runs, on typical length mixes.

    python -m tether.bench.packing_fill

prints the table in tether.sequences.packing' docstring: best-fit against first-fit
decreasing, rounds of 256 and 1024 sequences, L of 512 and 2048.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tether.sequences.packing import METHODS, pack, pack_round
from tether.wire.ragged import Ragged


def typical_lengths(mix: str, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Sequence lengths of a typical mix, for measuring fill."""
    if mix == "lognormal":  # mean about L/4
        sigma = 1.0
        mu = np.log(length / 4) - sigma**2 / 2
        out = rng.lognormal(mu, sigma, count)
    elif mix == "uniform":
        out = rng.integers(1, length + 1, count)
    elif mix == "around_L":
        out = rng.integers(length // 2, 3 * length // 2 + 1, count)
    elif mix == "zipf":  # many short, a long tail: 8 * Zipf(1.5), up to 4L
        out = np.minimum(rng.zipf(1.5, count) * 8, 4 * length)
    else:
        raise ValueError(f"unknown mix {mix!r}")
    return np.maximum(np.round(out), 1).astype(np.int64)


MIXES = ("lognormal", "uniform", "around_L", "zipf")


def fill_report(rounds: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Fill of best_fit and first_fit on the typical mixes (the docstring's table)."""
    table = []
    for mix in MIXES:
        for length in (512, 2048):
            for size in (256, 1024):
                rng = np.random.default_rng(seed)
                batches = [typical_lengths(mix, size, length, rng) for _ in range(rounds)]
                line: dict[str, Any] = {"mix": mix, "L": length, "round": size}
                for method in METHODS:
                    placed = [pack_round(b, length, method) for b in batches]
                    slots = sum(p.rows for p in placed) * length
                    line[method] = sum(p.tokens for p in placed) / slots
                table.append(line)
    return table


def packing_speed(length: int = 512, size: int = 1024, rounds: int = 20,
                  method: str = "best_fit", mix: str = "lognormal", seed: int = 0) -> float:
    """Tokens per second through `pack` (placement and the copy), one core."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(rounds):
        lengths = typical_lengths(mix, size, length, rng)
        values = rng.integers(0, 50_000, int(lengths.sum()), dtype=np.int32)
        batches.append({"tokens": Ragged.from_lengths(values, lengths),
                        "id": np.arange(size, dtype=np.int64)})
    pack(batches[0], "tokens", length, method=method)  # warm up
    begin = time.perf_counter()
    tokens = 0
    for batch in batches:
        pack(batch, "tokens", length, method=method)
        tokens += len(batch["tokens"].values)
    return tokens / (time.perf_counter() - begin)


def main() -> None:
    print(f"{'mix':<10} {'L':>5} {'round':>6} {'best_fit':>9} {'first_fit':>10}")
    for line in fill_report():
        print(f"{line['mix']:<10} {line['L']:>5} {line['round']:>6} {line['best_fit']:>9.4f} "
              f"{line['first_fit']:>10.4f}")
    for method in METHODS:
        for length in (512, 2048):
            speed = packing_speed(length=length, method=method)
            print(f"pack {method}, lognormal, L={length}, rounds of 1024: "
                  f"{speed / 1e6:.1f}M tokens/s")


if __name__ == "__main__":
    main()
