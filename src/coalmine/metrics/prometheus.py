"""Argo Rollouts' ``prometheus`` metric provider.

Fields (under ``provider.prometheus``): ``address`` and ``query`` (required), ``timeout`` (whole
seconds, default 30), ``insecure`` (skip TLS verification), ``headers`` (``[{key, value}]``),
``authentication.basicAuth`` (``{username, password}``) and ``rangeQuery`` (``{start, end,
step}``). ``authentication.sigv4`` and ``authentication.oauth2`` are not supported yet.

What becomes ``result``, as in Argo: a scalar is a float; a vector is the list of its samples'
values (``result[0]``); a range query's matrix is one flat list of every value of every series
(``max(result) < 1000``). A string result is an error, as in Argo. NaN stays NaN.

Unlike Argo, a query that returns no series (or a matrix without points) is *no data*: the
measurement is Inconclusive rather than an evaluation error or, worse, a success of
``all(result, ...)`` over an empty list. Prometheus' errors, an unreachable server and timeouts are
Error measurements whose message names the address without its credentials.

``rangeQuery.start``/``end`` accept Argo's common forms only: ``now()``,
``now() - duration("5m")`` and RFC 3339 timestamps. ``now()`` is the measurement time. The demo's
``--time-scale`` does not shrink PromQL ranges: Prometheus' data is in real time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.durations import format_duration, parse_duration
from coalmine.errors import NotSupportedError, SpecError
from coalmine.metrics.base import MeasureContext
from coalmine.spec.model import Metric
from coalmine.spec.yamlpos import closest

KEYS = ("address", "query", "timeout", "insecure", "headers", "authentication", "rangeQuery")
RANGE_KEYS = ("start", "end", "step")
HEADER_KEYS = ("key", "value")
AUTH_SUPPORTED = ("basicAuth",)
AUTH_NOT_SUPPORTED = ("sigv4", "oauth2")
BASIC_AUTH_KEYS = ("username", "password")
DEFAULT_TIMEOUT = 30.0  # Argo's default, in seconds
MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
MAX_BODY = 32 * 1024 * 1024
NO_DATA = "no data: the query returned no series"

_NOW = re.compile(r"now\(\s*\)")
_NOW_MINUS = re.compile(r"now\(\s*\)\s*-\s*duration\(\s*(?:\"([^\"]*)\"|'([^']*)')\s*\)")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
TIME_HINT = 'use now(), now() - duration("5m") or an RFC 3339 time such as 2024-05-01T12:00:00Z'


# --------------------------------------------------------------------------- shared helpers


def redact_url(url: str, keep_query: bool = True) -> str:
    """``url`` without ``user:password@`` (and without its query string if not ``keep_query``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    query = parts.query if keep_query else ("..." if parts.query else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str, secrets: list[str]) -> str:
    """Replace every secret in ``text`` by ``***`` and fold it onto one line."""
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.split())


def headers_from(config_value: Any, path: str = "headers") -> list[tuple[str, str]]:
    """Argo's ``headers: [{key, value}]``; raises SpecError (field relative to the provider)."""
    if config_value is None:
        return []
    if not isinstance(config_value, list):
        raise SpecError("headers must be a list of {key, value}", field=path)
    out: list[tuple[str, str]] = []
    for i, item in enumerate(config_value):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise SpecError("a header must be a mapping {key, value}", field=where)
        no_unknown_fields(item, HEADER_KEYS, where)
        key, value = item.get("key"), item.get("value")
        if not isinstance(key, str) or not key.strip():
            raise SpecError("a header needs a non-empty 'key'", field=f"{where}.key")
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", key):
            raise SpecError(f"invalid header name {key!r}", field=f"{where}.key")
        if value is None:
            raise SpecError(f"header {key!r} needs a 'value'", field=f"{where}.value")
        if isinstance(value, bool | dict | list):
            raise SpecError(f"the value of header {key!r} must be a string", field=f"{where}.value")
        if _CONTROL.search(str(value)):  # never echoed: header values may be credentials
            raise SpecError(
                f"the value of header {key!r} holds a line break or another control character",
                field=f"{where}.value",
                hint="a YAML block scalar (|) keeps a trailing newline: use |- or a quoted string",
            )
        out.append((key, str(value)))
    return out


def wire_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header values as UTF-8 bytes, which HTTP allows and Go's client (Argo's) sends as is."""
    return [(key.encode(), value.encode()) for key, value in headers]


def basic_token(username: str, password: str) -> str:
    """The ``Basic`` credentials sent for a user and password (a secret to scrub as well)."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def url_secrets(url: str) -> list[str]:
    """What in a URL's user info may be a credential, as written and as sent."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return []
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    found = [parts.username or "", parts.password or "", user, password]
    return [s for s in found if s] + [basic_token(user, password)]


def no_unknown_fields(
    config: dict[str, Any], known: tuple[str, ...], path: str | None = None
) -> None:
    for key in config:
        if key not in known:
            guess = closest(str(key), known)
            raise SpecError(
                f"unknown field '{key}'",
                field=f"{path}.{key}" if path else str(key),
                hint=f"did you mean '{guess}'?" if guess else "known: " + ", ".join(known),
            )


def unresolved(value: Any) -> bool:
    """A value still holding ``{{args.x}}`` (checked once the arg has a value)."""
    return isinstance(value, str) and "{{" in value


def _flag(config: dict[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise SpecError(f"{key} must be true or false, got {value!r}", field=key)
    return value


def check_url(value: Any, key: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{key} must be a URL such as {what}", field=key)
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        # Neither the URL nor the parser's reason is shown: with an unencoded '/', '?' or '#'
        # in a password, what the parser takes for the host or the port is part of it.
        raise SpecError(
            f"invalid {key}: it cannot be read as a URL with a host and a numeric port",
            field=key,
            hint=f"e.g. {what}; percent-encode '/', '?', '#' and '@' in a user name or password",
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(
            f"{key} must be an http:// or https:// URL, got {redact_url(text)!r}",
            field=key,
            hint=f"e.g. {what}",
        )
    return text


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RangeQuery:
    start: str
    end: str
    step: float  # seconds


@dataclass(frozen=True)
class PrometheusConfig:
    address: str
    query: str
    timeout: float = DEFAULT_TIMEOUT
    insecure: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)
    basic_auth: tuple[str, str] | None = None
    range_query: RangeQuery | None = None

    @property
    def shown_address(self) -> str:
        return redact_url(self.address.rstrip("/"))

    @property
    def secrets(self) -> list[str]:
        out = [value for _, value in self.headers]
        if self.basic_auth:
            out.extend(self.basic_auth)
            out.append(basic_token(*self.basic_auth))
        return out + url_secrets(self.address)


def parse_config(config: dict[str, Any], check_only: bool = False) -> PrometheusConfig | None:
    """Validate a ``prometheus`` provider mapping (after arg substitution). Raises SpecError or
    NotSupportedError whose ``field`` is relative to the provider. With ``check_only``, values
    still holding ``{{args.x}}`` are skipped and nothing is returned."""
    no_unknown_fields(config, KEYS)
    for key in ("address", "query"):
        if key not in config or config[key] in (None, ""):
            raise SpecError(
                f"missing required field '{key}'",
                field=key,
                hint="e.g. http://127.0.0.1:9090" if key == "address" else "a PromQL expression",
            )
    values = {k: v for k, v in config.items() if not (check_only and unresolved(v))}
    address = config["address"]
    if "address" in values:
        address = check_url(values["address"], "address", "http://127.0.0.1:9090")
    query = config["query"]
    if not isinstance(query, str):
        raise SpecError("query must be a string (a PromQL expression)", field="query")
    timeout = DEFAULT_TIMEOUT
    if "timeout" in values and values["timeout"] is not None:
        timeout = _timeout(values["timeout"])
    insecure = _flag(values, "insecure") if "insecure" in values else False
    headers = headers_from(values.get("headers"))
    basic_auth = _authentication(values.get("authentication"), check_only)
    range_query = None
    if values.get("rangeQuery") is not None:
        range_query = _range_query(values["rangeQuery"], check_only)
    if check_only:
        return None
    return PrometheusConfig(
        address=address,
        query=query,
        timeout=timeout,
        insecure=insecure,
        headers=headers,
        basic_auth=basic_auth,
        range_query=range_query,
    )


def _timeout(value: Any) -> float:
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(
            f"timeout must be a number of seconds, got {value!r}",
            field="timeout",
            hint="Argo's prometheus timeout is in seconds, e.g. timeout: 30",
        )
    if value <= 0 or not math.isfinite(value):
        raise SpecError(f"timeout must be more than 0 seconds, got {value!r}", field="timeout")
    return float(value)


def _authentication(value: Any, check_only: bool) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError("authentication must be a mapping", field="authentication")
    no_unknown_fields(value, AUTH_SUPPORTED + AUTH_NOT_SUPPORTED, "authentication")
    for kind in AUTH_NOT_SUPPORTED:
        if value.get(kind):
            raise NotSupportedError(
                f"authentication.{kind} is not supported yet",
                field=f"authentication.{kind}",
                hint="use headers (e.g. an Authorization header) or authentication.basicAuth",
            )
    basic = value.get("basicAuth")
    if basic is None:
        return None
    if not isinstance(basic, dict):
        raise SpecError("basicAuth must be a mapping {username, password}", field="basicAuth")
    no_unknown_fields(basic, BASIC_AUTH_KEYS, "authentication.basicAuth")
    username, password = basic.get("username"), basic.get("password")
    if not isinstance(username, str) or not username:
        raise SpecError("basicAuth needs a 'username'", field="authentication.basicAuth.username")
    if password is not None and not isinstance(password, str):
        password = str(password)
    return username, password or ""


def _range_query(value: Any, check_only: bool) -> RangeQuery:
    if not isinstance(value, dict):
        raise SpecError("rangeQuery must be a mapping {start, end, step}", field="rangeQuery")
    no_unknown_fields(value, RANGE_KEYS, "rangeQuery")
    for key in RANGE_KEYS:
        if value.get(key) in (None, ""):
            raise SpecError(
                f"rangeQuery needs '{key}'",
                field=f"rangeQuery.{key}",
                hint='e.g. {start: now() - duration("5m"), end: now(), step: 1m}',
            )
    step = 0.0
    if not (check_only and unresolved(value["step"])):
        try:
            step = parse_duration(value["step"])
        except ValueError as err:
            raise SpecError(str(err), field="rangeQuery.step", hint="e.g. step: 1m") from None
        if step <= 0:
            raise SpecError("rangeQuery.step must be longer than zero", field="rangeQuery.step")
    times: dict[str, float] = {}
    for key in ("start", "end"):
        if not (check_only and unresolved(value[key])):
            try:
                times[key] = resolve_time(str(value[key]), 0.0)
            except ValueError as err:
                raise SpecError(str(err), field=f"rangeQuery.{key}", hint=TIME_HINT) from None
    start, end = str(value["start"]), str(value["end"])
    if (
        len(times) == 2
        and _is_relative(start) == _is_relative(end)
        and times["start"] > times["end"]
    ):
        raise SpecError("rangeQuery.start is after rangeQuery.end", field="rangeQuery")
    return RangeQuery(start, end, step)


def _is_relative(expr: str) -> bool:
    return expr.strip().startswith("now(")


def resolve_time(expr: str, now: float) -> float:
    """``now()``, ``now() - duration("5m")`` or an RFC 3339 time, as epoch seconds."""
    text = expr.strip()
    if _NOW.fullmatch(text):
        return now
    match = _NOW_MINUS.fullmatch(text)
    if match:
        raw = match.group(1) if match.group(1) is not None else match.group(2)
        try:
            return now - parse_duration(raw)
        except ValueError as err:
            raise ValueError(f"invalid duration in {text!r}: {err}") from None
    if _RFC3339.fullmatch(text):
        try:
            stamp = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError as err:
            raise ValueError(f"invalid time {text!r}: {err}") from None
        return stamp.timestamp()
    raise ValueError(
        f"unsupported time expression {text!r}: coalmine understands now(), "
        'now() - duration("5m") and RFC 3339 times'
    )


# --------------------------------------------------------------------------- the provider


class PrometheusError(Exception):
    """A measurement that could not be taken; the message is safe to show."""


class PrometheusMetrics:
    """Runs a metric's PromQL against its Prometheus server (HTTP API v1)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport  # tests may inject one; None: real network

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        try:
            config = parse_config(metric.provider_config)
        except SpecError as err:
            return ProviderResult(phase=Phase.ERROR, message=f"prometheus: {err.one_line()}")
        assert config is not None
        try:
            return await self.run(config, context.now)
        except PrometheusError as err:
            message = scrub(str(err), config.secrets)
            details = {
                "query": config.query,
                "address": config.shown_address,
                "evaluated_at": context.now,
            }
            return ProviderResult(phase=Phase.ERROR, message=message, details=details)

    async def run(self, config: PrometheusConfig, now: float) -> ProviderResult:
        details: dict[str, Any] = {"query": config.query, "address": config.shown_address}
        if config.range_query is None:
            path = "/api/v1/query"
            form = {"query": config.query, "time": _stamp(now)}
            details["evaluated_at"] = now
        else:
            rq = config.range_query
            try:
                start, end = resolve_time(rq.start, now), resolve_time(rq.end, now)
            except ValueError as err:
                raise PrometheusError(f"rangeQuery: {err}") from None
            if start > end:
                raise PrometheusError(
                    f"rangeQuery: start ({_stamp(start)}) is after end ({_stamp(end)})"
                )
            if (end - start) / rq.step > MAX_POINTS:
                raise PrometheusError(
                    f"rangeQuery: {format_duration(end - start)} at a step of "
                    f"{format_duration(rq.step)} is more than {MAX_POINTS} points; "
                    "use a larger step"
                )
            path = "/api/v1/query_range"
            form = {
                "query": config.query,
                "start": _stamp(start),
                "end": _stamp(end),
                "step": _stamp(rq.step),
            }
            details["evaluated_at"] = now
            details["range"] = {"start": start, "end": end, "step": rq.step}
        data, warnings = await self._call(config, path, form)
        if warnings:
            details["warnings"] = warnings
        return to_result(data, details, instant=config.range_query is None)

    async def _call(
        self, config: PrometheusConfig, path: str, form: dict[str, str]
    ) -> tuple[dict[str, Any], list[str]]:
        where = f"prometheus at {config.shown_address}"
        url = config.address.rstrip("/") + path
        auth = httpx.BasicAuth(*config.basic_auth) if config.basic_auth else None
        try:
            async with (
                asyncio.timeout(config.timeout),
                httpx.AsyncClient(
                    verify=not config.insecure,
                    timeout=httpx.Timeout(config.timeout),
                    headers=wire_headers(config.headers),
                    transport=self._transport,
                    follow_redirects=True,
                    trust_env=False,
                    auth=auth,
                ) as client,
            ):
                # Like Prometheus' Go client: POST the form, fall back to GET where POST is
                # refused (read-only proxies in front of Prometheus).
                response = await client.post(url, data=form)
                if response.status_code in (405, 501):
                    response = await client.get(url, params=form)
                body = response.content[:MAX_BODY]
        except TimeoutError:
            raise PrometheusError(
                f"{where} did not answer within {format_duration(config.timeout)}"
            ) from None
        except httpx.TimeoutException:
            raise PrometheusError(
                f"{where} did not answer within {format_duration(config.timeout)}"
            ) from None
        except httpx.ConnectError as err:
            raise PrometheusError(f"{where} is unreachable: {_reason(err)}") from None
        except httpx.HTTPError as err:
            raise PrometheusError(f"{where}: request failed: {_reason(err)}") from None
        return _decode(where, response.status_code, body)


def _reason(err: Exception) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0] if text.strip() else type(err).__name__


def _stamp(seconds: float) -> str:
    return f"{seconds:.3f}"


def _decode(where: str, status: int, body: bytes) -> tuple[dict[str, Any], list[str]]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or "status" not in doc:
        snippet = body[:200].decode("utf-8", "replace").strip()
        raise PrometheusError(
            f"{where} answered HTTP {status} that is not a Prometheus API answer"
            + (f": {snippet}" if snippet else "")
        )
    if doc.get("status") != "success":
        kind = doc.get("errorType") or f"HTTP {status}"
        error = doc.get("error") or "no error message"
        raise PrometheusError(f"{where} refused the query: {kind}: {error}")
    if not 200 <= status < 300:
        raise PrometheusError(f"{where} answered HTTP {status}")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise PrometheusError(f"{where} answered without data")
    warnings = [str(w) for w in doc.get("warnings") or []]
    return data, warnings


def _float(raw: Any) -> float:
    # Prometheus encodes sample values as strings: "1.5", "NaN", "+Inf", "-Inf".
    return float(raw)


def to_result(
    data: dict[str, Any], details: dict[str, Any], instant: bool = False
) -> ProviderResult:
    """Turn ``data`` of a Prometheus API answer into ``result`` as Argo shapes it. An
    ``instant`` query that answers a matrix (a range selector such as ``x[5m]``) is an Error,
    as in Argo: its points are not the one value per series that conditions expect."""
    kind = data.get("resultType")
    raw = data.get("result")
    details = {**details, "result_type": kind}
    if instant and kind == "matrix":
        return ProviderResult(
            phase=Phase.ERROR,
            message="the instant query returned a range vector (matrix), not one value per "
            "series; wrap the range selector in a function such as rate(x[5m]) or "
            "max_over_time(x[5m]), or use rangeQuery",
            details=details,
        )
    try:
        if kind == "scalar":
            details["series"] = 1
            return ProviderResult(value=_float(raw[1]), details=details)  # type: ignore[index]
        if kind == "vector":
            samples = list(raw or [])
            details["series"] = len(samples)
            if not samples:
                return ProviderResult(phase=Phase.INCONCLUSIVE, message=NO_DATA, details=details)
            values: list[float] = []
            for sample in samples:
                if "value" not in sample:
                    raise PrometheusError(
                        "the query returned native histogram samples, which have no single "
                        "value; use histogram_quantile() or histogram_count()"
                    )
                values.append(_float(sample["value"][1]))
            return ProviderResult(value=values, details=details)
        if kind == "matrix":
            series = list(raw or [])
            details["series"] = len(series)
            values = [_float(point[1]) for s in series for point in s.get("values") or []]
            details["points"] = len(values)
            if not values:
                message = NO_DATA if not series else "no data: the range query returned no points"
                return ProviderResult(phase=Phase.INCONCLUSIVE, message=message, details=details)
            return ProviderResult(value=values, details=details)
    except PrometheusError as err:
        return ProviderResult(phase=Phase.ERROR, message=str(err), details=details)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:
        return ProviderResult(
            phase=Phase.ERROR,
            message=f"cannot read Prometheus' {kind} answer: {_reason(err)}",
            details=details,
        )
    return ProviderResult(
        phase=Phase.ERROR,
        message=f"Prometheus result type {kind!r} is not supported (nor by Argo Rollouts); "
        "write a query that returns a vector or a scalar",
        details=details,
    )
