"""JSON Schemas (draft 2020-12) of the files coalmine accepts, for editors and CI.

They describe what coalmine *runs*: Kubernetes-only fields appear as "accepted and ignored",
Argo features that are not supported yet are left out.
"""

from __future__ import annotations

from typing import Any

from coalmine.spec.loader import (
    ANALYSIS_IGNORED,
    API_VERSION,
    CANARY_IGNORED,
    COALMINE_ANNOTATIONS,
    METADATA_IGNORED,
    PROVIDER_FIELDS,
    ROLLOUT_CLASSES,
    ROLLOUT_SPEC_IGNORED,
    TRAFFIC_ROUTING_IGNORED,
)
from coalmine.spec.resolve import ROUTER_QUERIES, ROUTER_VERSIONS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("rollout", "analysis-template", "config", "replay-data")

Schema = dict[str, Any]

_TEMPLATED = {"type": "string", "pattern": r"\{\{\s*args\.[A-Za-z0-9_.-]+\s*\}\}"}
_DURATION: Schema = {
    "description": "30s, 5m, 1h, 1h30m, 250ms, or a number of seconds",
    "anyOf": [
        {"type": "string", "pattern": r"^(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h))+)$"},
        {"type": "number", "minimum": 0},
    ],
}
_IGNORED: Schema = {"description": "Kubernetes-only: accepted and ignored"}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_NAME: Schema = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}


def _obj(props: Schema, required: tuple[str, ...] = (), ignored: tuple[str, ...] = ()) -> Schema:
    out: Schema = {
        "type": "object",
        "properties": {**props, **{k: _IGNORED for k in ignored}},
        "additionalProperties": False,
    }
    if required:
        out["required"] = list(required)
    return out


def _one_of_keys(options: dict[str, Schema]) -> Schema:
    """An object with exactly one of ``options``' keys."""
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": options,
        "additionalProperties": False,
    }


def _metadata(annotations: Schema) -> Schema:
    return _obj(
        {
            "name": _NAME,
            "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "labels": _STRING_MAP,
            "annotations": annotations,
        },
        required=("name",),
        ignored=METADATA_IGNORED,
    )


def _document(kinds: list[str], metadata: Schema, spec: Schema, title: str) -> Schema:
    return {
        "$schema": DIALECT,
        "title": title,
        **_obj(
            {
                "apiVersion": {"const": API_VERSION},
                "kind": {"enum": kinds},
                "metadata": metadata,
                "spec": spec,
                "status": _IGNORED,
            },
            required=("apiVersion", "kind", "metadata", "spec"),
        ),
    }


# --------------------------------------------------------------------------- rollout

_ANNOTATIONS: Schema = {
    "type": "object",
    "description": "coalmine.dev/* keys are checked; other annotations pass through",
    "properties": {
        "coalmine.dev/version": {"type": "string", "description": "the canary's version"},
        "coalmine.dev/service": {"type": "string", "description": "service in coalmine.yaml"},
        "coalmine.dev/environment": {"type": "string"},
        "coalmine.dev/class": {"enum": list(ROLLOUT_CLASSES)},
        "coalmine.dev/owner": {"type": "string"},
    },
    "propertyNames": {
        "anyOf": [{"not": {"pattern": "^coalmine\\.dev/"}}, {"enum": list(COALMINE_ANNOTATIONS)}]
    },
    "additionalProperties": {"type": "string"},
}


def _analysis(extra: Schema) -> Schema:
    return _obj(
        {
            "templates": {
                "type": "array",
                "minItems": 1,
                "items": _obj(
                    {"templateName": {"type": "string"}, "clusterScope": {"type": "boolean"}},
                    required=("templateName",),
                ),
            },
            "args": {
                "type": "array",
                "items": _obj(
                    {"name": {"type": "string"}, "value": {"type": "string"}},
                    required=("name", "value"),
                ),
            },
            "dryRun": {
                "type": "array",
                "items": _obj({"metricName": {"type": "string"}}, required=("metricName",)),
            },
            **extra,
        },
        required=("templates",),
        ignored=ANALYSIS_IGNORED,
    )


def _header_route() -> Schema:
    value = _one_of_keys({k: {"type": "string"} for k in ("exact", "prefix", "regex")})
    match = _obj(
        {"headerName": {"type": "string"}, "headerValue": value},
        required=("headerName", "headerValue"),
    )
    return _obj(
        {"name": {"type": "string"}, "match": {"type": "array", "items": match}}, required=("name",)
    )


def _rollout() -> Schema:
    step = _one_of_keys(
        {
            "setWeight": {"type": "integer", "minimum": 0, "maximum": 100},
            "pause": _obj({"duration": _DURATION}),
            "analysis": _analysis({}),
            "setHeaderRoute": _header_route(),
        }
    )
    canary = _obj(
        {
            "steps": {"type": "array", "items": step},
            "analysis": _analysis({"startingStep": {"type": "integer", "minimum": 0}}),
            "trafficRouting": _obj(
                {
                    "managedRoutes": {
                        "type": "array",
                        "items": _obj({"name": {"type": "string"}}, required=("name",)),
                    }
                },
                ignored=TRAFFIC_ROUTING_IGNORED,
            ),
        },
        ignored=CANARY_IGNORED,
    )
    spec = _obj(
        {"strategy": _obj({"canary": canary}, required=("canary",))},
        required=("strategy",),
        ignored=ROLLOUT_SPEC_IGNORED,
    )
    return _document(["Rollout"], _metadata(_ANNOTATIONS), spec, "coalmine Rollout")


# --------------------------------------------------------------------------- analysis template


def _router_plugin() -> Schema:
    return _obj(
        {
            "query": {"enum": list(ROUTER_QUERIES)},
            "version": {"anyOf": [{"enum": list(ROUTER_VERSIONS)}, _TEMPLATED]},
            "quantile": {
                "description": "latency only; default 0.99",
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    _TEMPLATED,
                ],
            },
            "window": {"description": "default 1m", "anyOf": [_DURATION, _TEMPLATED]},
            "minRequests": {
                "description": "default 20",
                "anyOf": [{"type": "integer", "minimum": 0}, _TEMPLATED],
            },
        },
        required=("query",),
    )


def _analysis_template() -> Schema:
    int_or_str = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^-?\d+$"}]}
    plugin = _one_of_keys(
        {
            "coalmine/router": _router_plugin(),
            "coalmine/judge": {"type": "object"},
            "coalmine/probe": {"type": "object"},
        }
    )
    provider = _one_of_keys(
        {
            **{k: _obj({f: {} for f in fields}) for k, fields in PROVIDER_FIELDS.items()},
            "plugin": plugin,
        }
    )
    metric = _obj(
        {
            "name": {"type": "string", "minLength": 1},
            "interval": _DURATION,
            "initialDelay": _DURATION,
            "count": int_or_str,
            "successCondition": {"type": "string"},
            "failureCondition": {"type": "string"},
            "failureLimit": {**int_or_str, "description": "default 0; -1 is unlimited"},
            "inconclusiveLimit": {**int_or_str, "description": "default 0"},
            "consecutiveErrorLimit": {**int_or_str, "description": "default 4"},
            "consecutiveFailureLimit": {
                **int_or_str,
                "description": "coalmine: fail when more than this many measurements in a row "
                "failed (not an Argo field; unset by default)",
            },
            "provider": provider,
        },
        required=("name", "provider"),
    )
    spec = _obj(
        {
            "args": {
                "type": "array",
                "items": _obj(
                    {"name": {"type": "string"}, "value": {"type": "string"}}, required=("name",)
                ),
            },
            "metrics": {"type": "array", "minItems": 1, "items": metric},
            "dryRun": {
                "type": "array",
                "items": _obj({"metricName": {"type": "string"}}, required=("metricName",)),
            },
        },
        required=("metrics",),
        ignored=("measurementRetention",),
    )
    return _document(
        ["AnalysisTemplate", "ClusterAnalysisTemplate"],
        _metadata(_STRING_MAP),
        spec,
        "coalmine AnalysisTemplate / ClusterAnalysisTemplate",
    )


# --------------------------------------------------------------------------- coalmine.yaml


def _config() -> Schema:
    http_url = {"type": "string", "pattern": r"^http://[^/:]+(:\d+)/?$"}
    host_port = {"type": "string", "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$"}
    upstream = _obj({"url": http_url, "version": {"type": "string"}}, required=("url",))
    nullable = {"type": ["string", "null"]}
    service = _obj(
        {
            "stable": upstream,
            "canary": upstream,
            "baseline": {
                **upstream,
                "description": "optional: a fresh copy of the stable version that gets the "
                "same share of tenants as the canary, to judge the canary against",
            },
            "tenancy": _obj(
                {
                    "header": {**nullable, "description": "default X-Tenant; null disables"},
                    "cookie": nullable,
                    "testTenants": {"type": "array", "items": {"type": "string"}},
                }
            ),
            "router": _obj(
                {
                    "listen": {**host_port, "description": "default 127.0.0.1:8080"},
                    "admin": {**host_port, "description": "default 127.0.0.1:8081"},
                    "overrideHeader": {"type": "string"},
                    "connectTimeout": _DURATION,
                    "requestTimeout": _DURATION,
                    "stateFile": {"type": "string"},
                }
            ),
        },
        required=("stable", "canary"),
    )
    environment = _obj(
        {
            "database": {"type": "string", "description": "SQLAlchemy URL"},
            "receipts": {"type": "string", "description": "directory for receipts"},
            "services": {"type": "object", "additionalProperties": service},
        }
    )
    return {
        "$schema": DIALECT,
        "title": "coalmine.yaml",
        **_obj(
            {
                "defaultEnvironment": {"type": "string"},
                "environments": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": environment,
                },
            },
            required=("environments",),
        ),
    }


def json_schema(kind: str) -> dict[str, Any]:
    """The schema for ``rollout``, ``analysis-template``, ``config`` or ``replay-data``."""
    builders = {
        "rollout": _rollout,
        "analysis-template": _analysis_template,
        "config": _config,
        "replay-data": _replay_data,
    }
    if kind not in builders:
        from coalmine.errors import SpecError

        raise SpecError(f"unknown schema {kind!r}", hint="one of: " + ", ".join(KINDS))
    return builders[kind]()


def _replay_data() -> Schema:
    """One line of `coalmine analyze replay --data` (published with the package)."""
    from coalmine.analysis.replay import data_schema

    return data_schema()
