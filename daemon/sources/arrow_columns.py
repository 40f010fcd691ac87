"""Arrow columns as tensors: numeric -> 1-D, fixed-size lists and
`fixed_shape_tensor` -> N-D. Shared by the Parquet, Arrow IPC and CSV sources."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from tether.wire.errors import ColumnError

from .base import Column, numpy_column


def _value_dtype(value_type: pa.DataType) -> np.dtype | None:
    if pa.types.is_boolean(value_type):
        return np.dtype(bool)
    for is_kind, code in ((pa.types.is_signed_integer, "i"), (pa.types.is_unsigned_integer, "u"),
                          (pa.types.is_floating, "f")):
        if is_kind(value_type):  # (to_pandas_dtype would need pandas on older pyarrow)
            return np.dtype(f"{code}{value_type.bit_width // 8}")
    return None


def describe(field: pa.Field) -> Column:
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


def describe_schema(schema: pa.Schema) -> dict[str, Column]:
    return {field.name: describe(field) for field in schema}


def to_numpy(data: pa.Array | pa.ChunkedArray, column: Column) -> np.ndarray:
    """One column's rows as an array of shape (rows, *column.shape)."""
    array = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    rows = len(array)
    while True:
        if array.null_count:
            raise ColumnError(
                f"column {column.name!r} holds nulls, which a tensor cannot; fill or drop them"
            )
        if not pa.types.is_fixed_size_list(array.type):
            break
        array = array.flatten()  # respects slicing, unlike .values
    values = array.to_numpy(zero_copy_only=False)
    return values.reshape((rows, *column.shape))


def table_to_numpy(table: pa.Table, columns: Sequence[Column]) -> dict[str, np.ndarray]:
    return {c.name: to_numpy(table.column(c.name), c) for c in columns}
