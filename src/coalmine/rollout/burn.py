"""Alertmanager's burn alerts into durable ``abort`` commands for the rollouts they concern.

A firing page alert of service S becomes one ``abort`` command (args ``reason`` and ``burn``,
a :class:`~coalmine.rollout.budget.BurnSignal` as a dict) for every active rollout of S. The
controller picks it up at its next tick and decides in its pure core whether the burn rolls
the rollout back (see ``reconcile.burn_applies``). Tickets and resolved alerts change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from coalmine.rollout.budget import BurnSignal
from coalmine.rollout.state import RolloutState
from coalmine.slo.webhook import BurnAlert
from coalmine.store.base import Store

# rule files generated before the burn_rate_long annotation only state the long window's rate,
# in the description: "Burn rate over 1h: 20.1 (objective ..."
_LONG_RATE = re.compile(r"Burn rate over \S+: ([0-9][0-9.eE+-]*)")


@dataclass(frozen=True)
class Queued:
    rollout: str
    command_id: int
    burn: BurnSignal


def _described_long_rate(alert: BurnAlert) -> float | None:
    match = _LONG_RATE.search(alert.annotations.get("description", ""))
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


def signal_from_alert(alert: BurnAlert) -> BurnSignal:
    """The burn as the engine would name it: the ``rule`` label is the SLO's alerting-table
    name; alerts of other generators fall back to ``<severity>-<long window>``."""
    long_rate = alert.long_rate if alert.long_rate is not None else _described_long_rate(alert)
    details = {
        "alertname": alert.labels.get("alertname", ""),
        "fingerprint": alert.fingerprint,
        "receiver": alert.receiver,
        "starts_at": alert.starts_at.isoformat(),
    }
    return BurnSignal(
        slo=alert.slo,
        rule=alert.labels.get("rule") or f"{alert.severity}-{alert.long_window}",
        severity=alert.severity,
        long_s=alert.long_s,
        short_s=alert.short_s,
        factor=alert.factor,
        long_rate=long_rate,
        short_rate=alert.short_rate,
        source="alertmanager",
        starts_at=alert.starts_at.timestamp(),
        details={k: v for k, v in details.items() if v},
    )


def _service(spec: dict[str, object]) -> str | None:
    service = spec.get("service")
    if isinstance(service, dict):
        name = service.get("name")
        return name if isinstance(name, str) else None
    return None


def enqueue_burn_aborts(store: Store, alerts: Iterable[BurnAlert], now: float) -> list[Queued]:
    """Queue an abort for every active rollout of each firing page alert's service. An abort
    for the same burn (SLO, rule, start) already waiting is not queued twice (Alertmanager
    repeats notifications)."""
    pages = [a for a in alerts if a.firing and a.severity == "page"]
    if not pages:
        return []
    queued: list[Queued] = []
    records = store.list_rollouts()
    for alert in pages:
        burn = signal_from_alert(alert)
        for record in records:
            if _service(record.spec) != alert.service:
                continue
            if RolloutState.from_dict(record.state).phase.terminal:
                continue
            waiting = store.pending_commands(record.name)
            if any(_same_burn(c.args.get("burn"), burn) for c in waiting if c.name == "abort"):
                continue
            reason = f"{burn.describe()} (Alertmanager)"
            command_id = store.enqueue_command(
                record.name, "abort", {"reason": reason, "burn": burn.to_dict()}, now
            )
            queued.append(Queued(record.name, command_id, burn))
    return queued


def _same_burn(data: object, burn: BurnSignal) -> bool:
    if not isinstance(data, dict):
        return False
    return (
        data.get("slo") == burn.slo
        and data.get("rule") == burn.rule
        and data.get("starts_at") == burn.starts_at
    )
