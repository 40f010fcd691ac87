"""Arrow columns as tensors: numeric -> 1-D, fixed-size lists and
`fixed_shape_tensor` -> N-D; and as ragged columns: strings and binary ->
text and bytes, lists of numbers -> token lists (tether.wire.ragged).
Shared by the Parquet, Arrow IPC and CSV sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa

from tether.wire.errors import ColumnError
from tether.wire.ragged import BINARY, RAGGED, UTF8, Ragged

from .base import Column, numpy_column


def _value_dtype(value_type: pa.DataType) -> np.dtype | None:
    if pa.types.is_boolean(value_type):
        return np.dtype(bool)
    for is_kind, code in ((pa.types.is_signed_integer, "i"), (pa.types.is_unsigned_integer, "u"),
                          (pa.types.is_floating, "f")):
        if is_kind(value_type):  # (to_pandas_dtype would need pandas on older pyarrow)
            return np.dtype(f"{code}{value_type.bit_width // 8}")
    return None


def _text_kind(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) \
            or _is(arrow_type, "is_string_view"):
        return UTF8
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type) \
            or _is(arrow_type, "is_binary_view"):
        return BINARY
    return None


def _is(arrow_type: pa.DataType, test: str) -> bool:
    """A type test that older pyarrow may not have (its types then cannot occur)."""
    return getattr(pa.types, test, lambda _: False)(arrow_type)


def _is_list(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)


def describe(field: pa.Field) -> Column:
    kind = _text_kind(field.type)
    if kind is not None:
        return Column(field.name, np.dtype(np.uint8), (), kind=kind)
    if _is_list(field.type):
        values = describe(pa.field(field.name, field.type.value_type))
        if values.dtype is None or values.variable:
            return Column(field.name, None, (), f"Arrow type {field.type} is not a list of "
                          "numbers (or of fixed-size lists of numbers)")
        return replace(values, kind=RAGGED)
    return _tensor(field)


def _tensor(field: pa.Field) -> Column:
    arrow_type = field.type
    shape: list[int] = []
    if isinstance(arrow_type, pa.FixedShapeTensorType):
        if arrow_type.permutation not in (None, list(range(len(arrow_type.shape)))):
            return Column(field.name, None, (), "fixed_shape_tensor with a permutation")
        shape = list(arrow_type.shape)
        arrow_type = arrow_type.value_type
    while pa.types.is_fixed_size_list(arrow_type):
        shape.append(arrow_type.list_size)
        arrow_type = arrow_type.value_type
    dtype = _value_dtype(arrow_type)
    if dtype is None:
        return Column(field.name, None, tuple(shape),
                      f"Arrow type {field.type} is not a fixed-size numeric tensor")
    return numpy_column(field.name, dtype, tuple(shape))


def describe_schema(schema: pa.Schema,
                    row_bytes: Mapping[str, float] | None = None) -> dict[str, Column]:
    """The columns of `schema`; `row_bytes` (bytes a row, by column) sizes the
    shards of variable-length ones."""
    columns = {field.name: describe(field) for field in schema}
    for name, size in (row_bytes or {}).items():
        if name in columns and columns[name].variable:
            columns[name] = replace(columns[name], mean_row_bytes=max(1, round(size)))
    return columns


def table_row_bytes(table: pa.Table | pa.RecordBatch) -> dict[str, float]:
    """Mean bytes a row of each column of `table` (a sample of the data)."""
    rows = max(table.num_rows, 1)
    return {name: table.column(name).nbytes / rows for name in table.schema.names}


def _ragged(array: pa.Array, column: Column) -> Ragged:
    """A list, string or binary array as a Ragged (a view of Arrow's buffers)."""
    if _is(array.type, "is_string_view") or _is(array.type, "is_binary_view"):
        large = pa.large_string() if column.kind == UTF8 else pa.large_binary()
        try:
            array = array.cast(large)
        except pa.ArrowNotImplementedError:  # pyarrow before 18 has no such cast
            array = pa.array(array.to_pylist(), type=large)
    if column.kind == RAGGED:
        offsets = array.offsets.to_numpy().astype(np.int64)
        values = to_numpy(array.flatten(), replace(column, kind=""), "values of ")
        return Ragged(values, offsets - offsets[0], RAGGED)
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64 if large else np.int32)
    offsets = offsets[array.offset:array.offset + len(array) + 1].astype(np.int64)
    values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return Ragged(values, offsets, column.kind)


def to_numpy(data: pa.Array | pa.ChunkedArray, column: Column,
             what: str = "") -> np.ndarray | Ragged:
    """One column's rows as an array of shape (rows, *column.shape), or a Ragged."""
    array = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
    if column.variable:
        if array.null_count:
            raise ColumnError(f"column {column.name!r} holds nulls; fill or drop them "
                              "(an empty string or list is fine)")
        return _ragged(array, column)
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    rows = len(array)
    while True:
        if array.null_count:
            raise ColumnError(
                f"{what}column {column.name!r} holds nulls, which a tensor cannot; "
                "fill or drop them")
        if not pa.types.is_fixed_size_list(array.type):
            break
        array = array.flatten()  # respects slicing, unlike .values
    values = array.to_numpy(zero_copy_only=False)
    return values.reshape((rows, *column.shape))


def table_to_numpy(table: pa.Table,
                   columns: Sequence[Column]) -> dict[str, np.ndarray | Ragged]:
    return {c.name: to_numpy(table.column(c.name), c) for c in columns}
