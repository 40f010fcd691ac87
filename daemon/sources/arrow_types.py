"""What each Arrow type is served as: the columns of a schema.

    bool, integers, floats              1-D tensors (nulls: NaN for floats, else an option)
    fixed-size lists, fixed_shape_tensor  N-D tensors
    decimal                             float64 (lossy past 15 significant digits)
    timestamp[unit, tz]                 datetime64[unit], UTC for a zoned one
    date32, date64                      datetime64[D]
    time32, time64                      timedelta64[unit] since midnight
    duration[unit]                      timedelta64[unit]
    dictionary (a pandas category)      int32 codes into one vocabulary, -1 for null
    string, binary                      text and bytes (nulls: None)
    list of numbers                     token lists (tether.wire.ragged)
    list of strings                     lists of str (one JSON array a row on the wire)
    struct                              flattened: a column "outer.inner" a field
    struct<bytes, path>                 an image column (Hugging Face's Image feature)

docs/datasets.md has the same table with the options that change it; a type
not above is listed as unsupported, with why, and never silently altered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pyarrow as pa

from tether.wire.ragged import BINARY, IMAGE, RAGGED, UTF8

from .base import Column, numpy_column

TIMESTAMP, DATE, TIME, DURATION = "timestamp", "date", "time", "duration"
DECIMAL, CATEGORY, STRING_LIST = "decimal", "category", "list<string>"
TEMPORAL = (TIMESTAMP, DATE, TIME, DURATION)


def _value_dtype(value_type: pa.DataType) -> np.dtype | None:
    if pa.types.is_boolean(value_type):
        return np.dtype(bool)
    for is_kind, code in ((pa.types.is_signed_integer, "i"), (pa.types.is_unsigned_integer, "u"),
                          (pa.types.is_floating, "f")):
        if is_kind(value_type):  # (to_pandas_dtype would need pandas on older pyarrow)
            return np.dtype(f"{code}{value_type.bit_width // 8}")
    return None


def text_kind(arrow_type: pa.DataType) -> str | None:
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


def is_list(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)


def is_image_struct(arrow_type: pa.DataType) -> bool:
    """Hugging Face's Image feature: struct<bytes: binary, path: string>."""
    if not pa.types.is_struct(arrow_type):
        return False
    fields = {arrow_type.field(i).name: arrow_type.field(i).type
              for i in range(arrow_type.num_fields)}
    return set(fields) == {"bytes", "path"} and text_kind(fields["bytes"]) == BINARY \
        and text_kind(fields["path"]) == UTF8


def describe(field: pa.Field, path: tuple[str, ...] = ()) -> list[Column]:
    """The columns `field` is served as (several for a struct)."""
    path = (*path, field.name)
    name, arrow_type = ".".join(path), field.type
    common = {"reads": path if len(path) > 1 else (), "source_type": str(arrow_type),
              "arrow": arrow_type}
    if is_image_struct(arrow_type):
        return [Column(name, np.dtype(np.uint8), (), kind=IMAGE, **{**common, "reads": (
                    *path, "bytes"), "arrow": arrow_type.field("bytes").type}),
                *describe(arrow_type.field("path"), path)]
    if pa.types.is_struct(arrow_type):
        return [column for i in range(arrow_type.num_fields)
                for column in describe(arrow_type.field(i), path)]
    return [_describe_leaf(name, arrow_type, common)]


def _describe_leaf(name: str, arrow_type: pa.DataType, common: dict) -> Column:
    kind = text_kind(arrow_type)
    if kind is not None:
        return Column(name, np.dtype(np.uint8), (), kind=kind, **common)
    if pa.types.is_dictionary(arrow_type):
        return Column(name, np.dtype(np.int32), (), logical=CATEGORY, **common)
    if is_list(arrow_type):
        if text_kind(arrow_type.value_type) == UTF8:
            return Column(name, np.dtype(np.uint8), (), kind=UTF8, logical=STRING_LIST, **common)
        values = _describe_leaf(name, arrow_type.value_type, common)
        if values.dtype is None or values.variable or values.logical:
            return Column(name, None, (), f"Arrow type {arrow_type} is not a list of numbers "
                          "(or of fixed-size lists of numbers) or of strings", **common)
        return Column(name, values.dtype, values.shape, kind=RAGGED, **common)
    temporal = _temporal(arrow_type)
    if temporal is not None:
        dtype, logical, timezone = temporal
        return Column(name, dtype, (), logical=logical, timezone=timezone, **common)
    if pa.types.is_decimal(arrow_type):
        return Column(name, np.dtype("<f8"), (), logical=DECIMAL, **common)
    if pa.types.is_null(arrow_type):
        return Column(name, None, (), "it holds only nulls (Arrow type null)", **common)
    return _tensor(name, arrow_type, common)


def _temporal(arrow_type: pa.DataType) -> tuple[np.dtype, str, str] | None:
    """(dtype, logical, time zone) of a date or time type; None for others."""
    if pa.types.is_timestamp(arrow_type):
        return np.dtype(f"<M8[{arrow_type.unit}]"), TIMESTAMP, arrow_type.tz or ""
    if pa.types.is_date(arrow_type):
        return np.dtype("<M8[D]"), DATE, ""
    if pa.types.is_time(arrow_type):
        return np.dtype(f"<m8[{arrow_type.unit}]"), TIME, ""
    if pa.types.is_duration(arrow_type):
        return np.dtype(f"<m8[{arrow_type.unit}]"), DURATION, ""
    return None


def _tensor(name: str, arrow_type: pa.DataType, common: dict) -> Column:
    shape: list[int] = []
    if isinstance(arrow_type, pa.FixedShapeTensorType):
        if arrow_type.permutation not in (None, list(range(len(arrow_type.shape)))):
            return Column(name, None, (), "fixed_shape_tensor with a permutation", **common)
        shape = list(arrow_type.shape)
        arrow_type = arrow_type.value_type
    while pa.types.is_fixed_size_list(arrow_type):
        shape.append(arrow_type.list_size)
        arrow_type = arrow_type.value_type
    dtype = _value_dtype(arrow_type)
    if dtype is None:
        return Column(name, None, tuple(shape),
                      f"Arrow type {common['source_type']} is not a fixed-size numeric tensor",
                      **common)
    column = numpy_column(name, dtype, tuple(shape))
    return Column(column.name, column.dtype, column.shape, column.unsupported, **common)


def pandas_index(schema: pa.Schema) -> dict[str, str]:
    """Columns that hold a pandas index pandas wrote without a name: left out
    (a named index is an ordinary column), each with why."""
    metadata = (schema.metadata or {}).get(b"pandas")
    names = set(schema.names)
    left_out = {}
    if metadata:
        try:
            index = json.loads(metadata).get("index_columns", [])
        except ValueError:
            index = []
        for column in index:
            if isinstance(column, str) and column.startswith("__index_level_") \
                    and column in names:
                left_out[column] = "pandas' unnamed index"
    if schema.names and schema.names[0] in ("", "Unnamed: 0"):  # df.to_csv() wrote it
        left_out[schema.names[0]] = "an unnamed first column (pandas' index, from to_csv)"
    return left_out


def huggingface_classes(schema: pa.Schema) -> tuple[str, list[str]]:
    """(column, class names) of a Hugging Face ClassLabel feature, from the
    `huggingface` metadata `datasets` writes; ("", []) when there is none."""
    metadata = (schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(metadata)["info"]["features"] if metadata else {}
    except (ValueError, KeyError, TypeError):
        return "", []
    for column, feature in features.items() if isinstance(features, dict) else ():
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and \
                isinstance(feature.get("names"), list):
            return column, [str(name) for name in feature["names"]]
    return "", []


def describe_schema(schema: pa.Schema, row_bytes: Mapping[str, float] | None = None,
                    nulls: Mapping[str, int] | None = None) -> dict[str, Column]:
    """The columns of `schema` but a pandas index; `row_bytes` (bytes a row,
    by top-level column) sizes the shards of variable-length ones, `nulls`
    (by the dotted path a column reads; -1 where not counted) says which
    hold nulls."""
    left_out = pandas_index(schema)
    columns = {}
    for field in schema:
        if field.name in left_out:
            continue
        children = describe(field)
        size = (row_bytes or {}).get(field.name)
        for column in children:
            if size is not None and column.variable:
                column = replace(column, mean_row_bytes=max(1, round(size / len(children))))
            count = (nulls or {}).get(".".join(column.path), 0)
            columns[column.name] = replace(column, nulls=count) if count else column
    return columns
