"""Arrow data as what a stream sends: each column's rows as a numpy array of
the column's dtype, or a Ragged (tether.wire.ragged). Shared by every source
that reads Arrow (Parquet, Arrow IPC, CSV, JSON Lines, snapshots).

What a type becomes is arrow_types' table; what its nulls become is the
stream's choice, carried by the column (`fill`, or a `valid_of` mask column):
tether.daemon.stream.columns makes it, and refuses at open a column whose
nulls nothing was chosen for, so that nothing here guesses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tether.wire.errors import ColumnError
from tether.wire.ragged import BINARY, IMAGE, RAGGED, UTF8, Ragged

from .arrow_types import CATEGORY, DECIMAL, STRING_LIST, TEMPORAL, _is, describe_schema
from .base import Column

__all__ = ["describe_schema", "read_names", "table_row_bytes", "table_to_numpy", "to_numpy"]


def table_row_bytes(table: pa.Table | pa.RecordBatch) -> dict[str, float]:
    """Mean bytes a row of each column of `table` (a sample of the data)."""
    rows = max(table.num_rows, 1)
    return {name: _nbytes(table.column(name)) / rows for name in table.schema.names}


def _nbytes(column: pa.Array | pa.ChunkedArray) -> int:
    try:
        return column.nbytes
    except (pa.ArrowTypeError, pa.ArrowNotImplementedError):  # views, before pyarrow 19
        return sum(len(value) for value in column.to_pylist() if value is not None)


def read_names(columns: Sequence[Column]) -> list[str]:
    """The top-level Arrow columns `columns` read, once each, in order."""
    return list(dict.fromkeys(column.path[0] for column in columns))


def field_of(table: pa.Table | pa.RecordBatch, column: Column) -> pa.Array:
    """The Arrow values `column` reads: a top-level column, or a struct's
    child (null where its struct is)."""
    array = _one_array(table.column(column.path[0]))
    for child in column.path[1:]:
        array = pc.struct_field(array, [array.type.get_field_index(child)])
    return array


def _one_array(data: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(data, pa.ChunkedArray):  # (combine_chunks copies even a single chunk)
        return data.chunk(0) if data.num_chunks == 1 else data.combine_chunks()
    return data


def table_to_numpy(table: pa.Table, columns: Sequence[Column]) -> dict[str, np.ndarray | Ragged]:
    return {c.name: to_numpy(field_of(table, c), c) for c in columns}


def to_numpy(array: pa.Array | pa.ChunkedArray, column: Column) -> np.ndarray | Ragged:
    """One column's rows as an array of shape (rows, *column.shape), or a Ragged."""
    array = _one_array(array)
    if column.valid_of:
        return np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if column.logical == CATEGORY:
        return _codes(array, column)
    if column.variable:
        return _ragged(array, column)
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if column.logical == DECIMAL:  # a float64, NaN for null
        array = array.cast(pa.float64())
    if array.null_count:
        array = _filled(array, column)
    if column.logical in TEMPORAL:
        if pa.types.is_date64(array.type):  # milliseconds: as days, like date32
            array = array.cast(pa.date32(), safe=False)  # (a time of day is dropped)
        storage = pa.int64() if array.type.bit_width == 64 else pa.int32()
        values = array.cast(storage).to_numpy(zero_copy_only=False)
        return values.astype(np.int64, copy=False).view(column.dtype)
    rows = len(array)
    while pa.types.is_fixed_size_list(array.type):
        array = array.flatten()  # respects slicing, unlike .values
    if array.null_count:  # a null element inside a tensor (its rows were checked at open)
        raise ColumnError(f"column {column.name!r} holds null values inside its tensors; "
                          "fill or drop them at the source")
    values = array.to_numpy(zero_copy_only=False)
    return values.reshape((rows, *column.shape))


def _filled(array: pa.Array, column: Column) -> pa.Array:
    """`array` with its nulls replaced by the column's fill (NaN for floats)."""
    if column.fill is None and not pa.types.is_floating(array.type):
        raise ColumnError(  # the stream's columns were checked at open: a source changed
            f"column {column.name!r} holds nulls, which a tensor cannot; pass "
            f"fill_null={{{column.name!r}: ...}} or null_masks=[{column.name!r}]")
    value = float("nan") if column.fill is None else column.fill
    return pc.fill_null(array, fill_scalar(value, array.type, column.name))


def fill_scalar(value: object, arrow_type: pa.DataType, name: str) -> pa.Scalar:
    """`value` as a scalar of `arrow_type`: what a column's nulls become. Text
    stands only in text, dates and times (as ISO text); a number only where it
    fits exactly (1.5 in an int column is refused, not truncated)."""
    try:
        textual = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
        if isinstance(value, str) and not textual:
            if not (pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type)):
                raise ValueError("text stands only in text, date and timestamp columns")
            if pa.types.is_timestamp(arrow_type) and arrow_type.tz:  # naive text, then zoned
                naive = pa.scalar(value).cast(pa.timestamp(arrow_type.unit))
                return naive.cast(pa.int64()).cast(arrow_type)
            return pa.scalar(value).cast(arrow_type)
        if isinstance(value, str) or textual:
            return pa.scalar(value, arrow_type)
        if isinstance(value, int) and (pa.types.is_date(arrow_type) or
                                       pa.types.is_time(arrow_type)):
            storage = pa.int32() if arrow_type.bit_width == 32 else pa.int64()
            return pa.scalar(value, storage).cast(arrow_type)  # days, or time units
        return pa.scalar(value).cast(arrow_type)  # a safe cast: nothing lost
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
            OverflowError, TypeError, ValueError) as exc:
        raise ColumnError(f"fill_null value {value!r} cannot stand in column {name!r} of "
                          f"type {arrow_type}: {exc}") from None


def _codes(array: pa.Array, column: Column) -> np.ndarray:
    """int32 codes into the column's vocabulary (-1 for null): a dictionary's
    indices mapped through its own dictionary, or text looked up."""
    vocabulary = pa.array(column.categories or (), pa.string())
    if pa.types.is_dictionary(array.type):
        mapped = pc.index_in(array.dictionary.cast(pa.string()), value_set=vocabulary)
        codes = pc.take(mapped, array.indices)
    else:
        codes = pc.index_in(array.cast(pa.string()), value_set=vocabulary)
    out = codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    missing = (out < 0) & np.asarray(array.is_valid().to_numpy(zero_copy_only=False))
    if missing.any():  # a value the vocabulary was not made with: the data changed
        raise ColumnError(f"column {column.name!r} holds values outside its vocabulary; "
                          "the dataset changed since it was opened: open the loader again")
    return out


def _ragged(array: pa.Array, column: Column) -> Ragged:
    """A list, string or binary array as a Ragged (a view of Arrow's buffers);
    a null row is empty here, and None once delivered (its mask column)."""
    if _is(array.type, "is_string_view") or _is(array.type, "is_binary_view"):
        large = pa.large_binary() if _is(array.type, "is_binary_view") else pa.large_string()
        try:  # (fill_null has no kernel for views either)
            array = array.cast(large)
        except pa.ArrowNotImplementedError:  # pyarrow before 18 has no such cast
            array = pa.array(array.to_pylist(), type=large)
    if column.logical == STRING_LIST:
        texts = [json.dumps(row, ensure_ascii=False) if row is not None else ""
                 for row in array.to_pylist()]
        array = pa.array(texts, pa.large_string())
    elif array.null_count:
        empty = [] if column.kind == RAGGED else "" if column.kind == UTF8 else b""
        fill = empty if column.fill is None else column.fill
        array = pc.fill_null(array, fill_scalar(fill, array.type, column.name))
    if column.kind == RAGGED:
        offsets = array.offsets.to_numpy().astype(np.int64)
        values = to_numpy(array.flatten(), replace(column, kind="", logical=""))
        return Ragged(values, offsets - offsets[0], RAGGED)
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64 if large else np.int32)
    offsets = offsets[array.offset:array.offset + len(array) + 1].astype(np.int64)
    values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return Ragged(values, offsets, BINARY if column.kind == IMAGE else column.kind)
