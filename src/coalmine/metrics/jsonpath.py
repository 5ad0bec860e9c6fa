"""The subset of Kubernetes JSONPath that Argo Rollouts' ``web`` provider accepts in ``jsonPath``.

Supported: an optional ``{...}`` wrapper, ``$`` (the root; a leading ``.`` also starts at the
root), ``.field``, ``['field']`` / ``["field"]``, ``[n]`` (negative counts from the end), ``*`` and
``[*]``, ``..`` (recursive descent), slices ``[a:b]`` / ``[a:b:step]``, filters
``[?(@.x == "y")]`` with ``==``, ``!=``, ``<``, ``>``, ``<=``, ``>=`` (or just ``[?(@.x)]``: the
field exists) and unions ``[0,2]`` / ``['a','b']``. Dots inside a field name are written ``\\.``.

:func:`find` returns every match in document order; a step that does not apply (a missing key,
an index out of range, a field of a list) simply matches nothing. An invalid expression raises
``ValueError`` naming the position. Nothing is ever evaluated as code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["JSONPath", "compile_path", "find"]


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _Wildcard:
    pass


@dataclass(frozen=True)
class _Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True)
class _Union:
    items: tuple[_Field | _Index | _Slice, ...]


@dataclass(frozen=True)
class _Filter:
    left: tuple[_Step, ...]  # a path relative to @
    op: str | None  # None: "the path matches something"
    right: Any  # a literal, or a tuple of steps (another @ path) when right_is_path
    right_is_path: bool = False


@dataclass(frozen=True)
class _Descend:
    """``..`` followed by one step: that step applied to the node and every descendant."""

    step: _Field | _Index | _Wildcard | _Slice | _Union | _Filter


_Step = _Field | _Index | _Wildcard | _Slice | _Union | _Filter | _Descend

_MISSING = object()
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
# Characters that end a bare field name (``.name``).
_NAME_STOP = frozenset(".[](){},'\"@$=!<>&| \t\r\n")
# Digits of an index or slice bound: any real list index fits, and Python refuses int() of
# more than 4300 digits with a message about its own limit.
MAX_INDEX_DIGITS = 18
SHOWN_CHARS = 80  # of an expression quoted in an error


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # ---------------------------------------------------------------- helpers

    def fail(self, message: str, pos: int | None = None) -> ValueError:
        at = self.pos if pos is None else pos
        shown = repr(self.text)
        if len(self.text) > SHOWN_CHARS:
            shown = f"{self.text[:SHOWN_CHARS]!r}… ({len(self.text)} characters)"
        return ValueError(f"invalid JSONPath {shown} at position {at}: {message}")

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek() and self.peek() in " \t\r\n":
            self.pos += 1

    def expect(self, char: str) -> None:
        self.skip_space()
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected {char!r}, found {found}")
        self.pos += 1

    # ---------------------------------------------------------------- top level

    def parse(self) -> tuple[_Step, ...]:
        self.skip_space()
        end = len(self.text)
        if self.peek() == "{":
            close = self._closing_brace()
            self.pos += 1
            end = close
        steps = self._path(end, relative=False)
        self.skip_space()
        if end < len(self.text):
            self.pos = end + 1
            self.skip_space()
        if self.pos < len(self.text):
            raise self.fail("unexpected text after the expression")
        return steps

    def _closing_brace(self) -> int:
        """The index of the ``}`` that closes the wrapper, skipping quoted strings."""
        i, quote, opened = self.pos + 1, "", 0
        while i < len(self.text):
            c = self.text[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == quote:
                    quote = ""
            elif c in "'\"":
                quote, opened = c, i
            elif c == "}":
                return i
            i += 1
        if quote:
            raise self.fail("unterminated string", opened)
        raise self.fail("'{' is never closed", self.pos)

    def _path(self, end: int, relative: bool) -> tuple[_Step, ...]:
        """Steps up to ``end`` (or, for a filter operand, up to the first non-path character)."""
        self.skip_space()
        root = "@" if relative else "$"
        if self.peek() == root:
            self.pos += 1
        elif self.peek() not in (".", "["):
            what = "'@'" if relative else "'$', '.' or '['"
            found = repr(self.peek()) if self.pos < end and self.peek() else "the end"
            raise self.fail(f"expected {what}, found {found}")
        steps: list[_Step] = []
        while self.pos < end:
            c = self.peek()
            if c == ".":
                if self.peek(1) == ".":
                    self.pos += 2
                    steps.append(_Descend(self._after_descent(end)))
                    continue
                self.pos += 1
                if self.pos >= end or self.peek() in " \t\r\n":
                    break  # "{.}" or "$." : the node itself
                if self.peek() == "[":
                    continue  # ".[0]" is "[0]"
                if self.peek() == "*":
                    self.pos += 1
                    steps.append(_Wildcard())
                    continue
                steps.append(_Field(self._name()))
            elif c == "[":
                steps.append(self._bracket())
            elif relative:
                break  # the rest belongs to the filter
            elif c in " \t\r\n":
                self.skip_space()
                if self.pos < end:
                    raise self.fail("unexpected whitespace inside the path")
            else:
                raise self.fail(f"unexpected {c!r}; steps start with '.' or '['")
        return tuple(steps)

    def _after_descent(self, end: int) -> _Field | _Index | _Wildcard | _Slice | _Union | _Filter:
        if self.pos >= end:
            raise self.fail("'..' must be followed by a field name, '*' or '[...]'")
        c = self.peek()
        if c == "*":
            self.pos += 1
            return _Wildcard()
        if c == "[":
            step = self._bracket()
            assert not isinstance(step, _Descend)
            return step
        if c in _NAME_STOP:
            raise self.fail("'..' must be followed by a field name, '*' or '[...]'")
        return _Field(self._name())

    def _name(self) -> str:
        start = self.pos
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.peek()
            if c == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if c in _NAME_STOP:
                break
            out.append(c)
            self.pos += 1
        if not out:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected a field name, found {found}", start)
        return "".join(out)

    # ---------------------------------------------------------------- brackets

    def _bracket(self) -> _Step:
        start = self.pos
        self.pos += 1  # "["
        self.skip_space()
        if self.peek() == "?":
            self.pos += 1
            step: _Step = self._filter()
            self.expect("]")
            return step
        if self.peek() == "*":
            self.pos += 1
            self.expect("]")
            return _Wildcard()
        items: list[_Field | _Index | _Slice] = [self._bracket_item()]
        self.skip_space()
        while self.peek() == ",":
            self.pos += 1
            items.append(self._bracket_item())
            self.skip_space()
        if self.peek() != "]":
            if not self.peek():
                raise self.fail("'[' is never closed", start)
            raise self.fail(f"expected ']' or ',', found {self.peek()!r}")
        self.pos += 1
        return items[0] if len(items) == 1 else _Union(tuple(items))

    def _bracket_item(self) -> _Field | _Index | _Slice:
        self.skip_space()
        if self.peek() in ("'", '"'):
            return _Field(self._string())
        numbers: list[int | None] = [self._maybe_int()]
        self.skip_space()
        while self.peek() == ":":
            self.pos += 1
            numbers.append(self._maybe_int())
            self.skip_space()
        if len(numbers) == 1:
            if numbers[0] is None:
                found = repr(self.peek()) if self.peek() else "the end"
                raise self.fail(f"expected an index, a quoted name, '*' or '?(...)', found {found}")
            return _Index(numbers[0])
        if len(numbers) > 3:
            raise self.fail("a slice has at most three parts: [start:stop:step]")
        step = numbers[2] if len(numbers) == 3 else None
        if step == 0:
            raise self.fail("a slice step cannot be zero")
        return _Slice(numbers[0], numbers[1], step)

    def _maybe_int(self) -> int | None:
        self.skip_space()
        start = self.pos
        if self.peek() in ("-", "+"):
            self.pos += 1
        digits = self.pos
        while self.peek().isascii() and self.peek().isdigit():
            self.pos += 1
        raw = self.text[start : self.pos]
        if raw in ("", "-", "+"):
            self.pos = start
            return None
        if self.pos - digits > MAX_INDEX_DIGITS:
            raise self.fail(
                f"an index has at most {MAX_INDEX_DIGITS} digits, found {self.pos - digits}",
                digits,
            )
        return int(raw)

    def _string(self) -> str:
        quote = self.peek()
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.peek()
            if c == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if c == quote:
                self.pos += 1
                return "".join(out)
            out.append(c)
            self.pos += 1
        raise self.fail("unterminated string", start)

    # ---------------------------------------------------------------- filters

    def _filter(self) -> _Filter:
        self.expect("(")
        self.skip_space()
        left = self._path(len(self.text), relative=True)
        self.skip_space()
        op = next((o for o in _COMPARISONS if self.text.startswith(o, self.pos)), None)
        if op is None:
            if self.peek() in ("&", "|"):
                raise self.fail("'&&' and '||' are not supported in filters")
            self.expect(")")
            return _Filter(left, None, None)
        self.pos += len(op)
        self.skip_space()
        if self.peek() == "@":
            right: Any = self._path(len(self.text), relative=True)
            is_path = True
        else:
            right, is_path = self._literal(), False
        self.skip_space()
        if self.peek() in ("&", "|"):
            raise self.fail("'&&' and '||' are not supported in filters")
        self.expect(")")
        return _Filter(left, op, right, is_path)

    def _literal(self) -> Any:
        c = self.peek()
        if c in ("'", '"'):
            return self._string()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return value
        start = self.pos
        while self.peek() and (self.peek().isdigit() or self.peek() in "+-.eE"):
            self.pos += 1
        raw = self.text[start : self.pos]
        try:
            number = float(raw)
        except ValueError:
            self.pos = start
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(
                f"expected a string, a number, true, false or null, found {found}"
            ) from None
        if math.isfinite(number) and number == int(number) and not any(ch in raw for ch in ".eE"):
            return int(number)
        return number


# --------------------------------------------------------------------------- evaluation


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return list(node)
    return []


def _walk(node: Any) -> Iterator[Any]:
    """The node and all its descendants, in document order (pre-order)."""
    yield node
    for child in _children(node):
        yield from _walk(child)


def _apply(step: _Step, node: Any) -> list[Any]:
    if isinstance(step, _Field):
        if isinstance(node, dict) and step.name in node:
            return [node[step.name]]
        return []
    if isinstance(step, _Index):
        if isinstance(node, list) and -len(node) <= step.index < len(node):
            return [node[step.index]]
        return []
    if isinstance(step, _Wildcard):
        return _children(node)
    if isinstance(step, _Slice):
        if isinstance(node, list):
            return node[step.start : step.stop : step.step]
        return []
    if isinstance(step, _Union):
        out: list[Any] = []
        for item in step.items:
            out.extend(_apply(item, node))
        return out
    if isinstance(step, _Filter):
        if not isinstance(node, list):
            return []
        return [item for item in node if _keep(step, item)]
    if isinstance(step, _Descend):
        found: list[Any] = []
        for each in _walk(node):
            found.extend(_apply(step.step, each))
        return found
    raise AssertionError(f"unknown step {step!r}")


def _evaluate(steps: tuple[_Step, ...], node: Any) -> list[Any]:
    nodes = [node]
    for step in steps:
        nodes = [found for each in nodes for found in _apply(step, each)]
        if not nodes:
            break
    return nodes


def _keep(step: _Filter, item: Any) -> bool:
    lefts = _evaluate(step.left, item)
    if step.op is None:
        return bool(lefts)
    if not lefts:
        return False
    left = lefts[0]
    if step.right_is_path:
        rights = _evaluate(step.right, item)
        if not rights:
            return False
        right = rights[0]
    else:
        right = step.right
    return _compare(step.op, left, right)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        if _is_number(left) and _is_number(right):
            equal = left == right
        else:
            equal = type(left) is type(right) and left == right
        return equal if op == "==" else not equal
    if _is_number(left) and _is_number(right):
        a, b = float(left), float(right)
    elif isinstance(left, str) and isinstance(right, str):
        a, b = left, right  # type: ignore[assignment]
    else:
        return False
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    return a >= b


# --------------------------------------------------------------------------- API


@dataclass(frozen=True)
class JSONPath:
    """A compiled expression."""

    text: str
    steps: tuple[_Step, ...]

    def find(self, data: Any) -> list[Any]:
        return _evaluate(self.steps, data)


@lru_cache(maxsize=256)
def compile_path(expr: str) -> JSONPath:
    """Parse ``expr`` once; ``ValueError`` says what is wrong and where."""
    if not isinstance(expr, str):
        raise ValueError(f"a JSONPath must be a string, got {type(expr).__name__}")
    if not expr.strip():
        raise ValueError("invalid JSONPath '': the expression is empty")
    return JSONPath(expr, _Parser(expr).parse())


def find(expr: str, data: Any) -> list[Any]:
    """Every value of ``data`` (parsed JSON) that ``expr`` selects, in document order."""
    return compile_path(expr).find(data)
