"""Argo Rollouts' ``web`` metric provider: one HTTP request whose answer becomes ``result``.

Fields (under ``provider.web``): ``url`` (required), ``method`` (GET, POST or PUT; default GET),
``headers`` (``[{key, value}]``), ``body`` (a string) or ``jsonBody`` (any YAML value, sent as JSON
with ``Content-Type: application/json``), ``timeoutSeconds`` (default 10; 0 also means 10, as in
Argo), ``jsonPath`` (Kubernetes JSONPath, e.g. ``{$.data.ok}``) and ``insecure`` (skip TLS
verification). ``authentication`` is not supported yet.

``result`` is the first value ``jsonPath`` selects from the JSON body, or the whole parsed body
without ``jsonPath``. A body that is not JSON is ``result`` as a string (``jsonPath`` is not
applied). Strings stay strings: ``asFloat(result)`` converts. A non-2xx answer, a timeout or a
connection failure is an Error measurement. A ``jsonPath`` that selects nothing, or a JSON
``null``, is no data: Inconclusive. Messages and details never contain header values, the body
sent, the URL's user info or its query string (they may hold credentials).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.durations import format_duration
from coalmine.errors import NotSupportedError, SpecError
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.jsonpath import JSONPath, compile_path
from coalmine.metrics.prometheus import (
    check_url,
    headers_from,
    no_unknown_fields,
    redact_url,
    scrub,
    unresolved,
    url_secrets,
    wire_headers,
)
from coalmine.spec.model import Metric

KEYS = (
    "url", "method", "headers", "body", "jsonBody", "jsonPath", "timeoutSeconds", "insecure",
    "authentication",
)  # fmt: skip
METHODS = ("GET", "POST", "PUT")
DEFAULT_TIMEOUT = 10.0  # Argo's default, in seconds
MAX_BODY = 16 * 1024 * 1024


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class WebConfig:
    url: str
    method: str = "GET"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None
    json_body: Any = None
    has_json_body: bool = False
    timeout: float = DEFAULT_TIMEOUT
    json_path: JSONPath | None = None
    insecure: bool = False

    @property
    def shown_url(self) -> str:
        return redact_url(self.url, keep_query=False)

    @property
    def secrets(self) -> list[str]:
        out = [value for _, value in self.headers] + url_secrets(self.url)
        query = urlsplit(self.url).query
        return [*out, query] if query else out


def parse_config(config: dict[str, Any], check_only: bool = False) -> WebConfig | None:
    """Validate a ``web`` provider mapping (after arg substitution). Raises SpecError or
    NotSupportedError whose ``field`` is relative to the provider. With ``check_only``, values
    still holding ``{{args.x}}`` are skipped and nothing is returned."""
    no_unknown_fields(config, KEYS)
    if config.get("authentication"):
        raise NotSupportedError(
            "authentication is not supported yet for the web provider",
            field="authentication",
            hint="send credentials with headers, e.g. an Authorization header from an arg",
        )
    if config.get("url") in (None, ""):
        raise SpecError(
            "missing required field 'url'", field="url", hint="e.g. http://127.0.0.1:8000/health"
        )
    values = {k: v for k, v in config.items() if not (check_only and unresolved(v))}
    url = str(config["url"])
    if "url" in values:
        url = check_url(values["url"], "url", "http://127.0.0.1:8000/health")
    method = "GET"
    if values.get("method") is not None:
        method = values["method"]
        if method not in METHODS:
            hint = "use GET, POST or PUT"
            if isinstance(method, str) and method.upper() in METHODS:
                hint = f"Argo accepts upper case only: {method.upper()}"
            raise SpecError(
                f"unsupported method {method!r}; the web provider sends GET, POST or PUT",
                field="method",
                hint=hint,
            )
    has_body = config.get("body") not in (None, "")
    has_json = config.get("jsonBody") is not None
    if has_body and has_json:
        raise SpecError(
            "use either body or jsonBody, not both", field="jsonBody", hint="remove one of them"
        )
    method_known = "method" in values or config.get("method") is None
    if (has_body or has_json) and method_known and method == "GET":
        which = "body" if has_body else "jsonBody"
        raise SpecError(
            f"{which} needs method POST or PUT (a GET sends no body; GET is the default)",
            field=which,
            hint="add method: POST",
        )
    body = None
    if has_body:
        body = values.get("body", config["body"])
        if not isinstance(body, str):
            raise SpecError(
                "body must be a string; use jsonBody for a structured body", field="body"
            )
    json_body = config.get("jsonBody")
    if has_json:
        try:
            json.dumps(json_body, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise SpecError(f"jsonBody cannot be sent as JSON: {err}", field="jsonBody") from None
    timeout = DEFAULT_TIMEOUT
    if values.get("timeoutSeconds") is not None:
        timeout = _timeout(values["timeoutSeconds"])
    json_path = None
    if values.get("jsonPath") not in (None, ""):
        raw = values["jsonPath"]
        if not isinstance(raw, str):
            raise SpecError("jsonPath must be a string such as {$.data.value}", field="jsonPath")
        try:
            json_path = compile_path(raw)
        except ValueError as err:
            raise SpecError(
                str(err), field="jsonPath", hint="e.g. {$.data.ok} or {.items[0].value}"
            ) from None
    insecure = False
    if "insecure" in values:
        flag = values["insecure"]
        if isinstance(flag, str) and flag.strip().lower() in ("true", "false"):
            flag = flag.strip().lower() == "true"
        if not isinstance(flag, bool):
            raise SpecError(f"insecure must be true or false, got {flag!r}", field="insecure")
        insecure = flag
    headers = headers_from(values.get("headers"))
    if check_only:
        return None
    return WebConfig(
        url=url,
        method=method,
        headers=headers,
        body=body,
        json_body=json_body,
        has_json_body=has_json,
        timeout=timeout,
        json_path=json_path,
        insecure=insecure,
    )


def _timeout(value: Any) -> float:
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(
            f"timeoutSeconds must be a whole number of seconds, got {value!r}",
            field="timeoutSeconds",
            hint="e.g. timeoutSeconds: 10",
        )
    if value < 0:
        raise SpecError(f"timeoutSeconds cannot be negative, got {value!r}", field="timeoutSeconds")
    return float(value) if value > 0 else DEFAULT_TIMEOUT


# --------------------------------------------------------------------------- the provider


class _Failed(Exception):
    pass


class WebMetrics:
    """Sends the metric's request and turns the answer into ``result``."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport  # tests may inject one; None: real network

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        try:
            config = parse_config(metric.provider_config)
        except SpecError as err:
            return ProviderResult(phase=Phase.ERROR, message=f"web: {err.one_line()}")
        assert config is not None
        details: dict[str, Any] = {"url": config.shown_url, "method": config.method}
        if config.json_path is not None:
            details["json_path"] = config.json_path.text
        try:
            status, content_type, body = await self._send(config)
        except _Failed as err:
            message = scrub(str(err), config.secrets)
            return ProviderResult(phase=Phase.ERROR, message=message, details=details)
        details["status"] = status
        details["content_type"] = content_type
        return interpret(config, status, body, details)

    async def _send(self, config: WebConfig) -> tuple[int, str, bytes]:
        where = f"{config.method} {config.shown_url}"
        headers = httpx.Headers(wire_headers(config.headers))
        url = config.url
        if "authorization" in headers:
            url = redact_url(url)  # an explicit Authorization header wins over user info, as in Go
        content: bytes | None = None
        if config.has_json_body:
            content = json.dumps(config.json_body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        elif config.body is not None:
            content = config.body.encode()
        try:
            async with (
                asyncio.timeout(config.timeout),
                httpx.AsyncClient(
                    verify=not config.insecure,
                    timeout=httpx.Timeout(config.timeout),
                    transport=self._transport,
                    follow_redirects=True,
                    trust_env=False,
                ) as client,
                client.stream(config.method, url, headers=headers, content=content) as resp,
            ):
                if not 200 <= resp.status_code < 300:
                    raise _Failed(f"{where} answered HTTP {resp.status_code}, expected 2xx")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise _Failed(f"{where} answered more than {MAX_BODY // (1024 * 1024)} MiB")
                    chunks.append(chunk)
                return resp.status_code, resp.headers.get("content-type", ""), b"".join(chunks)
        except (TimeoutError, httpx.TimeoutException):
            raise _Failed(
                f"{where} did not answer within {format_duration(config.timeout)}"
            ) from None
        except httpx.ConnectError as err:
            raise _Failed(f"{where} is unreachable: {_reason(err)}") from None
        except httpx.HTTPError as err:
            raise _Failed(f"{where} failed: {_reason(err)}") from None
        except (ValueError, UnicodeError) as err:  # e.g. a header value httpx cannot encode
            raise _Failed(f"{where} could not be sent: {type(err).__name__}") from None


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def interpret(
    config: WebConfig, status: int, body: bytes, details: dict[str, Any]
) -> ProviderResult:
    """``result`` from a 2xx answer's body."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        details["json"] = False
        return ProviderResult(value=text, details=details)
    except RecursionError:
        return _too_deep(details)
    details["json"] = True
    if config.json_path is None:
        if data is None:
            return ProviderResult(
                phase=Phase.INCONCLUSIVE,
                message="no data: the response body is JSON null",
                details=details,
            )
        return ProviderResult(value=data, details=details)
    try:
        matches = config.json_path.find(data)
    except RecursionError:
        return _too_deep(details)
    details["matches"] = len(matches)
    if not matches:
        return ProviderResult(
            phase=Phase.INCONCLUSIVE,
            message=f"no data: jsonPath {config.json_path.text} matched nothing in the response",
            details=details,
        )
    if matches[0] is None:
        return ProviderResult(
            phase=Phase.INCONCLUSIVE,
            message=f"no data: jsonPath {config.json_path.text} selected null",
            details=details,
        )
    return ProviderResult(value=matches[0], details=details)


def _too_deep(details: dict[str, Any]) -> ProviderResult:
    return ProviderResult(
        phase=Phase.ERROR,
        message=f"{details['method']} {details['url']} answered JSON nested too deeply to read",
        details=details,
    )
