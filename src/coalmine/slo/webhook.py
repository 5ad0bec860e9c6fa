"""Alertmanager's webhook (payload version 4) into :class:`BurnAlert` s, and the aiohttp handler
for ``POST /alertmanager/webhook``.

The payload (one notification for one alert group)::

    {"version": "4", "groupKey": "...", "truncatedAlerts": 0, "status": "firing",
     "receiver": "coalmine-page", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "http://...",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "<rfc3339>", "endsAt": "<rfc3339>", "generatorURL": "...",
                 "fingerprint": "..."}]}

Validation is strict about the envelope (a wrong version or type is an error naming the field);
alerts without a ``burn_rate_factor`` label are not burn-rate alerts (another team's alert on
the same receiver, coalmine's no-data ticket) and are skipped. A burn alert with a missing or
malformed label is an error, since acting on half of it could roll back the wrong service. The
measured burn rates (annotations ``burn_rate_long`` and ``burn_rate_short``, written by
``coalmine slo rules``) are informational: a missing or unreadable one is None, never an error.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from coalmine.errors import CoalmineError
from coalmine.slo.spec import parse_span

WEBHOOK_PATH = "/alertmanager/webhook"
PAYLOAD_VERSION = "4"
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time: "no end yet"

log = logging.getLogger(__name__)

Status = Literal["firing", "resolved"]


class WebhookError(CoalmineError):
    """An Alertmanager webhook payload coalmine cannot act on."""


@dataclass(frozen=True)
class BurnAlert:
    """One burn-rate alert from Alertmanager."""

    service: str
    slo: str
    severity: Literal["page", "ticket"]
    long_window: str  # as labelled: "1h"
    short_window: str
    long_s: float
    short_s: float
    factor: float
    status: Status
    starts_at: datetime
    ends_at: datetime | None  # None: still firing with no known end
    long_rate: float | None = None  # the measured burn rates, when the alert carries them
    short_rate: float | None = None
    fingerprint: str = ""
    receiver: str = ""
    group_key: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def describe(self) -> str:
        return (
            f"{self.slo} ({self.service}) {self.severity} {self.status}: burn rate above "
            f"{self.factor:g} over {self.long_window} and {self.short_window}"
        )


# --------------------------------------------------------------------------- parsing


def _err(fld: str, message: str, hint: str | None = None) -> WebhookError:
    return WebhookError(message, field=fld, hint=hint)


def _str(doc: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    if key not in doc:
        if required:
            raise _err(f"{where}{key}", "missing")
        return ""
    value = doc[key]
    if not isinstance(value, str):
        raise _err(f"{where}{key}", f"expected a string, got {type(value).__name__}")
    return value


def _str_map(doc: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = doc.get(key)
    if value is None:
        raise _err(f"{where}{key}", "missing")
    if not isinstance(value, dict):
        raise _err(f"{where}{key}", f"expected an object, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise _err(f"{where}{key}.{k}", f"expected a string, got {type(v).__name__}")
    return dict(value)


def _status(doc: Mapping[str, Any], where: str) -> Status:
    value = _str(doc, "status", where)
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise _err(f"{where}status", f"expected firing or resolved, got {value[:40]!r}")


def _time(doc: Mapping[str, Any], key: str, where: str) -> datetime:
    text = _str(doc, key, where)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _err(f"{where}{key}", f"not an RFC 3339 time: {text[:40]!r}") from None
    if value.tzinfo is None:
        raise _err(f"{where}{key}", f"the time {text[:40]!r} has no time zone")
    return value


def _window(labels: Mapping[str, str], key: str, where: str) -> tuple[str, float]:
    text = labels.get(key)
    if not text:
        raise _err(f"{where}labels.{key}", "missing on a burn-rate alert")
    try:
        seconds = parse_span(text)
    except ValueError:
        raise _err(f"{where}labels.{key}", f"not a duration: {text[:40]!r}") from None
    if seconds <= 0:
        raise _err(f"{where}labels.{key}", "the window must be longer than zero")
    return text, seconds


def _rate(annotations: Mapping[str, str], key: str) -> float | None:
    try:
        value = float(annotations.get(key, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _burn_alert(
    alert: Mapping[str, Any], where: str, receiver: str, group_key: str
) -> BurnAlert | None:
    labels = _str_map(alert, "labels", where)
    annotations = _str_map(alert, "annotations", where) if "annotations" in alert else {}
    status = _status(alert, where)
    starts_at = _time(alert, "startsAt", where)
    ends_at: datetime | None = _time(alert, "endsAt", where) if "endsAt" in alert else None
    if ends_at is not None and ends_at <= _ZERO_TIME:
        ends_at = None
    fingerprint = _str(alert, "fingerprint", where, required=False)
    _str(alert, "generatorURL", where, required=False)
    if "burn_rate_factor" not in labels:
        return None
    for key in ("slo", "service"):
        if not labels.get(key):
            raise _err(f"{where}labels.{key}", "missing on a burn-rate alert")
    severity = labels.get("severity", "")
    if severity not in ("page", "ticket"):
        raise _err(f"{where}labels.severity", f"expected page or ticket, got {severity[:40]!r}")
    try:
        factor = float(labels["burn_rate_factor"])
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise _err(
            f"{where}labels.burn_rate_factor",
            f"expected a positive number, got {labels['burn_rate_factor'][:40]!r}",
        )
    long_text, long_s = _window(labels, "long_window", where)
    short_text, short_s = _window(labels, "short_window", where)
    return BurnAlert(
        service=labels["service"],
        slo=labels["slo"],
        severity="page" if severity == "page" else "ticket",
        long_window=long_text,
        short_window=short_text,
        long_s=long_s,
        short_s=short_s,
        factor=factor,
        long_rate=_rate(annotations, "burn_rate_long"),
        short_rate=_rate(annotations, "burn_rate_short"),
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint,
        receiver=receiver,
        group_key=group_key,
        labels=labels,
        annotations=annotations,
    )


def parse_webhook(payload: object) -> list[BurnAlert]:
    """The burn-rate alerts of one notification. WebhookError when it is not version 4 or
    a field has the wrong type; the error names the field (``alerts[2].labels.severity``)."""
    if not isinstance(payload, dict):
        raise _err("payload", f"expected a JSON object, got {type(payload).__name__}")
    version = payload.get("version")
    if version != PAYLOAD_VERSION:
        raise _err(
            "version",
            f"unsupported webhook payload version {version!r}",
            f"coalmine reads Alertmanager's version {PAYLOAD_VERSION!r} payload",
        )
    group_key = _str(payload, "groupKey", "")
    receiver = _str(payload, "receiver", "")
    _status(payload, "")
    _str(payload, "externalURL", "", required=False)
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if key in payload:
            _str_map(payload, key, "")
    truncated = payload.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise _err("truncatedAlerts", f"expected a count, got {truncated!r}"[:80])
    if truncated:
        log.warning(
            "Alertmanager left %d alert(s) out of a notification (max_alerts); "
            "set max_alerts: 0 on coalmine's webhook",
            truncated,
        )
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise _err("alerts", f"expected a list, got {type(alerts).__name__}")
    out = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]."
        if not isinstance(alert, dict):
            raise _err(f"alerts[{i}]", f"expected an object, got {type(alert).__name__}")
        parsed = _burn_alert(alert, where, receiver, group_key)
        if parsed is not None:
            out.append(parsed)
    return out


def parse_webhook_body(body: bytes) -> list[BurnAlert]:
    """:func:`parse_webhook` on raw request bytes."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _err("payload", f"not JSON ({exc.__class__.__name__})") from None
    return parse_webhook(payload)


# --------------------------------------------------------------------------- aiohttp

OnAlerts = Callable[[list[BurnAlert]], Awaitable[None]]


def make_webhook_handler(
    on_alerts: OnAlerts,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler for ``POST /alertmanager/webhook``.

    400 with ``{"error": "<one line>"}`` for a payload coalmine cannot read (Alertmanager does
    not retry 4xx); 500 when ``on_alerts`` fails, so Alertmanager retries the notification;
    200 with ``{"burn_alerts": n}`` otherwise."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            alerts = parse_webhook_body(body)
        except WebhookError as exc:
            return web.json_response({"error": exc.one_line()}, status=400)
        try:
            await on_alerts(alerts)
        except Exception:
            log.exception("handling %d burn alert(s) failed", len(alerts))
            return web.json_response({"error": "handling the alerts failed"}, status=500)
        return web.json_response({"burn_alerts": len(alerts)})

    return handle


def add_webhook_route(app: web.Application, on_alerts: OnAlerts, path: str = WEBHOOK_PATH) -> None:
    """Register the handler on ``app`` at ``path``."""
    app.router.add_post(path, make_webhook_handler(on_alerts))
