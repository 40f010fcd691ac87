"""Text to tree: a tokenizer and a precedence-climbing parser (never eval)."""

from __future__ import annotations

import re
from typing import Any

from .checks import _NUMERIC
from .tree import (
    _AND,
    _ARITH,
    _CMP,
    _COMPARE,
    _KEYWORDS,
    _NOT,
    _OR,
    _SUM,
    _UNARY,
    MAX_DEPTH,
    MAX_LIST,
    MAX_NODES,
    MAX_TEXT,
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

# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<>|<=|>=|[<>=+\-*/%(),])
      | (?P<quote>['"`])""",
    re.VERBOSE,
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "`": "`", "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
# What people type from other languages, and what to write instead.
_HINTS = {"&": "'and'", "|": "'or'", "!": "'not' (or '!=')", "~": "'not'", "[": "'(' for lists"}


class _Token:
    __slots__ = ("kind", "value", "pos", "raw")

    def __init__(self, kind: str, value: Any, pos: int, raw: str):
        self.kind, self.value, self.pos, self.raw = kind, value, pos, raw

    def describe(self) -> str:
        return "end of input" if self.kind == "end" else f"'{self.raw}'"

    def is_kw(self, *words: str) -> bool:
        return self.kind == "kw" and self.value in words


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(source):
        m = _TOKEN.match(source, i)
        if m is None:
            ch = source[i]
            hint = f"; use {_HINTS[ch]}" if ch in _HINTS else ""
            raise _error(source, i + 1, f"unexpected character {ch!r}{hint}")
        kind, raw, pos = m.lastgroup, m.group(), i + 1
        if kind == "quote":
            value, i = _read_quoted(source, i)
            tokens.append(
                _Token("column" if raw == "`" else "str", value, pos, source[pos - 1 : i])
            )
            continue
        i = m.end()
        if kind == "number":
            if i < len(source) and (source[i].isalnum() or source[i] == "_"):
                raise _error(
                    source, i + 1, f"unexpected {source[i]!r} right after the number {raw}"
                )
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
            if value == float("inf"):
                raise _error(source, pos, f"the number {raw} is too large for a float")
            tokens.append(_Token("num", value, pos, raw))
        elif kind == "name":
            low = raw.lower()
            tokens.append(
                _Token("kw", low, pos, raw) if low in _KEYWORDS else _Token("column", raw, pos, raw)
            )
        elif kind == "op":
            tokens.append(_Token("op", {"=": "==", "<>": "!="}.get(raw, raw), pos, raw))
    # End of input sits right after the last token, so the caret does not float in blanks.
    tokens.append(_Token("end", None, len(source.rstrip()) + 1, ""))
    return tokens


def _read_quoted(source: str, i: int) -> tuple[str, int]:
    """The text between the quote at `i` and its match, escapes resolved; and the index after."""
    mark, out, j = source[i], [], i + 1
    what = "column name" if mark == "`" else "string"
    while j < len(source):
        ch = source[j]
        if ch == mark:
            return "".join(out), j + 1
        if ch == "\\":
            nxt = source[j + 1 : j + 2]
            if nxt not in _ESCAPES:
                raise _error(
                    source,
                    j + 1,
                    f"unknown escape '\\{nxt}' in a {what}; write '\\\\' for a backslash",
                )
            out.append(_ESCAPES[nxt])
            j += 2
            continue
        out.append(ch)
        j += 1
    raise _error(source, i + 1, f"unclosed {what} starting here; end it with {mark}")


# ---------------------------------------------------------------- parser


def parse(text: str) -> Expr:
    """Parse a filter; FilterError says where it is wrong and what was expected.

    >>> parse("label>=3 AND score < .5").text
    'label >= 3 and score < 0.5'
    """
    if not isinstance(text, str):
        raise FilterError(
            f"filter: expected a string such as 'label >= 3', got {type(text).__name__}"
        )
    if len(text) > MAX_TEXT:
        raise FilterError(
            f"filter: the text is {len(text):,} characters; the limit is {MAX_TEXT:,} "
            "(a long list of alternatives is shorter as 'x in (1, 2, ...)')"
        )
    if not text.strip():
        raise _error(text, 1, "the filter is empty; write a condition such as 'label >= 3'")
    expr = _Parser(text).parse()
    if expr.nodes > MAX_NODES:
        raise FilterError(
            f"filter: {expr.nodes:,} operations; the limit is {MAX_NODES} (each is paid on "
            "every row): x == 1 or x == 2 or ... is x in (1, 2, ...); else simplify it, or "
            "compute the value once in a column (--transform)")
    expr.source = text
    return expr


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.nesting = 0  # parentheses and prefix operators open now, bounds the recursion

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _fail(self, tok: _Token, message: str) -> FilterError:
        return _error(self.source, tok.pos, message)

    def _checked(self, node: Expr) -> Expr:
        if node.depth > MAX_DEPTH:
            raise _error(self.source, node.pos, self._too_deep())
        return node

    def _too_deep(self) -> str:
        return (
            f"the filter nests deeper than {MAX_DEPTH} levels; simplify it "
            "(x == 1 or x == 2 or ... is better written x in (1, 2, ...))"
        )

    def parse(self) -> Expr:
        expr = self._expr(_OR)
        if self.tok.kind != "end":
            prev = self.tokens[self.i - 1]
            raise self._fail(
                self.tok,
                f"expected an operator (and, or, ==, <, +, in, is, ...) or the end after "
                f"'{prev.raw}', got {self.tok.describe()}",
            )
        return expr

    def _infix(self) -> tuple[str, int] | None:
        tok = self.tok
        if tok.kind == "op" and tok.value in _ARITH:
            return tok.value, _ARITH[tok.value]
        if tok.kind == "op" and tok.value in _COMPARE:
            return tok.value, _CMP
        if tok.is_kw("and", "or"):
            return tok.value, _AND if tok.value == "and" else _OR
        if tok.is_kw("in", "is") or (tok.is_kw("not") and self.tokens[self.i + 1].is_kw("in")):
            return tok.value, _CMP
        return None

    def _expr(self, min_prec: int) -> Expr:
        """Precedence climbing: an operand, then every infix operator binding at least min_prec."""
        left = self._prefix(min_prec)
        compared = False
        while (infix := self._infix()) is not None and infix[1] >= min_prec:
            op, prec = infix
            tok = self._advance()
            if prec == _CMP:
                if compared:
                    raise self._fail(
                        tok,
                        f"comparisons do not chain; write 'a < b and b < c' instead of "
                        f"a second '{tok.raw}' here",
                    )
                compared = True
                left = self._comparison(op, left, tok)
            elif op in ("and", "or"):
                compared = False
                left = self._checked(BoolOp.of(op, left, self._expr(prec + 1), tok.pos))
            else:
                compared = False
                left = self._checked(Binary(op, left, self._expr(prec + 1), tok.pos))
        return left

    def _comparison(self, op: str, left: Expr, tok: _Token) -> Expr:
        if op == "is":
            negated = self.tok.is_kw("not")
            if negated:
                self._advance()
            if not self.tok.is_kw("null"):
                after = "'is not'" if negated else "'is'"
                raise self._fail(
                    self.tok,
                    f"expected 'null' after {after} (as in x is null, x is not null), "
                    f"got {self.tok.describe()}; compare values with == or !=",
                )
            self._advance()
            return self._checked(IsNull(left, negated, tok.pos))
        if op in ("in", "not"):
            if op == "not":
                self._advance()  # the 'in' of 'not in'
            return self._checked(InList(left, self._literal_list(), op == "not", tok.pos))
        return self._checked(Binary(op, left, self._expr(_SUM), tok.pos))

    def _literal_list(self) -> tuple:
        opener = self.tokens[self.i - 1]
        if not (self.tok.kind == "op" and self.tok.value == "("):
            raise self._fail(
                self.tok,
                f"expected '(' after '{opener.raw}', as in x in (1, 2, 3), "
                f"got {self.tok.describe()}",
            )
        paren = self._advance()
        values = []
        while True:
            values.append(self._list_item())
            if len(values) > MAX_LIST:
                raise self._fail(self.tok, f"the list has more than {MAX_LIST:,} items")
            if self.tok.kind == "op" and self.tok.value == ",":
                self._advance()
                continue
            if self.tok.kind == "op" and self.tok.value == ")":
                self._advance()
                kinds = {
                    "number" if _kind_of_value(v) in _NUMERIC else _kind_of_value(v) for v in values
                }
                if len(kinds) > 1:
                    raise _error(
                        self.source,
                        paren.pos,
                        "the list mixes "
                        + " and ".join(sorted(k.replace("str", "string") + "s" for k in kinds))
                        + "; list values of one type",
                    )
                return tuple(values)
            raise self._fail(
                self.tok,
                f"expected ',' or ')' to close the list opened at position "
                f"{paren.pos}, got {self.tok.describe()}",
            )

    def _list_item(self) -> bool | int | float | str:
        tok = self._advance()
        if tok.kind == "op" and tok.value == "-" and self.tok.kind == "num":
            return -self._advance().value
        if tok.kind in ("num", "str"):
            return tok.value
        if tok.is_kw("true", "false"):
            return tok.value == "true"
        if tok.is_kw("null"):
            raise self._fail(tok, "null never matches in a list; add 'or x is null' instead")
        raise self._fail(
            tok,
            f"expected a literal in the list (a number, a 'string', true or false), "
            f"got {tok.describe()}; lists hold literals only",
        )

    def _prefix(self, min_prec: int) -> Expr:
        tok = self.tok
        if tok.kind == "op" and tok.value in ("(", "-") or tok.is_kw("not"):
            if tok.is_kw("not") and min_prec > _NOT:
                raise self._fail(tok, "put 'not ...' in parentheses here, e.g. a == (not b)")
            self.nesting += 1
            if self.nesting > MAX_DEPTH:
                raise self._fail(tok, self._too_deep())
            self._advance()
            if tok.value == "(":
                inner = self._expr(_OR)
                if not (self.tok.kind == "op" and self.tok.value == ")"):
                    raise self._fail(
                        self.tok,
                        f"expected ')' to close the '(' at position {tok.pos}, "
                        f"got {self.tok.describe()}",
                    )
                self._advance()
                node = inner
            elif tok.value == "-":
                operand = self._expr(_UNARY)
                if isinstance(operand, Literal) and _kind_of_value(operand.value) in (
                    "int",
                    "float",
                ):
                    node = Literal(-operand.value, tok.pos)  # so '-3' is one literal, '- 3' too
                else:
                    node = self._checked(Unary("-", operand, tok.pos))
            else:
                node = self._checked(Unary("not", self._expr(_NOT), tok.pos))
            self.nesting -= 1
            return node
        self._advance()
        if tok.kind == "num" or tok.kind == "str":
            return Literal(tok.value, tok.pos)
        if tok.is_kw("true", "false"):
            return Literal(tok.value == "true", tok.pos)
        if tok.kind == "column":
            return Column(tok.value, tok.pos)
        if tok.is_kw("null"):
            raise self._fail(tok, "null compares as unknown and selects nothing; write 'x is null'")
        where = "" if self.i == 1 else f" after '{self.tokens[self.i - 2].raw}'"
        raise self._fail(
            tok,
            f"expected a value{where} (a number, a 'string', a column name or '('), "
            f"got {tok.describe()}",
        )
