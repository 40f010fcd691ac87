"""What the data itself says about columns, read once when a source opens:
how many rows of each hold no value (null), and the vocabulary of a
category column.

A vocabulary is either a dictionary column's own (a pandas category), its
dictionaries unified in the order their values first appear, so that codes
are one numbering across row groups and files; or, for a text column a
stream asks to categorize, its sorted distinct values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc

from tether.wire.errors import ColumnError

from .arrow_columns import field_of, read_names
from .arrow_types import CATEGORY
from .base import Column

# A vocabulary travels in the stream's plan: it must fit a frame with room.
MAX_CATEGORIES = 1 << 20
MAX_VOCABULARY_BYTES = 16 << 20

Blocks = Callable[[Sequence[str]], Iterable[pa.Table]]


def count_nulls(blocks: Blocks, columns: Sequence[Column]) -> dict[str, int]:
    """Nulls of each of `columns`, over every block."""
    counts = dict.fromkeys((c.name for c in columns), 0)
    if columns:
        for table in blocks(read_names(columns)):
            for column in columns:
                counts[column.name] += field_of(table, column).null_count
    return counts


def with_facts(columns: dict[str, Column], blocks: Blocks, counted: Callable[[Column], bool],
               cheap: bool = False) -> dict[str, Column]:
    """`columns` with their null counts (those not `counted` already) and the
    vocabularies of their category columns, read from `blocks`. Unless
    counting is `cheap` (the counts are metadata), a variable-length column
    is not read for it: its nulls are -1, not counted (they become None
    either way)."""
    uncounted = [c for c in columns.values() if c.dtype is not None and not counted(c)]
    counts = count_nulls(blocks, [c for c in uncounted if cheap or not c.variable])
    out = {}
    for name, column in columns.items():
        if name in counts:
            column = replace(column, nulls=counts[name])
        elif column in uncounted:
            column = replace(column, nulls=-1)
        if column.logical == CATEGORY:
            column = replace(column, categories=dictionary_vocabulary(blocks, column))
        out[name] = column
    return out


def dictionary_vocabulary(blocks: Blocks, column: Column) -> tuple[str, ...]:
    """A dictionary column's values, unified in order of first appearance."""
    seen: dict[str, None] = {}
    for table in blocks([column.path[0]]):
        array = field_of(table, column)
        dictionary = array.dictionary if pa.types.is_dictionary(array.type) else array
        for value in dictionary.cast(pa.string()).to_pylist():
            if value is not None:
                seen.setdefault(value, None)
        _check_size(column, seen)
    return tuple(seen)


def sorted_vocabulary(blocks: Blocks, column: Column) -> tuple[str, ...]:
    """A text column's distinct values, sorted (`categories=`)."""
    distinct: set[str] = set()
    for table in blocks([column.path[0]]):
        values = pc.unique(field_of(table, column)).drop_null()
        distinct.update(values.cast(pa.string()).to_pylist())
        _check_size(column, distinct)
    return tuple(sorted(distinct))


def _check_size(column: Column, values: Iterable[str]) -> None:
    values = list(values) if not isinstance(values, dict | set) else values
    if len(values) > MAX_CATEGORIES or sum(len(v) for v in values) > MAX_VOCABULARY_BYTES:
        raise ColumnError(
            f"column {column.name!r} has more than {MAX_CATEGORIES:,} distinct values (or "
            f"{MAX_VOCABULARY_BYTES >> 20} MiB of them): too many to send as categories; "
            "stream it as text instead")
