"""The subset of expr-lang (Argo Rollouts' condition language) that analysis conditions use.

A hand-written tokenizer and Pratt parser turn the text into a tree of small closures; nothing
here ever hands user text to Python's ``eval``/``exec``, and member access only reads keys of
dicts (never Python attributes). ``docs/analysis.md`` lists what is supported.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from coalmine.errors import SpecError

Env = Mapping[str, Any]
Node = Callable[[Env], Any]


class ExprError(SpecError):
    """The text is not a valid expression (raised by :func:`compile_expression`)."""

    def __init__(
        self, message: str, column: int | None = None, text: str = "", **where: Any
    ) -> None:
        at = f" at column {column}" if column is not None else ""
        super().__init__(f"{message}{at} in {text!r}", **where)  # file, line, field, hint
        self.column = column
        self.text = text


class ExprEvalError(Exception):
    """The expression could not be evaluated: a type error, a nil comparison, an unknown name."""


# --------------------------------------------------------------------------- values


def type_name(value: Any) -> str:
    """expr's name for the type of ``value``."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def format_value(value: Any, limit: int = 200) -> str:
    """``value`` the way expr would write it: ``nil``, ``true``, ``"s"``, ``[1, 2]``,
    ``{canary: 0.21}``; cut to ``limit`` characters."""
    text = _format(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _format(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return f"{value:.6g}"  # readable in messages; the exact value is kept with the data
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (
            (k if isinstance(k, str) and k.isidentifier() else _format(k)) + ": " + _format(v)
            for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    return repr(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if type_name(a) != type_name(b):
        return False
    return bool(a == b)


def _bad(op: str, *values: Any) -> ExprEvalError:
    if len(values) == 1:
        return ExprEvalError(f"invalid operation: {op} {type_name(values[0])}")
    return ExprEvalError(
        f"invalid operation: {type_name(values[0])} {op} {type_name(values[1])}"
        f" ({format_value(values[0], 40)} {op} {format_value(values[1], 40)})"
    )


# --------------------------------------------------------------------------- operators


def _add(a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return [*a, *b]
    raise _bad("+", a, b)


def _arith(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (_is_num(a) and _is_num(b)):
            raise _bad(op, a, b)
        return fn(a, b)

    return apply


def _div(a: float, b: float) -> float:
    """expr's ``/``: always float; division by zero gives ±Inf (NaN for 0/0), as in Go."""
    a, b = float(a), float(b)
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _mod(a: Any, b: Any) -> int:
    if not (isinstance(a, int) and isinstance(b, int)):
        raise _bad("%", a, b)
    if b == 0:
        raise ExprEvalError("integer divide by zero")
    result = abs(a) % abs(b)  # Go's % truncates: the result takes the dividend's sign
    return -result if a < 0 else result


def _pow(a: float, b: float) -> float:
    """expr's ``**``: always float, with Go's math.Pow answers where Python would raise."""
    a, b = float(a), float(b)
    try:
        return math.pow(a, b)
    except OverflowError:
        odd = b.is_integer() and int(b) % 2 == 1
        return -math.inf if a < 0 and odd else math.inf
    except ValueError:
        return math.inf if a == 0 else math.nan


def _compare(op: str, fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        if (_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str)):
            return fn(a, b)
        raise _bad(op, a, b)

    return apply


def _in(a: Any, b: Any) -> bool:
    if b is None:
        return False
    if isinstance(b, list | tuple):
        return any(_equal(a, item) for item in b)
    if isinstance(b, dict):
        return isinstance(a, str | int | float | bool) and a in b
    raise _bad("in", a, b)


def _strings(op: str, fn: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        if isinstance(a, str) and isinstance(b, str):
            return fn(a, b)
        raise _bad(op, a, b)

    return apply


def _matches(a: str, pattern: str) -> bool:
    try:
        return re.search(pattern, a) is not None
    except re.error as exc:
        raise ExprEvalError(f"invalid regular expression {pattern!r}: {exc}") from None


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _arith("-", lambda a, b: a - b),
    "*": _arith("*", lambda a, b: a * b),
    "/": _arith("/", _div),
    "%": _mod,
    "**": _arith("**", _pow),
    "^": _arith("^", _pow),
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _compare("<", lambda a, b: a < b),
    "<=": _compare("<=", lambda a, b: a <= b),
    ">": _compare(">", lambda a, b: a > b),
    ">=": _compare(">=", lambda a, b: a >= b),
    "in": _in,
    "contains": _strings("contains", lambda a, b: b in a),
    "startsWith": _strings("startsWith", str.startswith),
    "endsWith": _strings("endsWith", str.endswith),
    "matches": _strings("matches", _matches),
}

# expr's precedences; every binary operator is left-associative except ** and ^.
_PRECEDENCE = {
    "or": 10, "||": 10, "and": 15, "&&": 15,
    "==": 20, "!=": 20, "<": 20, "<=": 20, ">": 20, ">=": 20,
    "in": 20, "contains": 20, "startsWith": 20, "endsWith": 20, "matches": 20,
    "+": 30, "-": 30, "*": 60, "/": 60, "%": 60, "**": 100, "^": 100, "??": 500,
}  # fmt: skip
_RIGHT_ASSOC = {"**", "^"}
_UNARY_PRECEDENCE = {"!": 50, "not": 50, "-": 90, "+": 90}
_WORD_OPERATORS = {"and", "or", "in", "contains", "startsWith", "endsWith", "matches"}
_KEYWORDS = {"true": True, "false": False, "nil": None}


# --------------------------------------------------------------------------- functions


def _number_arg(fn: str, value: Any) -> float:
    if not _is_num(value):
        raise ExprEvalError(f"{fn}() expects a number, got {type_name(value)}")
    return float(value)


def _as_int(value: Any) -> int:
    if _is_num(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ExprEvalError(f"asInt: cannot convert {format_value(value)} to int")
        return int(value)
    if isinstance(value, str):
        for base in (10, 0):
            try:
                return int(value, base)
            except ValueError:
                pass
    raise ExprEvalError(f"asInt: cannot convert {format_value(value, 40)} to int")


def _as_float(value: Any) -> float:
    if _is_num(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ExprEvalError(f"asFloat: cannot convert {format_value(value, 40)} to float")


def _len(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise ExprEvalError(f"len() of {type_name(value)}")


def _is_inf(value: Any, sign: Any = 0) -> bool:
    number = _number_arg("isInf", value)
    direction = _number_arg("isInf", sign)
    return math.isinf(number) and (direction == 0 or (number > 0) == (direction > 0))


def _extreme(name: str, pick: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        values = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
        if not values:
            raise ExprEvalError(f"{name}() of an empty array")
        for value in values:
            _number_arg(name, value)
        return pick(values)

    return apply


def _abs(value: Any) -> Any:
    _number_arg("abs", value)
    return abs(value)


# name: (minimum arguments, maximum arguments or None for any, implementation)
_FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "len": (1, 1, _len),
    "abs": (1, 1, _abs),
    "max": (1, None, _extreme("max", max)),
    "min": (1, None, _extreme("min", min)),
    "isNaN": (1, 1, lambda x: math.isnan(_number_arg("isNaN", x))),
    "isInf": (1, 2, _is_inf),
    "isNil": (1, 1, lambda x: x is None),
    "default": (2, 2, lambda x, d: d if x is None else x),
    "asInt": (1, 1, _as_int),
    "asFloat": (1, 1, _as_float),
}


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "str", "name", "op", "end"
    value: Any
    column: int  # 1-based
    text: str  # as written, for error messages


_TOKEN_RE = re.compile(
    r"""(?P<space>\s+)
      | (?P<num>0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+
               |\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<str>["'`])
      | (?P<op>\*\*|==|!=|<=|>=|&&|\|\||\?\?|\?\.|[-+*/%^<>!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ExprError(f"unexpected character {text[pos]!r}", pos + 1, text)
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "str":
            value, end = _read_string(text, pos)
            tokens.append(_Token("str", value, pos + 1, text[pos:end]))
            pos = end
            continue
        if kind == "num":
            tokens.append(_Token("num", _number(raw, pos, text), pos + 1, raw))
        elif kind in ("name", "op"):
            tokens.append(_Token(kind, raw, pos + 1, raw))
        pos = match.end()
    tokens.append(_Token("end", None, len(text) + 1, ""))
    return tokens


def _number(raw: str, pos: int, text: str) -> int | float:
    digits = raw.replace("_", "")
    try:
        if raw[:2].lower() in ("0x", "0o", "0b"):
            return int(digits, 0)
        if any(c in digits for c in ".eE"):
            return float(digits)
        return int(digits, 10)
    except ValueError:
        raise ExprError(f"invalid number {raw!r}", pos + 1, text) from None


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return "".join(out), pos + 1
        if char == "\\" and quote != "`":
            escape = text[pos + 1 : pos + 2]
            if escape in _ESCAPES:
                out.append(_ESCAPES[escape])
                pos += 2
                continue
            if escape == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[pos + 2 : pos + 6]):
                out.append(chr(int(text[pos + 2 : pos + 6], 16)))
                pos += 6
                continue
            raise ExprError("invalid escape in string", pos + 1, text)
        out.append(char)
        pos += 1
    raise ExprError("unterminated string", start + 1, text)


# --------------------------------------------------------------------------- parser


class _Parser:
    """Pratt parser with expr's precedences; each parse method returns a closure over env."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    # token helpers
    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.peek()
        self.pos += 1
        return token

    def at(self, value: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind in ("op", "name") and token.value == value

    def error(self, token: _Token, what: str | None = None) -> ExprError:
        if token.kind == "end":
            return ExprError(what or "unexpected end of expression", token.column, self.text)
        return ExprError(what or f"unexpected token {token.text!r}", token.column, self.text)

    def expect(self, value: str) -> _Token:
        if not self.at(value):
            token = self.peek()
            found = "end of expression" if token.kind == "end" else repr(token.text)
            raise self.error(token, f"expected {value!r}, found {found}")
        return self.next()

    # grammar
    def parse(self) -> Node:
        node = self.expression(0)
        if self.peek().kind != "end":
            raise self.error(self.peek())
        return node

    def binary_operator(self) -> tuple[str, int] | None:
        """The operator at the cursor and how many tokens it spans (``not in`` is two)."""
        token = self.peek()
        if token.kind == "op" and token.value in _PRECEDENCE:
            return token.value, 1
        if token.kind == "name":
            if token.value in _WORD_OPERATORS:
                return token.value, 1
            after = self.peek(1)
            negatable = _WORD_OPERATORS - {"and", "or"}
            if token.value == "not" and after.kind == "name" and after.value in negatable:
                return "not " + after.value, 2
        return None

    def expression(self, min_precedence: int) -> Node:
        left = self.unary()
        while (found := self.binary_operator()) is not None:
            op, width = found
            precedence = _PRECEDENCE[op.removeprefix("not ")]
            if precedence < min_precedence:
                break
            self.pos += width
            right = self.expression(precedence if op in _RIGHT_ASSOC else precedence + 1)
            left = _binary_node(op, left, right)
        if min_precedence == 0 and self.at("?"):
            left = self.conditional(left)
        return left

    def conditional(self, condition: Node) -> Node:
        self.expect("?")
        then = self.expression(0)
        self.expect(":")
        otherwise = self.expression(0)

        def node(env: Env) -> Any:
            test = condition(env)
            if not isinstance(test, bool):
                raise ExprEvalError(f"non-bool {format_value(test, 40)} used as condition of ?:")
            return then(env) if test else otherwise(env)

        return node

    def unary(self) -> Node:
        token = self.peek()
        if token.kind in ("op", "name") and token.value in _UNARY_PRECEDENCE:
            self.next()
            operand = self.expression(_UNARY_PRECEDENCE[token.value])
            return self.postfix(_unary_node(token.value, operand))
        return self.primary()

    def primary(self) -> Node:
        token = self.next()
        if token.kind in ("num", "str"):
            value = token.value
            return self.postfix(lambda env: value)
        if token.kind == "op" and token.value == "(":
            inner = self.expression(0)
            self.expect(")")
            return self.postfix(inner)
        if token.kind == "op" and token.value == "[":
            items = self.sequence("]", lambda: self.expression(0))
            return self.postfix(lambda env: [item(env) for item in items])
        if token.kind == "op" and token.value == "{":
            pairs = self.sequence("}", self.map_entry)
            return self.postfix(lambda env: {k: v(env) for k, v in pairs})
        if token.kind == "name":
            if token.value in _KEYWORDS:
                constant = _KEYWORDS[token.value]
                return self.postfix(lambda env: constant)
            if self.at("("):
                return self.postfix(self.call(token))
            if token.value in _WORD_OPERATORS or token.value == "not":
                raise self.error(token)
            return self.postfix(_name_node(token.value))
        raise self.error(token)

    def map_entry(self) -> tuple[Any, Node]:
        key = self.next()
        if key.kind not in ("name", "str", "num"):
            raise self.error(key)
        self.expect(":")
        return key.value, self.expression(0)

    def sequence(self, close: str, item: Callable[[], Any]) -> list[Any]:
        items: list[Any] = []
        while not self.at(close):
            items.append(item())
            if not self.at(close):
                self.expect(",")
        self.expect(close)
        return items

    def call(self, name: _Token) -> Node:
        if name.value not in _FUNCTIONS:
            raise ExprError(f"unknown function {name.value!r}", name.column, self.text)
        least, most, fn = _FUNCTIONS[name.value]
        self.expect("(")
        args = self.sequence(")", lambda: self.expression(0))
        if len(args) < least or (most is not None and len(args) > most):
            expected = f"at least {least}" if most is None else str(least)
            if most is not None and most != least:
                expected = f"{least} to {most}"
            plural = "" if expected.endswith(" 1") or expected == "1" else "s"
            raise ExprError(
                f"{name.value}() takes {expected} argument{plural}, got {len(args)}",
                name.column,
                self.text,
            )
        return lambda env: fn(*(arg(env) for arg in args))

    def postfix(self, base: Node) -> Node:
        """Member access and indexing; ``?.`` makes the rest of the chain nil on nil."""
        steps: list[tuple[bool, Node]] = []
        while True:
            if self.at("."):
                self.next()
                steps.append((False, self.member_name()))
            elif self.at("?."):
                self.next()
                if self.at("["):
                    self.next()
                    steps.append((True, self.index_key()))
                else:
                    steps.append((True, self.member_name()))
            elif self.at("["):
                self.next()
                steps.append((False, self.index_key()))
            else:
                break
        if not steps:
            return base

        def node(env: Env) -> Any:
            value = base(env)
            for optional, key in steps:
                if value is None and optional:
                    return None
                value = _fetch(value, key(env))
            return value

        return node

    def member_name(self) -> Node:
        token = self.next()
        if token.kind != "name":
            raise self.error(token)
        if self.at("("):
            raise self.error(token, f"method calls are not supported ({token.value})")
        name = token.value
        return lambda env: name

    def index_key(self) -> Node:
        key = self.expression(0)
        self.expect("]")
        return key


def _fetch(container: Any, key: Any) -> Any:
    """``a.b`` / ``a[k]``: dict keys (missing → nil) and array/string positions, nothing else."""
    if isinstance(container, dict):
        try:
            return container.get(key)
        except TypeError:
            raise ExprEvalError(f"cannot use {type_name(key)} as a map key") from None
    if isinstance(container, list | tuple | str):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExprEvalError(f"array index must be an int, got {format_value(key, 40)}")
        size = len(container)
        if not -size <= key < size:
            raise ExprEvalError(f"index out of range: {key} (length {size})")
        return container[key]
    raise ExprEvalError(f"cannot fetch {format_value(key, 40)} from {type_name(container)}")


def _name_node(name: str) -> Node:
    def node(env: Env) -> Any:
        if name not in env:
            raise ExprEvalError(f"unknown name {name!r}")
        return env[name]

    return node


def _boolean(op: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExprEvalError(
            f"invalid operation: {op} on {type_name(value)} "
            f"({format_value(value, 40)}), expected bool"
        )
    return value


def _unary_node(op: str, operand: Node) -> Node:
    if op in ("!", "not"):
        return lambda env: not _boolean(op, operand(env))
    sign = -1 if op == "-" else 1

    def node(env: Env) -> Any:
        value = operand(env)
        if not _is_num(value):
            raise _bad(op, value)
        return sign * value

    return node


def _binary_node(op: str, left: Node, right: Node) -> Node:
    if op in ("&&", "and"):
        return lambda env: _boolean(op, left(env)) and _boolean(op, right(env))
    if op in ("||", "or"):
        return lambda env: _boolean(op, left(env)) or _boolean(op, right(env))
    if op == "??":

        def coalesce(env: Env) -> Any:
            value = left(env)
            return right(env) if value is None else value

        return coalesce
    if op.startswith("not "):
        fn = _BINARY[op.removeprefix("not ")]
        return lambda env: not fn(left(env), right(env))
    fn = _BINARY[op]
    return lambda env: fn(left(env), right(env))


# --------------------------------------------------------------------------- API


@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled expression; immutable and safe to share."""

    text: str
    _node: Node

    def evaluate(self, env: Env) -> Any:
        """Evaluate with the names in ``env``; raises :class:`ExprEvalError`."""
        try:
            return self._node(env)
        except ExprEvalError:
            raise
        except RecursionError:
            raise ExprEvalError("expression too deeply nested") from None
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ExprEvalError(f"cannot evaluate {self.text!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


@functools.lru_cache(maxsize=1024)
def compile_expression(text: str) -> Expression:
    """Parse ``text``; raises :class:`ExprError` naming the column of the problem."""
    if not text.strip():
        raise ExprError("empty expression", 1, text)
    try:
        return Expression(text, _Parser(text).parse())
    except RecursionError:
        raise ExprError("expression too deeply nested", None, text) from None


def evaluate_condition(condition: str | Expression, result: Any) -> bool:
    """Evaluate a success/failure condition with ``result`` bound; it must give true or false."""
    expression = compile_expression(condition) if isinstance(condition, str) else condition
    value = expression.evaluate({"result": result})
    if not isinstance(value, bool):
        raise ExprEvalError(f"condition must be true or false, got {format_value(value, 80)}")
    return value


__all__ = [
    "ExprError",
    "ExprEvalError",
    "Expression",
    "compile_expression",
    "evaluate_condition",
    "format_value",
    "type_name",
]
