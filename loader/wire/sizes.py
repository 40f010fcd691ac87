"""Byte sizes typed by people: `10GB`, `1.5G`, `512MiB`, `4096`.

One parser for every command that takes a size (`tether serve --max-upload`,
`tether bench --size`), so the same text means the same number everywhere.
K, M, G, T (with or without B) are powers of 1000, as disks and links count;
KiB, MiB, GiB, TiB are powers of 1024, as memory counts. It lives in
tether.wire, the code every side may import, because the daemon's and the
bench's commands both need it.
"""

from __future__ import annotations

import argparse
import re
from fractions import Fraction


def _units() -> dict[str, int]:
    units = {"": 1, "b": 1}
    for power, prefix in enumerate("kmgt", start=1):
        units[prefix] = units[f"{prefix}b"] = 1000**power
        units[f"{prefix}ib"] = 1024**power
    return units


UNITS = _units()  # lower-case unit -> bytes

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE | re.ASCII)

EXAMPLES = ("give a number of bytes with an optional unit, e.g. 1048576, 500MB, 1.5G, "
            "512MiB (K, M, G, T are powers of 1000; KiB, MiB, GiB, TiB powers of 1024)")


def parse_size(text: str) -> int:
    """Bytes in `text`, rounded down to a whole byte; ValueError with examples if not a size."""
    match = _SIZE.fullmatch(text)
    unit = match and match[2].lower()
    if unit not in UNITS:
        raise ValueError(f"not a size: {text!r}; {EXAMPLES}")
    return int(Fraction(match[1]) * UNITS[unit])


def size_argument(text: str) -> int:
    """`parse_size` as an argparse `type=`: a bad size is a usage error with the examples."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
