"""The parsed filter: a tree of Expr nodes, printed in canonical form."""

from __future__ import annotations

import re

from tether.wire.errors import RequestError

MAX_TEXT = 10_000
MAX_DEPTH = 100
MAX_LIST = 10_000
# Operations (names, literals, operators) in one filter: each is paid on every
# row, so this bounds a filter's cost to a constant times the rows. A real
# filter has tens; `x*x*x*...` under MAX_TEXT had thousands (32 s of CPU).
MAX_NODES = 256
MOD_LEFT_USES, MOD_RIGHT_USES = 8, 10  # times '%' evaluates each side (arrow.py)


class FilterError(RequestError):
    """The filter text is malformed, names unknown columns, or mixes types."""


# ---------------------------------------------------------------- the tree

# Binding strength of each form, used by the parser and to print minimal parentheses.
_OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _UNARY, _ATOM = range(1, 9)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Expr:
    """A parsed filter. Equal (and hashing alike) when their canonical `text` is equal."""

    __slots__ = ("pos", "depth", "nodes", "columns", "text", "source", "children")
    prec = _ATOM

    def _finish(self, pos: int, children: tuple[Expr, ...] = ()) -> None:
        self.children = children
        self.pos = pos  # 1-based column in the source, for error messages
        self.depth = 1 + max((c.depth for c in self.children), default=0)
        self.nodes = self._operations()
        self.columns = frozenset().union(*(c.columns for c in self.children))
        self.text = self._render()
        self.source = ""  # set on the root by parse()

    def _render(self) -> str:
        raise NotImplementedError

    def _operations(self) -> int:
        """Operations evaluating it takes: itself and its children's."""
        return 1 + sum(c.nodes for c in self.children)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.text == self.text  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.text))

    def __repr__(self) -> str:
        return f"<filter {self.text}>"


def _wrap(child: Expr, at_least: int) -> str:
    return child.text if child.prec >= at_least else f"({child.text})"


def _quote(value: str, mark: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(mark, "\\" + mark)
    return mark + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + mark


class Column(Expr):
    __slots__ = ("name",)

    def __init__(self, name: str, pos: int):
        self.name = name
        Expr._finish(self, pos)
        self.columns = frozenset([name])

    def _render(self) -> str:
        plain = _NAME.match(self.name) and self.name.lower() not in _KEYWORDS
        return self.name if plain else _quote(self.name, "`")


class Literal(Expr):
    __slots__ = ("value",)

    def __init__(self, value: bool | int | float | str, pos: int):
        self.value = value
        Expr._finish(self, pos)

    @property
    def prec(self) -> int:  # type: ignore[override]
        # A negative number prints as '-3', which binds like unary minus.
        return (
            _UNARY if _kind_of_value(self.value) in ("int", "float") and self.value < 0 else _ATOM
        )

    def _render(self) -> str:
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, str):
            return _quote(self.value, "'")
        return repr(self.value)


class Unary(Expr):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Expr, pos: int):
        self.op, self.operand = op, operand
        Expr._finish(self, pos, (operand,))

    @property
    def prec(self) -> int:  # type: ignore[override]
        return _NOT if self.op == "not" else _UNARY

    def _render(self) -> str:
        if self.op == "not":
            return "not " + _wrap(self.operand, _NOT)
        return "-" + _wrap(self.operand, _UNARY)


_ARITH = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "%": _PRODUCT}
_COMPARE = ("==", "!=", "<", "<=", ">", ">=")


class Binary(Expr):
    __slots__ = ("op", "left", "right")

    def __init__(self, op: str, left: Expr, right: Expr, pos: int):
        self.op, self.left, self.right = op, left, right
        Expr._finish(self, pos, (left, right))

    @property
    def prec(self) -> int:  # type: ignore[override]
        return _ARITH.get(self.op, _CMP)

    def _operations(self) -> int:
        # '%' is built from pyarrow kernels that use each side several times
        # (arrow.py), and pyarrow does not share them: counted as evaluated, or
        # `x % 7 % 7 % 7 % 7 % 7` (13 nodes) would cost 8 s a block.
        if self.op == "%":
            return 1 + MOD_LEFT_USES * self.left.nodes + MOD_RIGHT_USES * self.right.nodes
        return super()._operations()

    def _render(self) -> str:
        p = self.prec
        # Left-associative: parentheses on the right are kept, since (a + b) + c and
        # a + (b + c) can differ in float rounding and overflow.
        return f"{_wrap(self.left, p if p != _CMP else p + 1)} {self.op} {_wrap(self.right, p + 1)}"


class BoolOp(Expr):
    """`and` / `or` over any number of operands: flat, so long chains do not nest deep."""

    __slots__ = ("op", "operands")

    def __init__(self, op: str, operands: tuple[Expr, ...], pos: int):
        self.op, self.operands = op, operands
        Expr._finish(self, pos, operands)

    @property
    def prec(self) -> int:  # type: ignore[override]
        return _AND if self.op == "and" else _OR

    @classmethod
    def of(cls, op: str, left: Expr, right: Expr, pos: int) -> BoolOp:
        # (a or b) or c and a or (b or c) mean the same under Kleene logic: one text.
        parts: list[Expr] = []
        for side in (left, right):
            parts.extend(side.operands if isinstance(side, BoolOp) and side.op == op else [side])
        return cls(op, tuple(parts), pos)

    def _render(self) -> str:
        return f" {self.op} ".join(_wrap(o, self.prec + 1) for o in self.operands)


class InList(Expr):
    __slots__ = ("operand", "values", "negated")
    prec = _CMP

    def __init__(self, operand: Expr, values: tuple, negated: bool, pos: int):
        self.operand, self.values, self.negated = operand, values, negated
        Expr._finish(self, pos, (operand,))

    def _render(self) -> str:
        items = ", ".join(Literal(v, 0).text for v in self.values)
        return f"{_wrap(self.operand, _SUM)} {'not in' if self.negated else 'in'} ({items})"


class IsNull(Expr):
    __slots__ = ("operand", "negated")
    prec = _CMP

    def __init__(self, operand: Expr, negated: bool, pos: int):
        self.operand, self.negated = operand, negated
        Expr._finish(self, pos, (operand,))

    def _render(self) -> str:
        return f"{_wrap(self.operand, _SUM)} is {'not null' if self.negated else 'null'}"


def _error(source: str, pos: int, message: str) -> FilterError:
    """'filter: at position P: message' plus the text with a caret under position P."""
    flat = re.sub(r"[\r\n\t]", " ", source)
    start = max(0, pos - 1 - 60)
    end = min(len(flat), start + 120)
    shown = ("..." if start else "") + flat[start:end] + ("..." if end < len(flat) else "")
    caret = " " * (pos - 1 - start + (3 if start else 0)) + "^"
    return FilterError(f"filter: at position {pos}: {message}\n  {shown}\n  {caret}")


def _kind_of_value(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "str"}.get(type(value), "other")
