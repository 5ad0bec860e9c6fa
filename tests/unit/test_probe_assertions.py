"""Assertions and captures on a probe response (pure: no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coalmine.probes.assertions import evaluate, evaluate_all
from coalmine.probes.extract import ExtractError, extract
from coalmine.probes.model import Assertion, AssertionResult, Extract
from coalmine.probes.records import Observed
from coalmine.probes.secrets import Redactor
from coalmine.probes.template import Scope, render_json

BODY = {
    "id": "ord-17",
    "count": 2,
    "items": [{"sku": "a", "price": 3.5}, {"sku": "b", "price": 7}],
    "tags": ["new", "gift"],
    "meta": {},
    "note": "",
    "owner": None,
}


def response(body: Any = BODY, status: int = 200, **kw: Any) -> Observed:
    text = body if isinstance(body, str) else json.dumps(body)
    headers = kw.pop(
        "headers",
        [("Content-Type", "application/json"), ("X-Count", "42"), ("Set-Cookie", "sid=x")],
    )
    return Observed(
        status=status,
        headers=headers,
        text=text,
        cookies=kw.pop("cookies", {"theme": "dark"}),
        latency_s=kw.pop("latency_s", 0.120),
        flow_latency_s=kw.pop("flow_latency_s", 0.900),
    )


def check(
    subject: str,
    op: str,
    value: Any = None,
    arg: str | None = None,
    negate: bool = False,
    resp: Observed | None = None,
    redactor: Redactor | None = None,
) -> AssertionResult:
    text = f"{subject} {arg or ''} {'not ' if negate else ''}{op} {value}"
    a = Assertion(subject, op, text, arg=arg, value=value, negate=negate)  # type: ignore[arg-type]
    return evaluate(a, resp or response(), redactor or Redactor())


@pytest.mark.parametrize(
    ("subject", "op", "value", "arg", "negate", "passed"),
    [
        ("status", "==", 200, None, False, True),
        ("status", "!=", 200, None, False, False),
        ("status", "in", [200, 204], None, False, True),
        ("status", "in", [201, 204], None, False, False),
        ("status", "<", 300, None, False, True),
        ("status", ">=", 500, None, False, False),
        ("header", "contains", "json", "content-type", False, True),
        ("header", "==", 42, "X-Count", False, True),  # header text reads as a number
        ("header", ">", 41, "X-Count", False, True),
        ("header", "exists", None, "X-Missing", True, True),
        ("header", "exists", None, "X-Missing", False, False),
        ("cookie", "==", "dark", "theme", False, True),
        ("body", "contains", '"id": "ord-17"', None, False, True),
        ("body", "matches", r"ord-\d+", None, False, True),
        ("body", "isEmpty", None, None, True, True),
        ("jsonpath", "==", "ord-17", "$.id", False, True),
        ("jsonpath", "==", "17", "$.count", False, False),  # JSON types are strict
        ("jsonpath", "==", 2.0, "$.count", False, True),  # numbers by value
        ("jsonpath", "<=", 3.5, "$.items[0].price", False, True),
        ("jsonpath", "contains", "gift", "$.tags", False, True),
        ("jsonpath", "contains", "sku", "$.items[0]", False, True),  # object key
        ("jsonpath", "contains", "b", "$.items[*].sku", False, True),  # all matches
        ("jsonpath", "==", ["a", "b"], "$.items[*].sku", False, True),
        ("jsonpath", "isEmpty", None, "$.meta", False, True),
        ("jsonpath", "isEmpty", None, "$.note", False, True),
        ("jsonpath", "isEmpty", None, "$.owner", False, True),
        ("jsonpath", "isEmpty", None, "$.tags", True, True),
        ("jsonpath", "exists", None, "$.items[1].sku", False, True),
        ("jsonpath", "exists", None, "$.items[5]", True, True),
        ("jsonpath", "in", ["x", "ord-17"], "$.id", False, True),
        ("jsonpath", "matches", "^ord-", "$.id", True, False),
        ("latency", "<", 0.5, None, False, True),
        ("latency", "<", 0.1, None, False, False),
        ("flow_latency", "<=", 0.9, None, False, True),
    ],
)
def test_operators(
    subject: str, op: str, value: Any, arg: str | None, negate: bool, passed: bool
) -> None:
    result = check(subject, op, value, arg, negate)
    assert result.passed is passed, result
    assert (result.message == "") is passed
    if not passed:
        assert "\n" not in result.message


def test_type_mismatches_are_failed_assertions_that_say_why() -> None:
    result = check("jsonpath", "<", 5, "$.id")
    assert not result.passed
    assert "compares numbers, got text" in result.message
    assert result.actual == '"ord-17"'
    negated = check("jsonpath", "<", 5, "$.id", negate=True)
    assert not negated.passed  # negation never turns a mismatch into a pass
    assert "needs text, a list or an object" in check("jsonpath", "contains", 1, "$.count").message
    assert "invalid regular expression" in check("body", "matches", "(").message


def test_missing_values_and_non_json_bodies_fail_with_a_clear_message() -> None:
    missing = check("jsonpath", "==", 1, "$.nope", negate=True)
    assert not missing.passed and "$.nope not found" in missing.message
    assert missing.actual == "(missing)"
    html = response("<html>oops</html>", headers=[("Content-Type", "text/html")])
    bad = check("jsonpath", "exists", None, "$.id", resp=html)
    assert not bad.passed and "the body is not JSON (text/html)" in bad.message


def test_json_schema_validation() -> None:
    schema = {
        "type": "object",
        "required": ["id", "items"],
        "properties": {"items": {"type": "array", "items": {"required": ["sku", "qty"]}}},
    }
    result = check("schema", "valid", schema)
    assert not result.passed
    assert "$.items[0]: 'qty' is a required property (+1 more)" in result.message
    assert check("schema", "valid", {"required": ["id"]}).passed
    assert check("schema", "valid", {"required": ["zzz"]}, negate=True).passed


def test_actual_values_are_redacted_and_shortened() -> None:
    redactor = Redactor()
    redactor.add("tok-secret-value")
    resp = response({"token": "tok-secret-value", "long": "x" * 500})
    result = check("jsonpath", "==", "other", "$.token", resp=resp, redactor=redactor)
    assert result.actual == '"***"' and "tok-secret-value" not in result.message
    long = check("jsonpath", "==", "y", "$.long", resp=resp)
    assert len(long.actual) == 200 and long.actual.endswith("...")
    auth = response(headers=[("Authorization-Echo", "Bearer abc"), ("X-Api-Key", "k")])
    shown = check("header", "==", "z", "X-Api-Key", resp=auth)
    assert shown.actual == "***"


def test_assertion_values_are_rendered_and_template_errors_fail_the_assertion() -> None:
    scope = Scope([{"order_id": "ord-17", "n": 2}])
    asserts = (
        Assertion(
            "jsonpath", "==", 'jsonpath "$.id" == "{{ order_id }}"', "$.id", "{{ order_id }}"
        ),
        Assertion("jsonpath", "==", 'jsonpath "$.count" == "{{ n }}"', "$.count", "{{ n }}"),
        Assertion("jsonpath", "==", 'jsonpath "$.id" == "{{ zzz }}"', "$.id", "{{ zzz }}"),
    )
    results = evaluate_all(asserts, response(), Redactor(), lambda v: render_json(v, scope))
    assert [r.passed for r in results] == [True, True, False]
    assert "unknown variable 'zzz'" in results[2].message


# --------------------------------------------------------------------------- captures


def test_captures_from_every_source() -> None:
    resp = response(
        headers=[("Location", "/api/orders/ord-17"), ("Content-Type", "application/json")]
    )
    assert extract(Extract("id", "jsonpath", "$.items[1].price"), resp) == 7
    assert extract(Extract("loc", "header", "location"), resp) == "/api/orders/ord-17"
    assert extract(Extract("num", "regex", r'"id": "ord-(\d+)"'), resp) == "17"
    assert extract(Extract("all", "regex", r"ord-\d+"), resp) == "ord-17"
    assert extract(Extract("two", "regex", r'"(sku)": "(b)"', group=2), resp) == "b"
    assert extract(Extract("t", "cookie", "theme"), resp) == "dark"
    assert extract(Extract("s", "status"), resp) == 200


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            Extract("order_id", "jsonpath", "$.nothing"),
            "capture 'order_id': $.nothing matched nothing",
        ),
        (Extract("h", "header", "X-Nope"), "capture 'h': no header 'X-Nope'"),
        (Extract("c", "cookie", "sid2"), "capture 'c': no cookie 'sid2'"),
        (Extract("r", "regex", "zzz(\\d)"), "capture 'r': /zzz(\\d)/ matched nothing"),
        (Extract("g", "regex", "(ord)", group=3), "capture 'g': the pattern has no group 3"),
    ],
)
def test_a_capture_that_finds_nothing_names_the_capture(spec: Extract, message: str) -> None:
    with pytest.raises(ExtractError) as err:
        extract(spec, response())
    assert message in str(err.value)


def test_a_jsonpath_capture_on_a_non_json_body_fails() -> None:
    with pytest.raises(ExtractError, match="capture 'x': the body is not JSON"):
        extract(Extract("x", "jsonpath", "$.a"), response("plain text"))
