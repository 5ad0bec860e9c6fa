"""The condition language: values, precedence, errors and safety."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coalmine.analysis.expr import (
    ExprError,
    ExprEvalError,
    compile_expression,
    evaluate_condition,
    format_value,
)
from coalmine.errors import SpecError

RESULT = {"canary": 0.21, "stable": 0.04, "codes": ["200", "500"], "nested": {"x": [1, 2, 3]}}


def ev(text: str, result: Any = None, **env: Any) -> Any:
    return compile_expression(text).evaluate({"result": result, **env})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # literals
        ("42", 42),
        ("1_000", 1000),
        ("0x1f", 31),
        ("1.5", 1.5),
        ("1e-3", 0.001),
        ("'single'", "single"),
        ('"double\\n"', "double\n"),
        ("`raw\\n`", "raw\\n"),
        ("true", True),
        ("nil", None),
        ("[1, 'a', nil]", [1, "a", None]),
        ("{a: 1, 'b c': 2}", {"a": 1, "b c": 2}),
        # precedence and associativity
        ("1 + 2 * 3 ** 2", 19.0),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512.0),
        ("2 ^ 3", 8.0),
        ("-2 ** 2", -4.0),
        ("2 ** -1", 0.5),
        ("10 - 4 - 3", 3),
        ("12 / 3 / 2", 2.0),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("1 + 2 == 3", True),
        ("!true == false", True),
        ("not false and false", False),
        ("true || false && false", True),
        ("false or true and true", True),
        ("1 < 2 == true", True),
        # arithmetic types
        ("1 + 2", 3),
        ("1 + 2.5", 3.5),
        ("6 / 3", 2.0),
        ("1 / 0", math.inf),
        ("-1 / 0", -math.inf),
        ("'ab' + 'cd'", "abcd"),
        ("1 == 1.0", True),
        ("1 == '1'", False),
        ("true == 1", False),
        ("nil == nil", True),
        ("result == nil", True),
        ("nil != 0", True),
        ("[1, 2] == [1, 2.0]", True),
        # strings
        ("'abc' < 'abd'", True),
        ("'b' >= 'a'", True),
        ("'ok' contains 'k'", True),
        ("'healthy' startsWith 'heal'", True),
        ("'healthy' endsWith 'thy'", True),
        ("'v1.2.3' matches '^v[0-9]+'", True),
        ("'abc' not contains 'z'", True),
        # membership
        ("2 in [1, 2, 3]", True),
        ("2.0 in [1, 2]", True),
        ("4 not in [1, 2, 3]", True),
        ("'a' in {a: 1}", True),
        ("'b' in {a: 1}", False),
        ("1 in nil", False),
        # ternary and nil coalescing
        ("true ? 1 : 2", 1),
        ("false ? 1 : true ? 2 : 3", 2),
        ("1 > 2 || false ? 'yes' : 'no'", "no"),
        ("nil ?? 5", 5),
        ("0 ?? 5", 0),
        ("nil ?? nil ?? 'x'", "x"),
        ("nil ?? 1 + 1", 2),
        # functions
        ("len('abc')", 3),
        ("len([1, 2])", 2),
        ("len({a: 1})", 1),
        ("isNaN(asFloat('NaN'))", True),
        ("isNaN(1.5)", False),
        ("isInf(1 / 0)", True),
        ("isInf(-1 / 0, 1)", False),
        ("isInf(-1 / 0, -1)", True),
        ("isNil(nil)", True),
        ("isNil(0)", False),
        ("asInt('42')", 42),
        ("asInt(4.9)", 4),
        ("asFloat('0.25') * 4", 1.0),
        ("asFloat(3)", 3.0),
        ("default(nil, 7)", 7),
        ("default(3, 7)", 3),
        ("abs(-2.5)", 2.5),
        ("max(1, 4, 2)", 4),
        ("min([3, 1.5])", 1.5),
    ],
)
def test_values(text: str, expected: Any) -> None:
    value = ev(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "result", "expected"),
    [
        ("result", 0.5, 0.5),
        ("result > 0.4", 0.5, True),
        ("result[0] >= 0.95", [0.97, 0.5], True),
        ("result[-1]", [0.97, 0.5], 0.5),
        ("len(result) == 0 || result[0] < 1", [], True),
        ("result.canary <= 1.5 * result.stable", RESULT, False),
        ("result['canary']", RESULT, 0.21),
        ("result.missing", RESULT, None),
        ("result.missing ?? 0", RESULT, 0),
        ("default(result.missing, 0)", RESULT, 0),
        ("result.nested.x[1]", RESULT, 2),
        ("'500' in result.codes", RESULT, True),
        ("result?.canary", None, None),
        ("result?.a.b.c", None, None),
        ("result?.[0]", None, None),
        ("result == 'ok'", "ok", True),
        ("asFloat(result) < 0.1", "0.05", True),
        ("result.keys", RESULT, None),  # a key lookup, never the dict method
        ("result.__class__", RESULT, None),
    ],
)
def test_result_shapes(text: str, result: Any, expected: Any) -> None:
    assert ev(text, result) == expected


def test_names_from_the_environment() -> None:
    assert ev("limit * 2", 0, limit=3) == 6
    with pytest.raises(ExprEvalError, match="unknown name 'limit'"):
        ev("result < limit", 1)


def test_short_circuit_skips_the_right_side() -> None:
    # nil < 1 raises when evaluated, so these prove the right side is never evaluated
    with pytest.raises(ExprEvalError):
        ev("nil < 1")
    assert ev("false && nil < 1") is False
    assert ev("false and nil < 1") is False
    assert ev("true || nil < 1") is True
    assert ev("true or nil < 1") is True
    assert ev("true ? 1 : nil < 1") == 1
    assert ev("5 ?? (nil < 1)") == 5
    assert ev("5 ?? nil < 1") is False  # ?? binds tighter than <: (5 ?? nil) < 1
    assert ev("(result?.x.y ?? 0) < 1", None) is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("result >", "unexpected end of expression at column 9 in 'result >'"),
        ("result > (1", "expected ')', found end of expression at column 12"),
        ("result > (1))", "unexpected token ')' at column 13"),
        ("foo(1)", "unknown function 'foo' at column 1"),
        ("result > 1 && bar()", "unknown function 'bar' at column 15"),
        ("result @ 1", "unexpected character '@' at column 8"),
        ("'abc", "unterminated string at column 1"),
        ("len(1, 2)", "len() takes 1 argument, got 2 at column 1"),
        ("result.x()", "method calls are not supported"),
        ("", "empty expression"),
        ("1 +* 2", "unexpected token '*' at column 4"),
        ("a ? b", "expected ':'"),
        ("result not 1", "unexpected token 'not' at column 8"),
    ],
)
def test_compile_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(ExprError) as caught:
        compile_expression(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, SpecError)


@pytest.mark.parametrize(
    ("text", "result", "message"),
    [
        ("nil < 1", None, "invalid operation: nil < int"),
        ("result > 0.5", None, "nil > float"),
        ("'a' * 2", None, "string * int"),
        ("'a' + 1", None, "string + int"),
        ("1 < 'a'", None, "int < string"),
        ("true + 1", None, "bool + int"),
        ("!1", None, "expected bool"),
        ("1 && true", None, "expected bool"),
        ("1 ? 2 : 3", None, "non-bool"),
        ("-'a'", None, "invalid operation: - string"),
        ("5 % 0", None, "integer divide by zero"),
        ("1.5 % 1", None, "float % int"),
        ("result[5]", [1], "index out of range"),
        ("result.a", 1.5, 'cannot fetch "a" from float'),
        ("result.a.b", {}, 'cannot fetch "b" from nil'),
        ("result['x']", [1], "array index must be an int"),
        ("asInt('4.5')", None, "asInt: cannot convert"),
        ("asFloat('abc')", None, "asFloat: cannot convert"),
        ("asFloat(nil)", None, "asFloat: cannot convert nil"),
        ("isNaN(nil)", None, "isNaN() expects a number"),
        ("len(3)", None, "len() of int"),
        ("1 in 'abc'", None, "int in string"),
        ("'x' matches '('", None, "invalid regular expression"),
    ],
)
def test_evaluation_errors(text: str, result: Any, message: str) -> None:
    with pytest.raises(ExprEvalError) as caught:
        ev(text, result)
    assert message in str(caught.value)
    assert not isinstance(caught.value, SpecError)


def test_evaluate_condition_requires_a_boolean() -> None:
    assert evaluate_condition("result > 1", 2) is True
    assert evaluate_condition(compile_expression("result > 1"), 0) is False
    with pytest.raises(ExprEvalError, match=r"condition must be true or false, got 0\.5"):
        evaluate_condition("result", 0.5)
    with pytest.raises(ExprEvalError, match="got nil"):
        evaluate_condition("result", None)


def test_compilation_is_cached() -> None:
    assert compile_expression("result > 0.125") is compile_expression("result > 0.125")


def test_format_value() -> None:
    assert format_value({"canary": 0.21, "stable": None}) == "{canary: 0.21, stable: nil}"
    assert format_value([1, "a", True, math.nan, -math.inf]) == '[1, "a", true, NaN, -Inf]'
    assert format_value("x" * 500).endswith("…")
    assert len(format_value("x" * 500)) == 200


# --------------------------------------------------------------------------- safety


class Spy:
    """Records every attribute read through normal access."""

    def __init__(self) -> None:
        object.__setattr__(self, "reads", [])

    def __getattribute__(self, name: str) -> Any:
        if name != "reads":
            object.__getattribute__(self, "reads").append(name)
        return object.__getattribute__(self, name)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "eval('1')",
        "exec('x = 1')",
        "open('/etc/passwd')",
        "getattr(result, 'x')",
        "result.__class__.__bases__()",
        "().__class__",
        "lambda: 1",
        "result; 1",
        "import os",
    ],
)
def test_python_is_never_reached_at_compile_time(text: str) -> None:
    with pytest.raises(ExprError):
        compile_expression(text)


def test_member_access_never_reads_attributes() -> None:
    spy = Spy()
    for text in ("result.secret", "result.__class__", "result['__dict__']", "result.reads"):
        with pytest.raises(ExprEvalError, match="cannot fetch"):
            ev(text, spy)
    assert not [name for name in spy.reads if not name.startswith("__")]
    assert "secret" not in spy.reads and "__dict__" not in spy.reads
    with pytest.raises(ExprEvalError, match="cannot fetch"):
        ev("result.__class__", 1.5)
    with pytest.raises(ExprEvalError, match="unknown name '__builtins__'"):
        ev("__builtins__")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ExprError, match="too deeply nested"):
        compile_expression("(" * 5000 + "1" + ")" * 5000)


# --------------------------------------------------------------------------- properties

finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(st.integers(-(10**12), 10**12), finite)


def literal(value: int | float) -> str:
    return repr(value) if value >= 0 else f"-{-value!r}"


@given(numbers, numbers)
def test_comparisons_agree_with_python(a: float, b: float) -> None:
    for op in ("<", "<=", ">", ">=", "==", "!="):
        text = f"{literal(a)} {op} {literal(b)}"
        expected = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b}.get(
            op, a != b
        )
        assert ev(text) is expected, text
        assert ev(f"result {op} {literal(b)}", a) is expected


@given(st.booleans())
def test_not_matches_python(x: bool) -> None:
    assert ev(f"!({str(x).lower()})") is (not x)
    assert ev("!result", x) is (not x)
    assert ev("not result", x) is (not x)


# Expression trees: ("lit", value) | ("neg", tree) | ("not", tree) | (op, left, right).
# The printer uses expr's documented precedences to drop every parenthesis it can, so the
# parser must rebuild exactly the tree that the reference evaluator below computes.
PRECEDENCE = {"||": 10, "or": 10, "&&": 15, "and": 15, "+": 30, "-": 30, "*": 60, "/": 60}
PRECEDENCE |= {"**": 100, "not": 50, "neg": 90, "lit": 1000}


def render(tree: tuple[Any, ...]) -> str:
    kind = tree[0]
    if kind == "lit":
        value = tree[1]
        return str(value).lower() if isinstance(value, bool) else repr(value)
    if kind in ("neg", "not"):
        inner = render(tree[1])
        if PRECEDENCE[tree[1][0]] < PRECEDENCE[kind]:
            inner = f"({inner})"
        return ("- " if kind == "neg" else "not ") + inner
    left, right = render(tree[1]), render(tree[2])
    prec = PRECEDENCE[kind]
    right_assoc = kind == "**"
    if PRECEDENCE[tree[1][0]] < prec or (right_assoc and PRECEDENCE[tree[1][0]] == prec):
        left = f"({left})"
    if PRECEDENCE[tree[2][0]] < prec or (not right_assoc and PRECEDENCE[tree[2][0]] == prec):
        right = f"({right})"
    return f"{left} {kind} {right}"


def reference(tree: tuple[Any, ...]) -> Any:
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "neg":
        return -reference(tree[1])
    if kind == "not":
        return not reference(tree[1])
    a, b = reference(tree[1]), reference(tree[2])
    if kind in ("&&", "and"):
        return a and b
    if kind in ("||", "or"):
        return a or b
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    if kind == "**":
        try:  # exponents are small non-negative integer literals
            return float(a) ** float(b)
        except OverflowError:
            return math.copysign(math.inf, a) if b % 2 else math.inf
    # "/": IEEE-754 float division, where x/0 is ±Inf (NaN for 0/0)
    a, b = float(a), float(b)
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


arith_leaves = st.one_of(
    st.integers(0, 100), st.floats(0, 100, allow_nan=False, allow_infinity=False)
).map(lambda v: ("lit", v))
arith_trees = st.recursive(
    arith_leaves,
    lambda sub: st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), sub, sub),
        st.tuples(st.just("neg"), sub),
        st.tuples(st.just("**"), sub, st.integers(0, 3).map(lambda v: ("lit", v))),
    ),
    max_leaves=12,
)
bool_trees = st.recursive(
    st.booleans().map(lambda v: ("lit", v)),
    lambda sub: st.one_of(
        st.tuples(st.sampled_from(["&&", "||", "and", "or"]), sub, sub),
        st.tuples(st.just("not"), sub),
    ),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@given(arith_trees)
def test_arithmetic_matches_reference(tree: tuple[Any, ...]) -> None:
    text = render(tree)
    assert same(ev(text), reference(tree)), text


@given(bool_trees)
def test_logic_matches_reference(tree: tuple[Any, ...]) -> None:
    text = render(tree)
    assert ev(text) is reference(tree), text


def test_render_drops_parentheses() -> None:
    """Guard the property tests: the printer must really rely on precedence."""
    tree = ("+", ("lit", 1), ("*", ("lit", 2), ("**", ("lit", 3), ("lit", 2))))
    assert render(tree) == "1 + 2 * 3 ** 2"
    assert render(("-", ("lit", 1), ("-", ("lit", 2), ("lit", 3)))) == "1 - (2 - 3)"
    assert render(("neg", ("**", ("lit", 2), ("lit", 2)))) == "- 2 ** 2"
    assert render(("or", ("lit", True), ("and", ("lit", False), ("lit", False)))) == (
        "true or false and false"
    )
