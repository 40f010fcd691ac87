"""Tree to pyarrow.compute, and evaluation over a table."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

from .checks import check_columns
from .tree import (
    _COMPARE,
    Binary,
    BoolOp,
    Column,
    Expr,
    FilterError,
    InList,
    IsNull,
    Literal,
    Unary,
    _kind_of_value,
)

# ---------------------------------------------------------------- arrow


def to_arrow(expr: Expr) -> pc.Expression:
    """The filter as a `pyarrow.compute.Expression`, e.g. for `dataset.to_table(filter=...)`.

    It does not check types: call `check_columns` with the schema's types first.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def build(node: Expr) -> pc.Expression:
        if isinstance(node, Column):
            return pc.field(node.name)
        if isinstance(node, Literal):
            if _kind_of_value(node.value) == "int" and not -(2**63) <= node.value < 2**63:
                raise FilterError(f"filter: the number {node.value} does not fit in 64 bits")
            return pc.scalar(node.value)
        if isinstance(node, Unary):
            inner = build(node.operand)
            return pc.invert(inner) if node.op == "not" else pc.negate_checked(inner)
        if isinstance(node, BoolOp):
            return _balanced([build(o) for o in node.operands], node.op)
        if isinstance(node, IsNull):
            test = pc.is_null(build(node.operand), nan_is_null=True)
            return pc.invert(test) if node.negated else test
        if isinstance(node, InList):
            x = build(node.operand)
            # is_in says false for a null; SQL (and `x == 1 or x == 2`) says null.
            found = pc.if_else(
                pc.is_valid(x),
                pc.is_in(x, value_set=pa.array(node.values)),
                pa.scalar(None, pa.bool_()),
            )
            return pc.invert(found) if node.negated else found
        assert isinstance(node, Binary)
        left, right = build(node.left), build(node.right)
        return _binary(node.op, left, right)

    return build(expr)


def _balanced(parts: list, op: str) -> pc.Expression:
    import pyarrow.compute as pc

    join = pc.and_kleene if op == "and" else pc.or_kleene
    while len(parts) > 1:  # pairwise, so 2,000 alternatives make a tree 11 deep, not 2,000
        paired = [join(parts[k], parts[k + 1]) for k in range(0, len(parts) - 1, 2)]
        parts = paired + parts[len(parts) - len(parts) % 2 :]
    return parts[0]


def _binary(op: str, left: pc.Expression, right: pc.Expression) -> pc.Expression:
    import pyarrow as pa
    import pyarrow.compute as pc

    if op in _COMPARE:
        names = {
            "==": "equal",
            "!=": "not_equal",
            "<": "less",
            "<=": "less_equal",
            ">": "greater",
            ">=": "greater_equal",
        }
        return getattr(pc, names[op])(left, right)
    if op == "+":
        return pc.add_checked(left, right)
    if op == "-":
        return pc.subtract_checked(left, right)
    if op == "*":
        return pc.multiply_checked(left, right)
    if op == "/":
        return pc.divide(left.cast(pa.float64()), right.cast(pa.float64()))
    # '%': pyarrow 17 has no modulo. r = a - b * trunc(a / b), then moved to the divisor's
    # sign as Python does; b == 0 divides by 1 to keep the kernel quiet and answers null.
    zero = pc.equal(right, pc.scalar(0))
    b = pc.if_else(zero, pc.scalar(1), right)
    r = pc.subtract(left, pc.multiply(b, pc.trunc(pc.divide(left, b))))
    wrong_sign = pc.and_kleene(
        pc.not_equal(r, pc.scalar(0)),
        pc.not_equal(pc.less(r, pc.scalar(0)), pc.less(b, pc.scalar(0))),
    )
    r = pc.if_else(wrong_sign, pc.add(r, b), r)
    return pc.if_else(zero, pa.scalar(None, pa.float64()), r)


def _hint(arrow_message: str) -> str:
    if "not in range: -" in arrow_message:
        # pyarrow refuses to round a large int64 into a float, even to compare.
        return "; large integers cannot meet a float exactly: compare with an integer"
    if "overflow" in arrow_message.lower():
        return "; the integer arithmetic overflowed 64 bits: write a float (x * 1.0 * y)"
    return ""


def evaluate(expr: Expr, table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """A numpy bool array, one per row: True where `expr` is TRUE (null counts as False).

    >>> evaluate(parse("x > 1"), pa.table({"x": [1, 2, None]}))
    array([False,  True, False])
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    check_columns(expr, {f.name: str(f.type) for f in table.schema})
    try:
        projected = ds.dataset(table).to_table(columns={"_match": to_arrow(expr)})
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        first = str(exc).splitlines()[0]
        raise FilterError(
            f"filter: cannot evaluate '{expr.text}' on this data: {first}{_hint(first)}"
        ) from exc
    mask = projected.column(0).fill_null(False)
    return mask.to_numpy().astype(bool, copy=False)
