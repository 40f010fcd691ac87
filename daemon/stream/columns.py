"""A stream's columns: the source's, with what the request chose for them.

Nulls are never guessed. A float's become NaN and a text's None (through a
mask column the loader reads); a category's are code -1. Any other column
with nulls needs the request to say what they become: `fill_null` (a value,
filled here) or `null_masks` (a bool NAME_valid column beside it, the nulls
filled with zero or the fill value). Without either it is refused when the
stream opens, every such column named at once with both options.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa

from tether.wire.errors import ColumnError, RequestError
from tether.wire.ragged import BINARY, IMAGE, UTF8
from tether.wire.spec import StreamSpec

from ..sources import Column, Source
from ..sources.arrow_columns import fill_scalar
from ..sources.arrow_types import CATEGORY, DECIMAL, STRING_LIST
from ..sources.column_facts import sorted_vocabulary

MASK_SUFFIX = "_valid"
MAX_VOCABULARIES = 32  # kept per daemon, newest first out


class Vocabularies:
    """The sorted distinct values of text columns streams ask to categorize,
    computed once per dataset version (a new version has a new fingerprint)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def of(self, source: Source, column: Column) -> tuple[str, ...]:
        key = (source.name, source.fingerprint, column.name)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        if source.filter_blocks([column.path[0]]) is None:
            raise ColumnError(f"categories=[{column.name!r}]: {source.format} datasets cannot "
                              "be categorized; stream the column as text")
        vocabulary = sorted_vocabulary(source.filter_blocks, column)
        with self._lock:
            self._known[key] = vocabulary
            while len(self._known) > MAX_VOCABULARIES:
                del self._known[next(iter(self._known))]
        return vocabulary


def stream_columns(source: Source, spec: StreamSpec, vocabularies: Vocabularies) -> list[Column]:
    """The columns `spec` streams from `source`, each carrying its null policy,
    mask columns after those that have one; a ColumnError naming every column
    whose nulls need an option."""
    _check_names(source, spec)
    fills = dict(spec.fill_null)
    chosen, unresolved = [], []
    for column in source.select(list(spec.columns)):
        column = _as_asked(source, column, spec, vocabularies)
        asked = spec.null_masks_all and column.nulls != 0 or column.name in spec.null_masks
        if column.shape and column.nulls and not column.variable:
            raise ColumnError(f"column {column.name!r} of {source.name!r} holds {column.nulls} "
                              "null rows, which a tensor cannot, nor a fill of its shape; "
                              "drop them at the source, or leave the column out (columns=)")
        if column.name in fills:
            _check_fill(column, fills[column.name])
            column = replace(column, fill=fills[column.name])
        elif asked and not column.variable and column.nulls != 0:
            column = replace(column, fill=_zero(column))
        elif column.nulls and not column.variable and _needs_option(column):
            unresolved.append(column)
        chosen.append(column)
        if asked or (column.variable and column.nulls != 0 and column.fill is None):
            chosen.append(_mask(source, column))
    if unresolved:
        raise ColumnError(_refusal(source, unresolved))
    _check_images(chosen, spec)
    return chosen


def _check_names(source: Source, spec: StreamSpec) -> None:
    named = {"fill_null": [name for name, _ in spec.fill_null], "null_masks": spec.null_masks,
             "categories": spec.categories, "images": spec.images}
    for option, names in named.items():
        unknown = [name for name in names if name not in source.columns]
        if unknown:
            raise ColumnError(f"{option} names {unknown}, not columns of {source.name!r}; "
                              f"columns: {', '.join(source.columns)}")


def _as_asked(source: Source, column: Column, spec: StreamSpec,
              vocabularies: Vocabularies) -> Column:
    """The column as `categories=` and `images=` ask for it."""
    if column.name in spec.categories:
        if column.kind != UTF8 or column.logical:
            raise ColumnError(f"categories=[{column.name!r}]: a text column is categorized; "
                              f"{column.name!r} is {column.source_type or column.dtype}")
        return replace(column, kind="", dtype=np.dtype(np.int32), logical=CATEGORY,
                       categories=vocabularies.of(source, column))
    if column.name in spec.images:
        if column.kind not in (BINARY, IMAGE):
            raise ColumnError(f"images=[{column.name!r}]: only a binary column holds encoded "
                              f"images; {column.name!r} is {column.source_type or column.kind}")
        return replace(column, kind=IMAGE)
    return column


def _check_fill(column: Column, value: object) -> None:
    """Refuse at open a fill that cannot stand in the column (or would be ignored)."""
    if column.logical in (CATEGORY, STRING_LIST):
        raise ColumnError(f"fill_null cannot fill {column.name!r} ({column.logical}): its "
                          "nulls arrive as " + ("code -1" if column.logical == CATEGORY
                                                 else "None") + "; pass null_masks instead")
    arrow = pa.float64() if column.logical == DECIMAL else column.arrow or pa.null()
    fill_scalar(value, arrow, column.name)


def _needs_option(column: Column) -> bool:
    """Whether a tensor's nulls have no natural value: all but floats' and
    decimals' (NaN) and categories' (-1)."""
    return column.logical != CATEGORY and not (column.dtype.kind == "f"
                                               and column.logical in ("", DECIMAL))


def _zero(column: Column) -> object:
    """What a masked column's nulls become without a fill: zero, false, the epoch."""
    if column.logical:  # the epoch, midnight, no time
        return 0
    return {"b": False, "f": 0.0}.get(column.dtype.kind, 0)


def _mask(source: Source, column: Column) -> Column:
    name = column.name + MASK_SUFFIX
    if name in source.columns:
        raise ColumnError(f"{source.name!r} has a column {name!r} already: its null mask for "
                          f"{column.name!r} cannot take that name; pass fill_null for "
                          f"{column.name!r} instead")
    return Column(name, np.dtype(bool), (), reads=column.path, source_type="bool",
                  valid_of=column.name)


def _refusal(source: Source, columns: Sequence[Column]) -> str:
    listed = ", ".join(f"{c.name!r} ({c.source_type or c.dtype}, {c.nulls} nulls)"
                       for c in columns)
    example = columns[0].name
    return (f"columns of {source.name!r} hold nulls that a tensor of their type cannot: "
            f"{listed}. Say what they become: fill_null={{{example!r}: ...}} fills them on "
            f"the daemon, or null_masks=[{example!r}] (or True) adds a bool "
            f"{example + MASK_SUFFIX!r} column beside it (tether ls counts each column's "
            "nulls)")


def _check_images(columns: Sequence[Column], spec: StreamSpec) -> None:
    if spec.image_size is not None and not any(c.kind == IMAGE for c in columns):
        binary = [c.name for c in columns if c.kind == BINARY]
        hint = (f"; if {binary} holds encoded images, pass images={binary}" if binary
                else "")
        raise RequestError(f"image_size={spec.image_size} but no column streamed is an "
                           f"image{hint}")
