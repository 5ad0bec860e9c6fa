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
KINDS = (
    "rollout",
    "analysis-template",
    "config",
    "replay-data",
    "probe-flow",
    "probe-library",
    "slos",
)

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
            "slos": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "description": "SLO files, relative to coalmine.yaml, for the release policy",
            },
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
    """The schema for one of :data:`KINDS`."""
    builders = {
        "rollout": _rollout,
        "analysis-template": _analysis_template,
        "config": _config,
        "replay-data": _replay_data,
        "probe-flow": _probe_flow,
        "probe-library": _probe_library,
        "slos": _slos,
    }
    if kind not in builders:
        from coalmine.errors import SpecError

        raise SpecError(f"unknown schema {kind!r}", hint="one of: " + ", ".join(KINDS))
    return builders[kind]()


def _slos() -> Schema:
    """slos.yaml (coalmine's SLOSet; see docs/slo.md)."""
    from coalmine.slo.schema import slos_schema

    return slos_schema()


def _replay_data() -> Schema:
    """One line of `coalmine analyze replay --data` (published with the package)."""
    from coalmine.analysis.replay import data_schema

    return data_schema()


# --------------------------------------------------------------------------- probe flows


def _probe_defs() -> Schema:
    """Shared parts of probe flows and libraries (``$defs``)."""
    from coalmine.probes import loader as p

    identifier = r"^[A-Za-z_][A-Za-z0-9_]*$"
    name_key = {"pattern": identifier, "not": {"enum": list(p.RESERVED)}}
    scalar_map = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
    template: Schema = {
        "type": "string",
        "description": "a template: {{ name }}, {{ secrets.name }}, {{ env.NAME }}",
    }
    subjects = "|".join(p.SUBJECTS)
    extract = {
        "type": "object",
        "properties": {
            "jsonpath": {"type": "string", "minLength": 1, "description": "first match"},
            "regex": {"type": "string", "minLength": 1, "description": "against the body"},
            "header": {"type": "string", "minLength": 1},
            "cookie": {"type": "string", "minLength": 1},
            "status": {"const": True},
            "group": {"type": "integer", "minimum": 0, "description": "regex only"},
            "secret": {"type": "boolean", "description": "redact the value everywhere"},
        },
        "additionalProperties": False,
        "oneOf": [{"required": [k]} for k in p.EXTRACT_SOURCES],
    }
    assertion = {
        "anyOf": [
            {
                "type": "string",
                "description": "<subject> [<arg>] [not] <operator> [<value>], e.g. "
                'status == 200, header "Content-Type" contains "json", latency < 500ms',
                "pattern": rf"^\s*({subjects})\b",
            },
            _obj(
                {
                    "schema": {
                        "description": "an inline JSON Schema, or a file relative to the flow",
                        "anyOf": [{"type": "object"}, {"type": "string", "minLength": 1}],
                    }
                },
                required=("schema",),
            ),
        ]
    }
    two_bodies = [
        {"required": [a, b]} for i, a in enumerate(p.BODY_FIELDS) for b in p.BODY_FIELDS[i + 1 :]
    ]
    request = _obj(
        {
            "method": {"enum": [*p.METHODS, *(m.lower() for m in p.METHODS)]},
            "url": {**template, "description": "a path joined to base_url, or an http(s) URL"},
            "headers": scalar_map,
            "query": scalar_map,
            "json": {"description": "a JSON body; strings inside are templates"},
            "form": scalar_map,
            "body": template,
            "timeout": _DURATION,
            "follow_redirects": {"type": "boolean"},
            "tls": _obj({"verify": {"type": "boolean"}, "ca": {"type": "string"}}),
            "auth": {"type": "string", "description": "an auth scheme, or none"},
        },
        required=("url",),
    )
    request["not"] = {"anyOf": two_bodies}
    step = _obj(
        {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
            "request": request,
            "extract": {
                "type": "object",
                "propertyNames": name_key,
                "additionalProperties": extract,
            },
            "assert": {"type": "array", "items": assertion},
            "retry": _obj(
                {
                    "count": {"type": "integer", "minimum": 0, "maximum": 20},
                    "interval": _DURATION,
                    "backoff": {"type": "number", "minimum": 1, "maximum": 10},
                    "on": {"enum": list(p.RETRY_ON)},
                }
            ),
            "allow_failure": {"type": "boolean"},
            "critical": {"type": "boolean"},
        },
        required=("name", "request"),
    )
    secret = _one_of_keys(
        {"env": {"type": "string", "pattern": identifier}, "file": {"type": "string"}}
    )
    return {
        "step": step,
        "variables": {
            "type": "object",
            "propertyNames": name_key,
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "secrets": {"type": "object", "propertyNames": name_key, "additionalProperties": secret},
        "labels": _STRING_MAP,
    }


def _probe_document(kind: str, props: Schema, required: tuple[str, ...], title: str) -> Schema:
    from coalmine.probes import loader as p

    return {
        "$schema": DIALECT,
        "title": title,
        **_obj(
            {"apiVersion": {"const": p.API_VERSION}, "kind": {"const": kind}, **props},
            required=("apiVersion", "kind", *required),
        ),
        "$defs": _probe_defs(),
    }


_PROBE_NAME: Schema = {
    "type": "string",
    "maxLength": 63,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
}
_STEPS: Schema = {"type": "array", "items": {"$ref": "#/$defs/step"}}


def _probe_flow() -> Schema:
    """A synthetic probe flow (``synthetics/*.yaml``)."""
    from coalmine.probes import loader as p

    environment = _obj(
        {
            "base_url": {"type": "string", "minLength": 1},
            "variables": {"$ref": "#/$defs/variables"},
            "secrets": {"$ref": "#/$defs/secrets"},
        },
        required=("base_url",),
    )
    props: Schema = {
        "metadata": _obj(
            {
                "name": _PROBE_NAME,
                "service": {"type": "string", "minLength": 1},
                "owner": {"type": "string"},
                "labels": {"$ref": "#/$defs/labels"},
            },
            required=("name", "service"),
        ),
        "slo": {
            "description": "the SLO the final results count against",
            "anyOf": [
                {"type": "string", "minLength": 1},
                _obj(
                    {
                        "name": {"type": "string", "minLength": 1},
                        "objective": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "exclusiveMaximum": 100,
                            "description": "percent, e.g. 99.9",
                        },
                    },
                    required=("name",),
                ),
            ],
        },
        "schedule": _obj(
            {
                "interval": {**_DURATION, "description": "default 1m"},
                "jitter": {**_DURATION, "description": "default 0; shorter than interval"},
                "timeout": {**_DURATION, "description": "a whole run; default 30s"},
                "locations": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "string", "minLength": 1},
                },
                "versions": {
                    "type": "array",
                    "uniqueItems": True,
                    "items": {"enum": list(p.VERSIONS)},
                },
            }
        ),
        "uses": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1},
            "description": "library files, relative to this file",
        },
        "auth": {"type": "string", "not": {"const": p.NO_AUTH}, "description": "default scheme"},
        "session": {"type": "string", "description": "login steps from a library"},
        "variables": {"$ref": "#/$defs/variables"},
        "secrets": {"$ref": "#/$defs/secrets"},
        "environments": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"},
            "additionalProperties": environment,
        },
        "steps": {**_STEPS, "minItems": 1},
        "finally": _STEPS,
    }
    return _probe_document(
        p.FLOW_KIND, props, ("metadata", "environments", "steps"), "coalmine ProbeFlow"
    )


def _probe_library() -> Schema:
    """Shared auth schemes, sessions and variables (``synthetics/lib/*.yaml``)."""
    from coalmine.probes import loader as p

    schemes = []
    for kind, (required, optional) in p.AUTH_TYPES.items():
        fields: Schema = {"type": {"const": kind}}
        for key in (*required, *optional):
            fields[key] = {"type": "string", "minLength": 1}
        if "scopes" in fields:
            fields["scopes"] = {"type": "array", "items": {"type": "string", "minLength": 1}}
        schemes.append(_obj(fields, required=("type", *required)))
    props: Schema = {
        "metadata": _obj(
            {
                "name": _PROBE_NAME,
                "owner": {"type": "string"},
                "labels": {"$ref": "#/$defs/labels"},
            },
            required=("name",),
        ),
        "auth": {
            "type": "object",
            "propertyNames": {"pattern": _PROBE_NAME["pattern"], "not": {"const": p.NO_AUTH}},
            "additionalProperties": {"oneOf": schemes},
        },
        "sessions": {
            "type": "object",
            "propertyNames": {"pattern": _PROBE_NAME["pattern"]},
            "additionalProperties": _obj({"steps": {**_STEPS, "minItems": 1}}, required=("steps",)),
        },
        "variables": {"$ref": "#/$defs/variables"},
        "secrets": {"$ref": "#/$defs/secrets"},
    }
    return _probe_document(p.LIBRARY_KIND, props, ("metadata",), "coalmine ProbeLibrary")
