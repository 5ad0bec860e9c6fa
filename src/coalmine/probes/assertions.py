"""Checking a step's assertions against its response.

Each assertion gives an :class:`AssertionResult` whose ``actual`` is redacted and at most 200
characters, and a one-line ``message`` when it fails. Nothing raises: a missing header, a body
that is not JSON, comparing text with a number or an invalid regular expression are failed
assertions that say so.

Semantics worth knowing:

- ``jsonpath`` takes the first match, unless the expression can select several nodes
  (``*``, ``..``, filters, slices, unions): then the list of all matches;
- ``==`` / ``!=`` / ``in`` compare JSON values strictly by type (numbers by value), except that
  header, cookie and body text equals a number when it reads as that number;
- ``<`` ``<=`` ``>`` ``>=`` need numbers (header and cookie text is read as a number);
- ``contains``: substring of text, item of a list, key of an object;
- ``isEmpty``: ``""``, ``[]``, ``{}`` or ``null``; ``exists``: the header, cookie or path is
  there;
- ``not`` negates the check, but never turns "not found" or a type mismatch into a pass
  (except ``not exists``, which passes when the value is missing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from jsonschema.validators import validator_for

from coalmine.metrics.jsonpath import find
from coalmine.probes.model import Assertion, AssertionResult
from coalmine.probes.records import NotJSON, Observed
from coalmine.probes.secrets import Redactor

__all__ = ["MAX_ACTUAL", "evaluate", "evaluate_all", "is_multi_path", "shorten"]

MAX_ACTUAL = 200

_MISSING: Any = object()
_MULTI = re.compile(r"\*|\.\.|\[\s*\?|\[[^\]'\"]*[:,][^\]]*\]")


class _Mismatch(Exception):
    """The values cannot be compared this way (a failed assertion, not an error)."""


def shorten(text: str, limit: int = MAX_ACTUAL) -> str:
    text = " ".join(text.split()) if "\n" in text or "\r" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_multi_path(expr: str) -> bool:
    """Whether a JSONPath can select several nodes (then its value is the list of matches)."""
    return bool(_MULTI.search(expr))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(missing)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _as_number(value: Any, textual: bool) -> float | None:
    if _is_number(value):
        return float(value)
    if textual and isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equal(actual: Any, expected: Any, textual: bool) -> bool:
    if _is_number(actual) and _is_number(expected):
        return bool(actual == expected)
    if textual and isinstance(actual, str) and _is_number(expected):
        number = _as_number(actual, True)
        return number is not None and number == expected
    return type(actual) is type(expected) and bool(actual == expected)


def _order(op: str, actual: Any, expected: Any, textual: bool) -> bool:
    a, b = _as_number(actual, textual), _as_number(expected, False)
    if a is None or b is None:
        raise _Mismatch(f"{op} compares numbers, got {_kind(actual)} {_show(actual)}")
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _contains(actual: Any, expected: Any, textual: bool) -> bool:
    if isinstance(actual, str):
        needle = expected if isinstance(expected, str) else json.dumps(expected)
        return needle in actual
    if isinstance(actual, list):
        return any(_equal(item, expected, False) for item in actual)
    if isinstance(actual, dict):
        return isinstance(expected, str) and expected in actual
    raise _Mismatch(f"contains needs text, a list or an object, got {_kind(actual)}")


def _matches(actual: Any, pattern: Any) -> bool:
    if not isinstance(pattern, str):
        raise _Mismatch(f"matches needs a regular expression, got {_kind(pattern)}")
    if _is_number(actual) or isinstance(actual, bool):
        actual = json.dumps(actual)
    if not isinstance(actual, str):
        raise _Mismatch(f"matches needs text, got {_kind(actual)}")
    try:
        return re.search(pattern, actual) is not None
    except re.error as err:
        raise _Mismatch(f"invalid regular expression {pattern!r}: {err}") from None


def _is_empty(actual: Any) -> bool:
    if actual is None:
        return True
    if isinstance(actual, str | list | dict):
        return len(actual) == 0
    raise _Mismatch(f"isEmpty needs text, a list or an object, got {_kind(actual)}")


def _schema_errors(instance: Any, schema: dict[str, Any]) -> str | None:
    validator = validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    at = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{at}: {first.message}{more}"


def _check(op: str, actual: Any, expected: Any, textual: bool) -> bool:
    if op == "==":
        return _equal(actual, expected, textual)
    if op == "!=":
        return not _equal(actual, expected, textual)
    if op in ("<", "<=", ">", ">="):
        return _order(op, actual, expected, textual)
    if op == "contains":
        return _contains(actual, expected, textual)
    if op == "matches":
        return _matches(actual, expected)
    if op == "isEmpty":
        return _is_empty(actual)
    if op == "in":
        if not isinstance(expected, list):
            raise _Mismatch(f"in needs a list, got {_kind(expected)}")
        return any(_equal(actual, item, textual) for item in expected)
    raise _Mismatch(f"unknown operator {op!r}")


def evaluate(
    assertion: Assertion,
    response: Observed,
    redactor: Redactor,
    value: Any = _MISSING,
) -> AssertionResult:
    """Check one assertion. ``value`` overrides ``assertion.value`` (the rendered template)."""
    expected = assertion.value if value is _MISSING else value
    subject, op, text = assertion.subject, assertion.operator, assertion.text

    def result(passed: bool, actual: Any, message: str = "") -> AssertionResult:
        if subject == "header" and isinstance(actual, str) and assertion.arg:
            shown = redactor.redact_header(assertion.arg, actual)
        else:
            shown = redactor.redact(_show(actual))
        if not passed and not message:
            message = f"{text}: got {shown}"
        return AssertionResult(
            text=shorten(redactor.redact(text)),
            passed=passed,
            actual=shorten(shown),
            message=shorten(redactor.redact(message), 300) if not passed else "",
        )

    textual = subject in ("header", "cookie", "body")
    try:
        actual = _subject_value(assertion, response)
    except NotJSON as err:
        return result(False, _MISSING, f"{text}: {err}")

    if subject == "schema":
        if not isinstance(expected, dict):
            return result(False, actual, f"{text}: the schema is not an object")
        problem = _schema_errors(actual, expected)
        passed = (problem is None) != assertion.negate
        if passed:
            return result(True, actual)
        why = problem if problem else "the body matches the schema"
        return result(False, actual, f"{text}: {why}")

    if op == "exists":
        present = actual is not _MISSING
        passed = present != assertion.negate
        why = "present" if present else "not found"
        return result(passed, actual, "" if passed else f"{text}: {why}")
    if actual is _MISSING:
        what = assertion.arg or subject
        return result(False, actual, f"{text}: {what} not found")
    try:
        outcome = _check(op, actual, expected, textual)
    except _Mismatch as err:
        return result(False, actual, f"{text}: {err}")
    passed = outcome != assertion.negate
    return result(passed, actual)


def _subject_value(assertion: Assertion, response: Observed) -> Any:
    subject = assertion.subject
    if subject == "status":
        return response.status
    if subject == "header":
        found = response.header(assertion.arg or "")
        return _MISSING if found is None else found
    if subject == "cookie":
        return response.cookies.get(assertion.arg or "", _MISSING)
    if subject == "body":
        return response.text
    if subject == "latency":
        return response.latency_s
    if subject == "flow_latency":
        return response.flow_latency_s
    if subject == "schema":
        return response.json()
    if subject == "jsonpath":
        expr = assertion.arg or "$"
        data = response.json()
        try:
            matches = find(expr, data)
        except ValueError:
            return _MISSING
        if is_multi_path(expr):
            return matches if matches else _MISSING
        return matches[0] if matches else _MISSING
    return _MISSING


def evaluate_all(
    assertions: tuple[Assertion, ...],
    response: Observed,
    redactor: Redactor,
    render: Callable[[Any], Any] | None = None,
) -> tuple[AssertionResult, ...]:
    """Every assertion in order. ``render`` turns template values into values; when it raises,
    that assertion fails with the error's message."""
    out: list[AssertionResult] = []
    for assertion in assertions:
        value = assertion.value
        if render is not None and assertion.subject != "schema":
            try:
                value = render(value)
            except Exception as err:  # a template error: this assertion cannot be checked
                message = redactor.redact(f"{assertion.text}: {err}")
                out.append(AssertionResult(shorten(assertion.text), False, "", shorten(message)))
                continue
        out.append(evaluate(assertion, response, redactor, value))
    return tuple(out)
