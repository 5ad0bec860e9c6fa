"""Captures: one value from a response into a variable for later steps.

``jsonpath`` takes the first match (the value keeps its JSON type), ``regex`` a group of the
first match in the body (group 1 when the pattern has groups, else the whole match), ``header``
and ``cookie`` the named value (text), ``status`` the status code. When nothing is found the
step fails with the reason ``extract`` and a message naming the capture — never its value.
"""

from __future__ import annotations

import re
from typing import Any

from coalmine.metrics.jsonpath import find
from coalmine.probes.model import Extract
from coalmine.probes.records import NotJSON, Observed

__all__ = ["ExtractError", "extract"]


class ExtractError(Exception):
    """A capture found nothing (the probe reason ``extract``)."""


def extract(spec: Extract, response: Observed) -> Any:
    what = f"capture '{spec.name}'"
    if spec.source == "status":
        return response.status
    if spec.source == "header":
        value = response.header(spec.expr)
        if value is None:
            raise ExtractError(f"{what}: no header {spec.expr!r} in the response")
        return value
    if spec.source == "cookie":
        if spec.expr not in response.cookies:
            raise ExtractError(f"{what}: no cookie {spec.expr!r} was set")
        return response.cookies[spec.expr]
    if spec.source == "jsonpath":
        try:
            data = response.json()
        except NotJSON as err:
            raise ExtractError(f"{what}: {err}") from None
        try:
            matches = find(spec.expr, data)
        except ValueError as err:
            raise ExtractError(f"{what}: {err}") from None
        if not matches:
            raise ExtractError(f"{what}: {spec.expr} matched nothing")
        return matches[0]
    if spec.source == "regex":
        try:
            pattern = re.compile(spec.expr)
        except re.error as err:
            raise ExtractError(f"{what}: invalid regular expression: {err}") from None
        match = pattern.search(response.text)
        if match is None:
            raise ExtractError(f"{what}: /{spec.expr}/ matched nothing in the body")
        group = spec.group if spec.group is not None else (1 if pattern.groups else 0)
        if group > pattern.groups:
            raise ExtractError(f"{what}: the pattern has no group {group}")
        value = match.group(group)
        if value is None:
            raise ExtractError(f"{what}: group {group} did not take part in the match")
        return value
    raise ExtractError(f"{what}: unknown source {spec.source!r}")
