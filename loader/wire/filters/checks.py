"""Names and types: a filter reads columns that exist, and compares like with like."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .tree import (
    _ARITH,
    Binary,
    BoolOp,
    Column,
    Expr,
    FilterError,
    InList,
    IsNull,
    Literal,
    Unary,
    _error,
    _kind_of_value,
)

# ---------------------------------------------------------------- types

_NUMERIC = ("int", "float")




def _kind_of_type(type_name: str | None) -> str:
    """'int64' -> 'int' ...; 'any' for an unknown or untyped column, 'other' for the rest."""
    name = str(type_name or "").strip().lower()
    if name.startswith("dictionary<values="):
        name = name[len("dictionary<values=") :].split(",")[0]
    if not name:
        return "any"
    if re.fullmatch(r"u?int(8|16|32|64)", name):
        return "int"
    if name in ("float", "double", "halffloat", "float16", "float32", "float64"):
        return "float"
    if name in ("string", "large_string", "utf8", "large_utf8", "string_view", "str"):
        return "str"
    if name in ("bool", "boolean"):
        return "bool"
    return "any" if name in ("null", "any") else "other"


_KIND_WORDS = {"int": "a number", "float": "a number", "str": "a string", "bool": "a condition"}


def _describe(node: Expr, kind: str, types: Mapping[str, Any]) -> str:
    if isinstance(node, Column):
        return f"column '{node.name}' ({types.get(node.name)})"
    if isinstance(node, Literal):
        noun = "number" if kind in _NUMERIC else "string" if kind == "str" else "value"
        return f"the {noun} {node.text}"
    return f"'{node.text}' ({_KIND_WORDS.get(kind, kind)})"


def _kind(node: Expr, types: Mapping[str, Any], root: Expr) -> str:
    """The value kind of `node`, raising a FilterError where operand types cannot work."""

    def fail(message: str) -> FilterError:
        return (
            _error(root.source, node.pos, message)
            if root.source
            else FilterError("filter: " + message)
        )

    def operand(child: Expr, wanted: tuple[str, ...], role: str) -> str:
        k = _kind(child, types, root)
        if k != "any" and k not in wanted:
            raise fail(
                f"{role} needs {_KIND_WORDS[wanted[0]]}, but {_describe(child, k, types)} is not"
            )
        return k

    if isinstance(node, Column):
        return _kind_of_type(types.get(node.name))
    if isinstance(node, Literal):
        return _kind_of_value(node.value)
    if isinstance(node, IsNull):
        _kind(node.operand, types, root)
        return "bool"
    if isinstance(node, BoolOp | Unary) and node.op in ("and", "or", "not"):
        for child in node.children:
            operand(child, ("bool",), f"'{node.op}'")
        return "bool"
    if isinstance(node, Unary):
        return operand(node.operand, _NUMERIC, "unary '-'")
    if isinstance(node, InList):
        k = _kind(node.operand, types, root)
        for value in node.values:
            vk = _kind_of_value(value)
            if not _comparable(k, vk):
                raise fail(
                    f"'in' compares {_describe(node.operand, k, types)} with "
                    f"{_describe(Literal(value, 0), vk, types)}; list values of the same type"
                )
        return "bool"
    assert isinstance(node, Binary)
    if node.op in _ARITH:
        left = operand(node.left, _NUMERIC, f"'{node.op}'")
        right = operand(node.right, _NUMERIC, f"'{node.op}'")
        if node.op == "/" or "float" in (left, right):
            return "float"
        return "int" if left == right == "int" else "any"
    left, right = _kind(node.left, types, root), _kind(node.right, types, root)
    if not _comparable(left, right):
        raise fail(
            f"'{node.op}' compares {_describe(node.left, left, types)} with "
            f"{_describe(node.right, right, types)}; compare numbers with numbers, "
            "strings with 'quoted strings', bools with true/false"
        )
    return "bool"


def _comparable(a: str, b: str) -> bool:
    if "any" in (a, b):
        return True
    if "other" in (a, b):
        return False
    return a == b or (a in _NUMERIC and b in _NUMERIC)


def check_columns(expr: Expr, available: Mapping[str, Any]) -> None:
    """FilterError if `expr` reads a column not in `available`, or mixes types.

    `available` maps column name -> type name ("int64", "double", "string", "bool", a pyarrow
    DataType, or None where unknown: such columns are not type-checked).

    >>> check_columns(parse("lable > 3"), {"label": "int64", "score": "double", "text": "string"})
    Traceback (most recent call last):
    tether.wire.filters.FilterError: filter: no column 'lable'; columns: label, score, text
    """
    missing = sorted(expr.columns - set(available))
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        listed = ", ".join(available) or "(none)"
        raise FilterError(
            f"filter: no column{'s' if len(missing) > 1 else ''} {names}; columns: {listed}"
        )
    kind = _kind(expr, available, expr)
    if kind not in ("bool", "any"):
        raise FilterError(
            f"filter: '{expr.text}' is {_KIND_WORDS.get(kind, kind)}, not a condition; "
            f"compare it, e.g. '{expr.text} > 0'"
        )
