"""The filter language: parsing, error positions, limits, and evaluation against pyarrow.

The claim (tether.wire.filters' docstring) is SQL / pyarrow three-valued semantics, so every
evaluation is compared with a mask built by hand from pyarrow.compute kernels; where SQL and
pandas agree (no null under '!=', 'not' or 'not in'), with pandas' boolean indexing too.
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.wire import filters
from tether.wire.errors import RequestError
from tether.wire.filters import (
    Binary,
    BoolOp,
    Column,
    FilterError,
    InList,
    IsNull,
    Literal,
    Unary,
    check_columns,
    evaluate,
    parse,
    to_arrow,
)

# ---------------------------------------------------------------- parsing


def test_precedence_builds_the_expected_tree():
    e = parse("a + b * c > 2 or not d and e")
    assert isinstance(e, BoolOp) and e.op == "or"
    cmp, conj = e.operands
    assert isinstance(cmp, Binary) and cmp.op == ">" and cmp.right == Literal(2, 0)
    total = cmp.left
    assert total.op == "+" and total.left == Column("a", 0)
    assert total.right.op == "*" and total.right.left == Column("b", 0)
    assert isinstance(conj, BoolOp) and conj.op == "and"
    neg, last = conj.operands
    assert isinstance(neg, Unary) and neg.op == "not" and neg.operand == Column("d", 0)
    assert last == Column("e", 0)
    assert e.columns == frozenset("abcde")


@pytest.mark.parametrize(
    "text, left_op, right_op",
    [
        ("a - b - c > 0", "-", None),  # left-associative: (a - b) - c
        ("a * b % c > 0", "%", None),
        ("-a * b > 0", "*", None),  # unary minus binds tighter than *
        ("a + b * c > 0", "+", "*"),
        ("(a + b) * c > 0", "*", None),
    ],
)
def test_arithmetic_precedence(text, left_op, right_op):
    top = parse(text).left
    assert top.op == left_op
    assert getattr(top.right, "op", None) == right_op


def test_not_binds_looser_than_comparison_and_tighter_than_and():
    e = parse("not a == 1 and b")
    assert e.op == "and"
    assert e.operands[0].op == "not" and e.operands[0].operand.op == "=="


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("label>=3 AND score<.5", "label >= 3 and score < 0.5"),
        ("label >= 3  and\n score < 0.5", "label >= 3 and score < 0.5"),
        ("x = 1", "x == 1"),
        ("x <> 1", "x != 1"),
        ('s == "it\'s"', "s == 'it\\'s'"),
        ("s == 'a\\nb'", "s == 'a\\nb'"),
        ("b == True OR b == FALSE", "b == true or b == false"),
        ("x IS NOT NULL", "x is not null"),
        ("x Not In (1, -2, 3.5)", "x not in (1, -2, 3.5)"),
        ("`odd name` > 1", "`odd name` > 1"),
        ("`plain` > 1", "plain > 1"),
        ("`and` > 1", "`and` > 1"),  # a keyword as a name stays quoted
        ("x > 1e-3", "x > 0.001"),
        ("x > 5.", "x > 5.0"),
        ("x > -2.5", "x > -2.5"),
        ("x > - 3", "x > -3"),
        ("- -3 < x", "3 < x"),
        ("(a or b) or c", "a or b or c"),
        ("a or (b or c)", "a or b or c"),
        ("(a and b) or c", "a and b or c"),
        ("a and (b or c)", "a and (b or c)"),
        ("a - (b - c) > 0", "a - (b - c) > 0"),
        ("((x)) > (1)", "x > 1"),
        ("not (a and b)", "not (a and b)"),
        ("-(a + b) > 1", "-(a + b) > 1"),
        ("(a > 1) == b", "(a > 1) == b"),
    ],
)
def test_canonical_text(text, canonical):
    e = parse(text)
    assert e.text == canonical
    assert parse(canonical) == e and hash(parse(canonical)) == hash(e)


def test_literals_and_escapes():
    assert parse("x == 'a\\'b\\\\c\\t'").right.value == "a'b\\c\t"
    assert parse('x == "say \\"hi\\""').right.value == 'say "hi"'
    assert parse("x == 3").right.value == 3 and isinstance(parse("x == 3").right.value, int)
    assert parse("x == 3.0").right.value == 3.0 and isinstance(parse("x == 3.0").right.value, float)
    assert parse("x == -9223372036854775808").right.value == -(2**63)
    assert parse("x == tRuE").right.value is True
    assert parse("`a \\` b` > 1").columns == {"a ` b"}
    assert parse("`with space` > 1").columns == {"with space"}
    assert parse("a and `b c` or not d").columns == {"a", "b c", "d"}


@pytest.mark.parametrize(
    "text, position, fragment",
    [
        (
            "label >= ",
            9,
            "expected a value after '>=' (a number, a 'string', a column name or '(')",
        ),
        ("", 1, "the filter is empty"),
        ("   ", 1, "the filter is empty"),
        ("a >", 4, "expected a value after '>'"),
        ("a > 1 and", 10, "expected a value after 'and'"),
        ("* a", 1, "expected a value (a number"),
        ("(a > 1", 7, "expected ')' to close the '(' at position 1, got end of input"),
        ("((a > 1) and b", 15, "expected ')' to close the '(' at position 1"),
        ("a > 1)", 6, "expected an operator"),
        ("s == 'abc", 6, "unclosed string starting here; end it with '"),
        ("`abc > 1", 1, "unclosed column name"),
        ("a > 1 & b", 7, "unexpected character '&'; use 'and'"),
        ("a > 1 || b", 7, "use 'or'"),
        ("!a", 1, "use 'not'"),
        ("a > 1 $", 7, "unexpected character '$'"),
        ("x in 3", 6, "expected '(' after 'in', as in x in (1, 2, 3), got '3'"),
        ("x not in y", 10, "expected '(' after 'in'"),
        ("x in (1, y)", 10, "lists hold literals only"),
        ("x in (1, 2", 11, "expected ',' or ')' to close the list opened at position 6"),
        ("x in ()", 7, "expected a literal in the list"),
        ("x in (1, null)", 10, "null never matches in a list"),
        ("x in (1, 'a')", 6, "the list mixes numbers and strings"),
        (
            "label 3",
            7,
            "expected an operator (and, or, ==, <, +, in, is, ...) or the end after "
            "'label', got '3'",
        ),
        ("a b", 3, "after 'a', got 'b'"),
        ("a < b < c", 7, "comparisons do not chain"),
        ("a == b in (1)", 8, "comparisons do not chain"),
        ("x == null", 6, "write 'x is null'"),
        ("x is 3", 6, "expected 'null' after 'is'"),
        ("x is not 3", 10, "expected 'null' after 'is not'"),
        ("a == not b", 6, "put 'not ...' in parentheses"),
        ("3abc > 1", 2, "right after the number 3"),
        ("x == 'a\\q'", 8, "unknown escape '\\q'"),
        ("x > 1e999", 5, "too large"),
        ("a not b", 3, "expected an operator"),
    ],
)
def test_errors_point_at_the_position(text, position, fragment):
    with pytest.raises(FilterError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith(f"filter: at position {position}: "), message
    assert fragment in message, message
    # The caret line points at the same column under the echoed text.
    lines = message.split("\n")
    assert lines[1] == "  " + text and lines[2] == "  " + " " * (position - 1) + "^"


def test_the_brief_example_message_exactly():
    with pytest.raises(FilterError) as info:
        parse("label >= ")
    assert str(info.value) == (
        "filter: at position 9: expected a value after '>=' (a number, a 'string', "
        "a column name or '('), got end of input\n  label >= \n          ^"
    )


def test_filter_error_is_a_request_error():
    assert issubclass(FilterError, RequestError)
    with pytest.raises(RequestError):
        parse("(")
    with pytest.raises(FilterError, match="expected a string"):
        parse(3)  # type: ignore[arg-type]


def test_long_text_is_echoed_as_a_window_around_the_caret():
    text = "x == 1 or " * 50 + "x == "
    with pytest.raises(FilterError) as info:
        parse(text)
    _, shown, caret = str(info.value).split("\n")
    assert len(shown) < 140 and shown.startswith("  ...")
    assert caret.index("^") == len(shown.rstrip())  # just after 'x ==' at the end


def test_limits():
    with pytest.raises(FilterError, match="10,001 characters; the limit is 10,000"):
        parse("x" * 10_001)
    parse("(" * 100 + "x" + ")" * 100)  # at the limit
    with pytest.raises(FilterError, match="deeper than 100"):
        parse("(" * 101 + "x" + ")" * 101)
    with pytest.raises(FilterError, match="deeper than 100"):
        parse("not " * 101 + "x")
    with pytest.raises(FilterError, match="deeper than 100"):
        parse("- " * 101 + "x > 1")
    with pytest.raises(FilterError, match="deeper than 100"):
        parse("x" + " + x" * 100 + " > 1")  # a left-leaning chain is deep too
    # and/or chains are flat, so alternatives are not deep (and evaluate) but each
    # is paid on every row: past 256 operations in all, `in` says it cheaper.
    e = parse(" or ".join(f"x == {i}" for i in range(80)))
    assert len(e.operands) == 80
    assert evaluate(e, pa.table({"x": [5, 900, None]})).tolist() == [True, False, False]
    with pytest.raises(FilterError, match=r"2,401 operations; the limit is 256.*x in \("):
        parse(" or ".join(f"x == {i}" for i in range(800)))


def test_list_limit(monkeypatch):
    monkeypatch.setattr(filters.parser, "MAX_TEXT", 1_000_000)
    assert len(parse("x in (" + ",".join(["1"] * 10_000) + ")").values) == 10_000
    with pytest.raises(FilterError, match="more than 10,000 items"):
        parse("x in (" + ",".join(["1"] * 10_001) + ")")


_names = st.sampled_from(["a", "b", "`c d`", "x1"])
_values = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.text("ab'\"\\ ", max_size=4).map(
        lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
    ),
    st.sampled_from(["true", "False"]),
)


def _extend(inner):
    binary = st.tuples(
        inner, st.sampled_from(["+", "-", "*", "/", "%", "==", "<", "and", "OR"]), inner
    )
    return st.one_of(
        binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda s: f"(not {s})"),
        inner.map(lambda s: f"(-{s})"),
        inner.map(lambda s: f"({s} is not null)"),
        inner.map(lambda s: f"({s} in (1, 2))"),
    )


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(_names, _values), _extend, max_leaves=12))
def test_canonical_text_round_trips(text):
    e = parse(text)
    again = parse(e.text)
    assert again == e and again.text == e.text


# ---------------------------------------------------------------- columns and types

_SCHEMA = {"label": "int64", "score": "double", "text": "string", "flag": "bool"}


def test_unknown_column_names_the_available_ones():
    with pytest.raises(FilterError) as info:
        check_columns(parse("lable > 3"), {"label": "int64", "score": "double", "text": "string"})
    assert str(info.value) == "filter: no column 'lable'; columns: label, score, text"
    with pytest.raises(FilterError, match="no columns 'a', 'b'; columns: label"):
        check_columns(parse("a > b"), {"label": "int64"})


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("text > 3", "'>' compares column 'text' (string) with the number 3"),
        ("label == 'a'", "compares column 'label' (int64) with the string 'a'"),
        ("text + 1 > 2", "'+' needs a number, but column 'text' (string) is not"),
        ("-text > 2", "unary '-' needs a number"),
        ("flag * 2 > 1", "'*' needs a number, but column 'flag' (bool)"),
        ("label and flag", "'and' needs a condition, but column 'label' (int64)"),
        ("not score", "'not' needs a condition"),
        ("text in (1, 2)", "'in' compares column 'text' (string) with the number 1"),
        ("flag == 1", "compares column 'flag' (bool) with the number 1"),
        ("label + 1", "'label + 1' is a number, not a condition; compare it, e.g. 'label + 1 > 0'"),
        ("text", "is a string, not a condition"),
    ],
)
def test_type_errors_name_the_column_and_types(text, fragment):
    with pytest.raises(FilterError, match="^filter: ") as info:
        check_columns(parse(text), _SCHEMA)
    assert fragment in str(info.value)


def test_types_that_work():
    for text in [
        "label > 2.5",
        "label / 2 > score",
        "text >= 'm'",
        "flag",
        "flag == true",
        "not flag or label in (1, 2.5)",
        "text is null",
        "score % 2 == 1",
    ]:
        check_columns(parse(text), _SCHEMA)
    # Untyped columns (None) are only checked for existence; pyarrow types are accepted.
    check_columns(parse("x + 1 > 2"), {"x": None})
    check_columns(parse("x > 1 and s == 'a'"), {"x": pa.int32(), "s": pa.large_string()})
    check_columns(parse("d == 'a'"), {"d": pa.dictionary(pa.int32(), pa.string())})
    with pytest.raises(FilterError, match=r"timestamp\[us\]"):
        check_columns(parse("ts > 3"), {"ts": pa.timestamp("us")})
    check_columns(parse("ts is null"), {"ts": pa.timestamp("us")})


# ---------------------------------------------------------------- evaluation


def _table(seed: int, n: int = 400) -> pa.Table:
    rng = np.random.default_rng(seed)

    def nulls(p=0.15):
        return rng.random(n) < p

    floats = rng.normal(0, 2, n).round(2)
    floats[rng.random(n) < 0.1] = np.nan
    strings = rng.choice(["apple", "b", "cherry", "", "Zed", "it's"], n).astype(object)
    return pa.table(
        {
            "i": pa.array(rng.integers(-5, 10, n), mask=nulls()),
            "j": pa.array(rng.integers(-3, 4, n)),  # zeros and negatives, no nulls
            "f": pa.array(floats, mask=nulls()),  # NaN *and* nulls
            "s": pa.array(strings, pa.string(), mask=nulls()),
            "b": pa.array(rng.random(n) < 0.5, mask=nulls()),
            "odd name": pa.array(rng.integers(0, 3, n)),
        }
    )


def _true(mask) -> list[bool]:
    return pc.fill_null(mask, False).to_pylist()


# (filter, pyarrow oracle built by hand, pandas oracle or None where pandas differs)
_NULL = pa.scalar(None, pa.bool_())
CASES = [
    (
        "i >= 3 and f < 0.5",
        lambda t: pc.and_kleene(pc.greater_equal(t["i"], 3), pc.less(t["f"], 0.5)),
        lambda d: (d.i >= 3) & (d.f < 0.5),
    ),
    (
        "i > 2 or f <= -1",
        lambda t: pc.or_kleene(pc.greater(t["i"], 2), pc.less_equal(t["f"], -1)),
        lambda d: (d.i > 2) | (d.f <= -1),
    ),
    ("f > 0", lambda t: pc.greater(t["f"], 0), lambda d: d.f > 0),
    ("f == f", lambda t: pc.equal(t["f"], t["f"]), lambda d: d.f == d.f),  # NaN != NaN
    ("i != 3", lambda t: pc.not_equal(t["i"], 3), None),  # pandas keeps the nulls
    ("f != 1.5", lambda t: pc.not_equal(t["f"], 1.5), None),
    ("s != 'b'", lambda t: pc.not_equal(t["s"], "b"), None),
    (
        "s == 'apple' or s >= 'c'",
        lambda t: pc.or_kleene(pc.equal(t["s"], "apple"), pc.greater_equal(t["s"], "c")),
        lambda d: (d.s == "apple") | (d.s >= "c"),
    ),
    ('s == "it\'s"', lambda t: pc.equal(t["s"], "it's"), lambda d: d.s == "it's"),
    ("s == ''", lambda t: pc.equal(t["s"], ""), lambda d: d.s == ""),
    ("b", lambda t: t["b"], lambda d: d.b == True),  # noqa: E712
    ("not b", lambda t: pc.invert(t["b"]), None),
    ("b and not (i < 0)", lambda t: pc.and_kleene(t["b"], pc.invert(pc.less(t["i"], 0))), None),
    (
        "not (i > 3 and f > 0)",
        lambda t: pc.invert(pc.and_kleene(pc.greater(t["i"], 3), pc.greater(t["f"], 0))),
        None,
    ),
    (
        "i in (1, 2, 7)",
        lambda t: pc.is_in(t["i"], pa.array([1, 2, 7])),
        lambda d: d.i.isin([1, 2, 7]),
    ),
    (
        "s in ('b', 'Zed')",
        lambda t: pc.is_in(t["s"], pa.array(["b", "Zed"])),
        lambda d: d.s.isin(["b", "Zed"]),
    ),
    (
        "i not in (1, 2)",  # SQL: a null is neither in nor not in the list
        lambda t: pc.if_else(
            pc.is_valid(t["i"]), pc.invert(pc.is_in(t["i"], pa.array([1, 2]))), _NULL
        ),
        None,
    ),
    ("i is null", lambda t: pc.is_null(t["i"]), lambda d: d.i.isna()),
    ("f is null", lambda t: pc.is_null(t["f"], nan_is_null=True), lambda d: d.f.isna()),
    (
        "s is not null and f is not null",
        lambda t: pc.and_(pc.is_valid(t["s"]), pc.invert(pc.is_null(t["f"], nan_is_null=True))),
        lambda d: d.s.notna() & d.f.notna(),
    ),
    (
        "i + j * 2 > 3",
        lambda t: pc.greater(pc.add(t["i"], pc.multiply(t["j"], 2)), 3),
        lambda d: d.i + d.j * 2 > 3,
    ),
    (
        "-i - j >= 0",
        lambda t: pc.greater_equal(pc.subtract(pc.negate(t["i"]), t["j"]), 0),
        lambda d: -d.i - d.j >= 0,
    ),
    (
        "i / j > 1",  # true division; j has zeros (inf, nan)
        lambda t: pc.greater(
            pc.divide(pc.cast(t["i"], pa.float64()), pc.cast(t["j"], pa.float64())), 1
        ),
        lambda d: d.i / d.j > 1,
    ),
    (
        "f * 2 - 1 < i / 4",
        lambda t: pc.less(
            pc.subtract(pc.multiply(t["f"], 2), 1), pc.divide(pc.cast(t["i"], pa.float64()), 4.0)
        ),
        lambda d: d.f * 2 - 1 < d.i / 4,
    ),
    (
        "`odd name` == 1 or (i > 5 and s is null)",
        lambda t: pc.or_kleene(
            pc.equal(t["odd name"], 1), pc.and_kleene(pc.greater(t["i"], 5), pc.is_null(t["s"]))
        ),
        lambda d: (d["odd name"] == 1) | ((d.i > 5) & d.s.isna()),
    ),
    ("true", lambda t: pa.array([True] * t.num_rows), lambda d: d.j == d.j),
    ("false or i > 100", lambda t: pa.array([False] * t.num_rows), lambda d: d.i > 100),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("text, arrow_mask, _", CASES, ids=[c[0] for c in CASES])
def test_evaluate_equals_pyarrow(text, arrow_mask, _, seed):
    table = _table(seed)
    got = evaluate(parse(text), table)
    assert got.dtype == np.bool_ and got.shape == (table.num_rows,)
    assert got.tolist() == _true(arrow_mask(table))
    # And the expression pushes down into a dataset scan with the same rows (compared by a
    # row number: Table.equals says NaN != NaN).
    numbered = table.append_column("row", pa.array(np.arange(table.num_rows)))
    scanned = ds.dataset(numbered).to_table(filter=to_arrow(parse(text)), columns=["row"])
    assert scanned.column("row").to_pylist() == np.flatnonzero(got).tolist()


@pytest.mark.parametrize(
    "text, pandas_mask", [(c[0], c[2]) for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]]
)
def test_evaluate_equals_pandas_where_pandas_and_sql_agree(text, pandas_mask):
    pytest.importorskip("pandas")
    for seed in (0, 1, 2):
        table = _table(seed)
        frame = table.to_pandas()
        expected = frame.index[np.asarray(pandas_mask(frame), dtype=bool)].tolist()
        assert np.flatnonzero(evaluate(parse(text), table)).tolist() == expected


def test_the_documented_difference_from_pandas():
    pd = pytest.importorskip("pandas")
    table = pa.table({"x": pa.array([1.0, None, 3.0, float("nan")])})
    frame = table.to_pandas()
    assert frame[frame.x != 3].index.tolist() == [0, 1, 3]  # pandas keeps the missing row
    assert evaluate(parse("x != 3"), table).tolist() == [True, False, False, True]
    assert evaluate(parse("x != 3 or x is null"), table).tolist() == [True, True, False, True]
    assert pd.isna(frame.x[1])


def test_three_valued_logic():
    t = pa.table({"x": pa.array([1, None, 5]), "b": pa.array([None, None, True])})
    assert evaluate(parse("x > 2"), t).tolist() == [False, False, True]
    assert evaluate(parse("not (x > 2)"), t).tolist() == [True, False, False]
    assert evaluate(parse("x > 2 or true"), t).tolist() == [True, True, True]
    assert evaluate(parse("b and false"), t).tolist() == [False, False, False]
    assert evaluate(parse("not (b and false)"), t).tolist() == [True, True, True]
    assert evaluate(parse("b or x < 3"), t).tolist() == [True, False, True]


def test_modulo_follows_python_and_zero_is_null():
    a = [7, -7, 7, -7, 0, 5, None, 9223372036]
    b = [3, 3, -3, -3, 5, 0, 2, 7]
    t = pa.table({"a": a, "b": b, "fa": [x * 0.5 if x is not None else None for x in a]})
    pairs = list(zip(a, b, strict=True))
    for r in range(-4, 5):
        expected = [x is not None and y != 0 and x % y == r for x, y in pairs]
        assert evaluate(parse(f"a % b == {r}"), t).tolist() == expected
        expected = [x is not None and y != 0 and (x * 0.5) % y == r + 0.5 for x, y in pairs]
        assert evaluate(parse(f"fa % b == {r + 0.5}"), t).tolist() == expected
    assert not evaluate(parse("a % 0 == a % 0"), t).any()


def test_division_is_true_division():
    t = pa.table({"a": [7, 1, 0, -1], "b": [2, 0, 0, 0]})
    assert evaluate(parse("a / b == 3.5"), t).tolist() == [True, False, False, False]
    assert evaluate(parse("a / b > 1e308"), t).tolist() == [False, True, False, False]
    assert evaluate(parse("a / b < -1e308"), t).tolist() == [False, False, False, True]
    assert evaluate(parse("a / b != a / b"), t).tolist() == [False, False, True, False]  # 0/0 NaN


def test_integer_overflow_is_a_filter_error_not_a_wrap():
    t = pa.table({"x": [2**62, 1]})
    with pytest.raises(FilterError, match="cannot evaluate 'x \\* 4 > 0'.*overflowed 64 bits"):
        evaluate(parse("x * 4 > 0"), t)
    # pyarrow will not round a large int64 to a float: a FilterError that says so.
    with pytest.raises(FilterError, match="cannot meet a float exactly"):
        evaluate(parse("x > 0.5"), t)
    with pytest.raises(FilterError, match="does not fit in 64 bits"):
        evaluate(parse("x < 9223372036854775808"), t)


def test_evaluate_raises_filter_errors_only():
    t = pa.table({"s": ["a"], "ts": [datetime.datetime(2024, 1, 1)], "l": [[1, 2]]})
    for text in ["s > 1", "s + 1 > 2", "ts > 1", "l == 1", "nope > 1", "s"]:
        with pytest.raises(FilterError, match="^filter: "):
            evaluate(parse(text), t)


def test_evaluate_on_batches_chunks_and_other_types():
    table = _table(3, n=1000)
    chunked = pa.concat_tables([table.slice(0, 333), table.slice(333, 1), table.slice(334)])
    assert chunked.column("i").num_chunks == 3
    expr = parse("i >= 3 and f < 0.5")
    expected = _true(pc.and_kleene(pc.greater_equal(table["i"], 3), pc.less(table["f"], 0.5)))
    assert evaluate(expr, chunked).tolist() == expected
    assert evaluate(expr, table.combine_chunks().to_batches()[0]).tolist() == expected
    assert evaluate(expr, table.slice(0, 0)).tolist() == []
    small = pa.table(
        {
            "x": pa.array([1, 2, None], pa.int8()),
            "s": pa.array(["a", "b", None], pa.large_string()),
            "d": pa.array(["a", "b", "a"]).dictionary_encode(),
            "h": pa.array([1.5, 2.5, 0.5], pa.float32()),
        }
    )
    assert evaluate(parse("x > 1 or s == 'a'"), small).tolist() == [True, True, False]
    assert evaluate(parse("d == 'a' and h < 1"), small).tolist() == [False, False, True]
    assert evaluate(parse("x in (2, 300)"), small).tolist() == [False, True, False]


def test_to_arrow_selects_the_rows_evaluate_selects():
    table = pa.table({"a": [0, 1, 2, None, 5]})
    for text, kept in (("a > 1", [2, 5]), ("a is null", [None]), ("a in (1, 5)", [1, 5])):
        assert table.filter(to_arrow(parse(text)))["a"].to_pylist() == kept
        assert table.filter(evaluate(parse(text), table))["a"].to_pylist() == kept
    assert parse("a is null") == IsNull(Column("a", 0), False, 0)
    assert parse("a in (1)") == InList(Column("a", 0), (1,), False, 0)
