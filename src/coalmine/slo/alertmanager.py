"""Alertmanager configuration for SLO burn-rate alerts (``coalmine slo alertmanager``).

:func:`render_alertmanager` writes a complete configuration (``alertmanager/canary-routes.yaml``)
that ``amtool check-config`` accepts:

* alerts are grouped by ``slo`` and ``service``;
* ``severity="page"`` goes to the page receiver, which always delivers to coalmine's own webhook
  (so a fast burn during a rollout rolls it back) and to any extra page webhooks;
* ``severity="ticket"`` goes to the ticket receiver (extra ticket webhooks, and coalmine unless
  turned off: coalmine records tickets but only pages abort rollouts);
* a firing page inhibits the tickets of the same SLO and service.

Webhook URLs may hold tokens: they are written to the file and nowhere else, and errors name
the URL's position, never the URL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from coalmine.errors import SpecError

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8787/alertmanager/webhook"
ROUTES_FILE = "alertmanager/canary-routes.yaml"
PAGE_RECEIVER = "coalmine-page"
TICKET_RECEIVER = "coalmine-ticket"
DEFAULT_RECEIVER = "coalmine-unrouted"
GROUP_BY = ("slo", "service")

_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")


@dataclass(frozen=True)
class Timing:
    """Alertmanager's grouping delays (its duration syntax: ``30s``, ``5m``, ``4h``)."""

    group_wait: str = "30s"
    group_interval: str = "5m"
    page_repeat: str = "1h"
    ticket_repeat: str = "12h"


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # never echo the URL: it may carry a token
        raise SpecError(
            f"{what} is not an http(s) URL with a host",
            field=what,
            hint="give e.g. https://hooks.example.com/... or http://127.0.0.1:8787/...",
        )
    return url


def _check_duration(value: str, what: str) -> str:
    if not value or not _DURATION.fullmatch(value):
        raise SpecError(
            f"{what} {value!r} is not an Alertmanager duration",
            field=what,
            hint="use e.g. 10s, 5m or 4h",
        )
    return value


def _webhooks(urls: Sequence[str], what: str) -> list[dict[str, Any]]:
    return [
        {"url": _check_url(u, f"{what}[{i}]"), "send_resolved": True, "max_alerts": 0}
        for i, u in enumerate(urls)
    ]


def alertmanager_config(
    *,
    coalmine_url: str = DEFAULT_WEBHOOK_URL,
    page_webhooks: Sequence[str] = (),
    ticket_webhooks: Sequence[str] = (),
    tickets_to_coalmine: bool = True,
    timing: Timing | None = None,
) -> dict[str, Any]:
    """The configuration as data (see the module doc)."""
    timing = timing or Timing()
    for name in ("group_wait", "group_interval", "page_repeat", "ticket_repeat"):
        _check_duration(getattr(timing, name), name)
    page = _webhooks([coalmine_url], "coalmine_url") + _webhooks(page_webhooks, "page_webhooks")
    ticket = (_webhooks([coalmine_url], "coalmine_url") if tickets_to_coalmine else []) + (
        _webhooks(ticket_webhooks, "ticket_webhooks")
    )
    if not ticket:
        raise SpecError(
            "ticket alerts would go nowhere",
            field="ticket_webhooks",
            hint="give a ticket webhook or keep delivering tickets to coalmine",
        )
    slo_alert = 'slo=~".+"'
    return {
        "route": {
            "receiver": DEFAULT_RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": timing.group_wait,
            "group_interval": timing.group_interval,
            "repeat_interval": timing.ticket_repeat,
            "routes": [
                {
                    "receiver": PAGE_RECEIVER,
                    "matchers": ['severity="page"', slo_alert],
                    "repeat_interval": timing.page_repeat,
                },
                {
                    "receiver": TICKET_RECEIVER,
                    "matchers": ['severity="ticket"', slo_alert],
                    "repeat_interval": timing.ticket_repeat,
                },
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="page"'],
                "target_matchers": ['severity="ticket"'],
                "equal": list(GROUP_BY),
            }
        ],
        "receivers": [
            # alerts without an SLO severity are not coalmine's: they end here, undelivered
            {"name": DEFAULT_RECEIVER},
            {"name": PAGE_RECEIVER, "webhook_configs": page},
            {"name": TICKET_RECEIVER, "webhook_configs": ticket},
        ],
    }


def render_alertmanager(
    *,
    coalmine_url: str = DEFAULT_WEBHOOK_URL,
    page_webhooks: Sequence[str] = (),
    ticket_webhooks: Sequence[str] = (),
    tickets_to_coalmine: bool = True,
    timing: Timing | None = None,
) -> str:
    """The configuration as YAML text, with a header comment."""
    config = alertmanager_config(
        coalmine_url=coalmine_url,
        page_webhooks=page_webhooks,
        ticket_webhooks=ticket_webhooks,
        tickets_to_coalmine=tickets_to_coalmine,
        timing=timing,
    )
    header = (
        "# Generated by `coalmine slo alertmanager`; regenerate instead of editing.\n"
        "# Pages (fast burn) reach coalmine's webhook, which rolls back a running rollout.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, width=10_000)
