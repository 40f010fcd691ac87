"""`@tether.transform(batch_format=...)`: how the owner's function for
`tether serve --transform NAME=MODULE:FUNCTION` takes its rows.

    @tether.transform(batch_format="pandas")
    def clean(frame):                       # a pandas DataFrame, nulls as pandas has them
        return frame.dropna(subset=["label"])

"numpy" (the default, and what an undecorated function gets) is a dict of
numpy arrays; "pandas" a DataFrame; "pyarrow" a pyarrow Table. Either way
the rows keep their types and nulls, and the function may return any of the
three. The daemon reads the mark; nothing is sent anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

BATCH_FORMATS = ("numpy", "pandas", "pyarrow")
MARK = "__tether_batch_format__"

F = TypeVar("F", bound=Callable)


def transform(batch_format: str = "numpy") -> Callable[[F], F]:
    """Mark a transform function with the format of the batches it takes."""
    if batch_format not in BATCH_FORMATS:
        raise ValueError(f"batch_format must be one of {', '.join(BATCH_FORMATS)}, "
                         f"got {batch_format!r}")

    def mark(function: F) -> F:
        setattr(function, MARK, batch_format)
        return function

    return mark


def batch_format_of(function: Callable) -> str:
    return getattr(function, MARK, "numpy")
