"""JSON Schema (draft 2020-12) of ``slos.yaml``, published as ``coalmine schema slos``.

It describes the shape; the loader also checks what a schema cannot (windows against alert
windows, whole buckets, known time zones) and reports it at file:line.
"""

from __future__ import annotations

from typing import Any

from coalmine.slo.loader import (
    BUDGETING_FIELDS,
    RELEASE_FIELDS,
    RULE_FIELDS,
    SERVICE_NAME,
    SLO_FIELDS,
    SOURCE_FIELDS,
)
from coalmine.slo.spec import (
    API_VERSION,
    BUDGETING_METHODS,
    KIND,
    MISSING_DATA,
    SEVERITIES,
    SLI_SOURCES,
    SLI_TYPES,
)

Schema = dict[str, Any]

_SPAN: Schema = {
    "description": "5m, 1h, 30d, 1w, 1d12h, 300ms, or a number of seconds",
    "anyOf": [
        {"type": "string", "pattern": r"^(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h|d|w))+)$"},
        {"type": "number", "exclusiveMinimum": 0},
    ],
}
_PERCENT: Schema = {"type": "number", "minimum": 0, "maximum": 100}
_QUERY: Schema = {
    "type": "string",
    "description": "a counter's series selector, or PromQL counting events over {{window}}",
    "minLength": 1,
}


def _obj(props: Schema, required: tuple[str, ...] = ()) -> Schema:
    out: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _sli() -> Schema:
    props: Schema = {
        "type": {"enum": list(SLI_TYPES)},
        "source": {"enum": list(SLI_SOURCES)},
        "threshold": {**_SPAN, "description": "latency: good is at most this fast (e.g. 300ms)"},
        "admin": {"type": "string", "description": "router: admin host:port"},
        "environment": {
            "type": "string",
            "minLength": 1,
            "description": "probe: the environment whose runs count (e.g. prod); required",
        },
        "flows": {
            "description": "probe: flow name(s) whose runs count, besides flows bound by slo:",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
        },
        "address": {"type": "string", "pattern": "^https?://"},
        "good": _QUERY,
        "bad": _QUERY,
        "total": _QUERY,
    }
    assert set(props) == {"type", "source", "threshold"} | {
        k for keys in SOURCE_FIELDS.values() for k in keys
    }
    by_source: list[Schema] = [
        {
            "if": {"properties": {"source": {"const": name}}},
            "then": {"propertyNames": {"enum": ["type", "source", "threshold", *keys]}},
        }
        for name, keys in SOURCE_FIELDS.items()
    ]
    by_source.append(
        {
            "if": {"properties": {"source": {"const": "probe"}}},
            "then": {"required": ["environment"]},
        }
    )
    return {**_obj(props, ("type", "source")), "allOf": by_source}


def _slo() -> Schema:
    window = {
        "anyOf": [
            {**_SPAN, "description": "a rolling window, e.g. 30d, 28d or 7d"},
            _obj({"rolling": _SPAN}, ("rolling",)),
            _obj(
                {"calendar": {"enum": ["month"]}, "timezone": {"type": "string"}},
                ("calendar",),
            ),
        ]
    }
    budgeting = {
        "anyOf": [
            {"const": "occurrences"},
            _obj(
                {
                    "method": {"enum": list(BUDGETING_METHODS)},
                    "slice": _SPAN,
                    "goodRatio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                },
                ("method",),
            ),
        ]
    }
    rule = _obj(
        {
            "name": {"type": "string"},
            "severity": {"enum": list(SEVERITIES)},
            "long": _SPAN,
            "short": _SPAN,
            "factor": {"type": "number", "exclusiveMinimum": 0},
            "for": _SPAN,
        },
        ("severity", "long", "short", "factor"),
    )
    release = _obj(
        {
            "normalAbove": _PERCENT,
            "cautiousAbove": _PERCENT,
            "pauseFactor": {"type": "number", "minimum": 1},
            "accelerateFactor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        }
    )
    props: Schema = {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "service": {
            "type": "string",
            "pattern": f"^{SERVICE_NAME.pattern}$",
            "maxLength": 253,
            "description": "the service in coalmine.yaml",
        },
        "description": {"type": "string"},
        "objective": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
        "sli": _sli(),
        "window": window,
        "budgeting": budgeting,
        "missingData": {"enum": list(MISSING_DATA)},
        "alerting": {"type": "array", "items": rule, "minItems": 1},
        "releasePolicy": release,
        "resolution": _SPAN,
        "traffic": {
            "description": "expected events, e.g. 10/s or 60/h",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*/\s*[smhd]\s*$"},
            ],
        },
    }
    assert set(props) == set(SLO_FIELDS)
    assert set(rule["properties"]) == set(RULE_FIELDS)
    assert set(release["properties"]) == set(RELEASE_FIELDS)
    assert set(budgeting["anyOf"][1]["properties"]) == set(BUDGETING_FIELDS)
    return _obj(props, ("name", "service", "objective", "sli", "window"))


def slos_schema() -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "coalmine slos.yaml (SLOSet)",
        **_obj(
            {
                "apiVersion": {"const": API_VERSION},
                "kind": {"const": KIND},
                "metadata": {"type": "object"},
                "slos": {"type": "array", "items": _slo(), "minItems": 1},
            },
            ("slos",),
        ),
    }
