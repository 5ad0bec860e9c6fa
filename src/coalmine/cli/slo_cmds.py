"""``coalmine slo validate|status|explain``: SLOs, error budgets, burn rates, release tiers.

See docs/slo.md.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from coalmine.cli.common import CONFIG_OPTION, ENV_OPTION, JSON_OPTION, print_json
from coalmine.errors import CoalmineError

slo_app = typer.Typer(
    help="SLOs and error budgets: validate slos.yaml, show budgets and burn rates, explain alerts.",
    no_args_is_help=True,
)

SLOS_OPTION = typer.Option(
    None, "--slos", "-f", help="SLO file or directory (default: $COALMINE_SLOS or ./slos.yaml)"
)
AT_OPTION = typer.Option(
    None, "--at", help="Evaluate at this time (epoch seconds or RFC 3339) instead of now."
)
COLLECT_OPTION = typer.Option(
    True, "--collect/--no-collect", help="Read new observations into buckets first."
)


def register(app: typer.Typer) -> None:
    app.add_typer(slo_app, name="slo")


def _fail(err: CoalmineError) -> typer.Exit:
    print(f"coalmine: error: {err.one_line()}", file=sys.stderr)
    return typer.Exit(2)


# ---------------------------------------------------------------------- validate


@slo_app.command("validate")
def validate_cmd(
    files: list[Path] = typer.Argument(..., help="SLO files (slos.yaml, OpenSLO v1)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check SLO files; print the SLOs and the low-traffic warnings. Exit code 2 on errors."""
    from coalmine.slo.loader import load_slos

    try:
        slos = load_slos(files)
    except CoalmineError as err:
        raise _fail(err) from None
    if as_json:
        print_json(
            {
                "ok": True,
                "slos": [_summary(s) for s in slos.slos],
                "warnings": [w.one_line() for w in slos.warnings],
            }
        )
        return
    for warning in slos.warnings:
        print(f"warning: {warning.one_line()}")
    print(f"ok: {len(slos.slos)} SLOs ({', '.join(s.name for s in slos.slos)})")


def _summary(slo: Any) -> dict[str, Any]:
    return {
        "name": slo.name,
        "service": slo.service,
        "objective": slo.objective,
        "sli": slo.sli.describe(),
        "window": slo.window.describe(),
        "budgeting": slo.budgeting.describe(),
        "missingData": slo.missing_data,
        "origin": slo.origin,
        "alerting": [r.describe() for r in slo.alerting],
    }


# ---------------------------------------------------------------------- shared


def _write(text: str, output: Path) -> None:
    """Write ``text`` to ``output`` (``-``: standard output) whole or not at all.

    A regular file (or a new one) is replaced atomically, through a symlink if ``output`` is
    one; a device or a FIFO (``/dev/null``) is written to, never replaced by a file."""
    if str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        if output.exists() and not output.is_file():  # a device or a FIFO, maybe via a link
            with output.open("w") as stream:
                stream.write(text)
        else:
            target = output.resolve()  # a symlink's real file: the link itself stays
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            try:
                tmp.write_text(text)
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python 3.11)
        why = (err.strerror or str(err)) if isinstance(err, OSError) else "a symlink loop"
        raise CoalmineError(f"cannot write {output}: {why}", field="--output") from None
    print(f"wrote {output}", file=sys.stderr)


# ---------------------------------------------------------------------- generation


@slo_app.command("rules")
def rules_cmd(
    slos_file: Path | None = SLOS_OPTION,
    service: str | None = typer.Option(None, "--service", "-s", help="Only this service's SLOs."),
    output: Path = typer.Option(Path("-"), "--output", "-o", help="Rule file (default: stdout)."),
) -> None:
    """Write Prometheus recording and multi-window multi-burn-rate alerting rules (check them
    with `promtool check rules`). SLOs that PromQL cannot express are skipped with a warning."""
    from coalmine.slo.loader import load_slos
    from coalmine.slo.rules import RuleInput, render_rules, rule_input_from_slo

    try:
        slo_set = load_slos([_slos_path(slos_file)])
        inputs: list[RuleInput] = []
        for slo in slo_set.slos:
            if service is not None and slo.service != service:
                continue
            try:
                inputs.append(rule_input_from_slo(slo))
            except CoalmineError as err:
                print(f"warning: skipped {slo.name}: {err.one_line()}", file=sys.stderr)
        if not inputs:
            raise CoalmineError(
                "no SLO to write rules for" + (f" of service {service!r}" if service else ""),
                hint="rules cover router and prometheus SLIs; coalmine evaluates probe SLIs itself",
            )
        for inp in inputs:
            for note in inp.notes:
                print(f"note: {inp.slo}: {note}", file=sys.stderr)
        _write(render_rules(inputs), output)
    except CoalmineError as err:
        raise _fail(err) from None


@slo_app.command("alertmanager")
def alertmanager_cmd(
    output: Path = typer.Option(
        Path("alertmanager/canary-routes.yaml"), "--output", "-o", help="Config file (- stdout)."
    ),
    coalmine_url: str | None = typer.Option(
        None, "--coalmine-url", help="coalmine's webhook (`coalmine slo webhook` listens there)."
    ),
    page: list[str] = typer.Option([], "--page-webhook", help="Also send pages here."),
    ticket: list[str] = typer.Option([], "--ticket-webhook", help="Also send tickets here."),
) -> None:
    """Write the Alertmanager routes: pages and tickets to their receivers, pages to coalmine
    (rollback on burn), tickets inhibited by a page of the same SLO. Check with
    `amtool check-config`."""
    from coalmine.slo.alertmanager import DEFAULT_WEBHOOK_URL, render_alertmanager

    try:
        text = render_alertmanager(
            coalmine_url=coalmine_url or DEFAULT_WEBHOOK_URL,
            page_webhooks=page,
            ticket_webhooks=ticket,
        )
        _write(text, output)
    except CoalmineError as err:
        raise _fail(err) from None


def _slos_path(given: Path | None) -> Path:
    path = given or Path(os.environ.get("COALMINE_SLOS", "slos.yaml"))
    if not path.exists():
        raise CoalmineError(
            f"SLO file {path} not found",
            field="--slos",
            hint="pass --slos FILE, set COALMINE_SLOS, or start from examples/slos.yaml",
        )
    return path


# --at must be a time a datetime can show: from 1970 up to the end of year 9999 (UTC)
_AT_RANGE = (0.0, 253_402_300_800.0)


def _at(text: str | None) -> float:
    if text is None:
        return time.time()
    raw = text.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise CoalmineError(
                f"expected epoch seconds or an RFC 3339 time, got {text!r}",
                field="--at",
                hint="e.g. --at 2024-05-01T12:00:00Z",
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        value = stamp.timestamp()
    if not (math.isfinite(value) and _AT_RANGE[0] <= value < _AT_RANGE[1]):
        raise CoalmineError(
            f"expected a time between 1970 and 9999, got {text!r}",
            field="--at",
            hint="epoch seconds such as 1717200000, or 2024-06-01T00:00:00Z",
        )
    return value


def _open(config: Path | None, env: str | None) -> tuple[Any, Callable[[str], str | None]]:
    """The state store, and the router admin address of a service (from coalmine.yaml).

    Without a coalmine.yaml, ``COALMINE_DATABASE_URL`` alone is enough (no router lookup)."""
    from coalmine.cli.common import load_environment, open_environment_store
    from coalmine.store.open import open_store

    url = os.environ.get("COALMINE_DATABASE_URL")
    default = Path(os.environ.get("COALMINE_CONFIG", "coalmine.yaml"))
    if config is None and url and not default.exists():
        return open_store(url), lambda _service: None
    _, environment = load_environment(config, env)

    def admin(service: str) -> str | None:
        found = environment.services.get(service)
        return None if found is None else found.router.admin

    return open_environment_store(environment), admin


def _evaluate(
    names: list[str] | None,
    service: str | None,
    slos_file: Path | None,
    config: Path | None,
    env: str | None,
    at: str | None,
    collect: bool,
) -> tuple[float, list[tuple[Any, Any]]]:
    from coalmine.slo.evaluate import SloEvaluator
    from coalmine.slo.loader import load_slos
    from coalmine.slo.store import SloBucketStore
    from coalmine.spec.yamlpos import closest

    now = _at(at)
    path = _slos_path(slos_file)
    slo_set = load_slos([path])
    chosen = list(slo_set.slos)  # never empty: the loader refuses a file without SLOs
    if service is not None:
        chosen = [s for s in chosen if s.service == service]
        if not chosen:
            services = sorted({s.service for s in slo_set.slos})
            guess = closest(service, services)
            listed = "services with SLOs: " + ", ".join(services)
            raise CoalmineError(
                f"no SLO for service {service!r}",
                field="--service",
                hint=f"did you mean '{guess}'? {listed}" if guess else listed,
            )
    if names is not None:
        known = [s.name for s in slo_set.slos]
        for name in names:
            if name not in known:
                guess = closest(name, known)
                raise CoalmineError(
                    f"no SLO named {name!r}",
                    field="NAME",
                    hint=f"did you mean '{guess}'?" if guess else "SLOs: " + ", ".join(known),
                )
        chosen = [s for s in chosen if s.name in names]
    store, admin = _open(config, env)
    try:
        evaluator = SloEvaluator(
            SloBucketStore(store.engine), probe_db=store.engine, router_admin=admin
        )

        async def run() -> list[tuple[Any, Any]]:
            if collect:
                return [(s, await evaluator.refresh(s, now)) for s in chosen]
            return [(s, evaluator.evaluate(s, now)) for s in chosen]

        return now, asyncio.run(run())
    finally:
        store.close()


# ---------------------------------------------------------------------- status


@slo_app.command("status")
def status_cmd(
    service: str | None = typer.Option(None, "--service", "-s", help="Only this service's SLOs."),
    slos: Path | None = SLOS_OPTION,
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    at: str | None = AT_OPTION,
    collect: bool = COLLECT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Objective, SLI, budget remaining, burn rate per window, alert state and release tier.
    Exit code 2 when a source could not be collected (what is known is still shown)."""
    from coalmine.slo.policy import data_gap, evaluation_tier

    try:
        now, results = _evaluate(None, service, slos, config, env, at, collect)
    except CoalmineError as err:
        raise _fail(err) from None
    tiers = [evaluation_tier(r, s.release) for s, r in results]
    if as_json:
        slo_data = [
            {**r.to_dict(), "tier": str(t), "data_gap": data_gap(r)}
            for (_, r), t in zip(results, tiers, strict=True)
        ]
        print_json({"now": now, "slos": slo_data})
    else:
        for i, ((slo, result), tier) in enumerate(zip(results, tiers, strict=True)):
            if i:
                print()
            _print_status(slo, result, tier)
    _fail_if_stale(results)


def _fail_if_stale(results: list[tuple[Any, Any]]) -> None:
    """After the output: exit 2 with one line naming each SLO whose source was unreachable."""
    failed = [(slo, f) for slo, r in results for f in r.collection_failures]
    if not failed:
        return
    what = "; ".join(
        f"SLO {slo.name}: collection from {f.source} failed: {f.reason}" for slo, f in failed
    )
    sources = " and ".join(sorted({f.source for _, f in failed}))
    raise _fail(
        CoalmineError(
            what,
            hint=f"is {sources} reachable? The output is from the buckets stored before (stale); "
            "--no-collect evaluates them without collecting",
        )
    )


def _pct(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _stale_lines(result: Any) -> list[str]:
    return [
        f"stale: collection from {f.source} failed: {f.reason}; what follows is from the "
        "buckets stored before"
        for f in result.collection_failures
    ]


def _print_status(slo: Any, result: Any, tier: Any) -> None:
    from coalmine.slo.engine import fmt_burn, fmt_count
    from coalmine.slo.policy import data_gap
    from coalmine.slo.spec import format_span

    budget = result.budget
    print(
        f"{slo.name} ({slo.service}): objective {slo.objective:g}% {slo.sli.describe()}, "
        f"{slo.window.describe()}, {slo.budgeting.describe()}"
    )
    for line in _stale_lines(result):
        print(f"  {line}")
    period = result.period
    print(
        f"  SLI {_pct(result.sli)} ({fmt_count(period.bad)} bad of {fmt_count(period.total)} since "
        f"{_when(result.period_start)})"
    )
    left = "exhausted" if budget.exhausted else "left"
    print(
        f"  budget {_pct(budget.remaining, 1)} {left} (consumed {_pct(budget.consumed, 1)}: "
        f"{fmt_count(budget.spent)} of {fmt_count(budget.allowed)} allowed) -> release tier {tier}"
    )
    gap = data_gap(result)
    if gap:
        print(f"  release tier at least cautious: {gap}")
    burns = "  ".join(f"{format_span(w.window_s)} {fmt_burn(w.burn_rate)}" for w in result.windows)
    print(f"  burn rate: {burns}")
    states = ", ".join(f"{r.rule.name} {r.state}" for r in result.rules)
    stale = " as of the stored buckets (stale)" if result.stale else ""
    print(f"  alert state: {result.state}{stale} ({states})")
    if result.exhaustion_s is not None:
        when = "now" if result.exhaustion_s == 0 else f"in {format_span(result.exhaustion_s)}"
        print(f"  budget exhausted {when} at the {format_span(result.current_window_s)} burn rate")
    for guard in result.guards:
        if guard.single_event_fires and guard.severity == "page":
            print(f"  warning: {guard.message}")
    for note in result.notes:
        print(f"  note: {note}")


# ---------------------------------------------------------------------- explain


@slo_app.command("explain")
def explain_cmd(
    name: str = typer.Argument(..., help="The SLO to explain."),
    slos: Path | None = SLOS_OPTION,
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    at: str | None = AT_OPTION,
    collect: bool = COLLECT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Why each alert rule fires or would fire, and what the budget allows releases, in numbers.
    Exit code 2 when the SLO's source could not be collected (what is known is still shown)."""
    from coalmine.slo.policy import ROLLOUT_CLASSES, data_gap, evaluation_tier, release_decision

    try:
        _, results = _evaluate([name], None, slos, config, env, at, collect)
    except CoalmineError as err:
        raise _fail(err) from None
    slo, result = results[0]
    tier = evaluation_tier(result, slo.release)
    gap = data_gap(result)
    decisions = {
        cls: release_decision(
            tier,
            cls,
            budget_remaining=result.budget.remaining,
            thresholds=slo.release,
            slo=slo.name,
            data_gap=gap,
        )
        for cls in ROLLOUT_CLASSES
    }
    if as_json:
        print_json(
            {
                **result.to_dict(),
                "tier": str(tier),
                "data_gap": gap,
                "release": {cls: d.to_dict() for cls, d in decisions.items()},
            }
        )
    else:
        _print_explain(slo, result, tier, decisions)
    _fail_if_stale(results)


def _print_explain(slo: Any, result: Any, tier: Any, decisions: dict[str, Any]) -> None:
    from coalmine.slo.engine import fmt_burn, fmt_count
    from coalmine.slo.spec import format_span

    budget = result.budget
    period = result.period
    allowed = slo.allowed_error
    print(
        f"{slo.name} ({slo.service}): objective {slo.objective:g}% {slo.sli.describe()}, "
        f"{slo.window.describe()}, {slo.budgeting.describe()}, missing data: {slo.missing_data}"
    )
    for line in _stale_lines(result):
        print(line)
    print(
        f"period {_when(result.period_start)} .. {_when(result.end)}: "
        f"{fmt_count(period.total)} events, {fmt_count(period.bad)} bad, SLI {_pct(result.sli)}"
    )
    print(
        f"budget: {allowed * 100:.3g}% of {budget.method} allows {fmt_count(budget.allowed)} bad; "
        f"{fmt_count(budget.spent)} spent = {_pct(budget.consumed, 1)} consumed, "
        f"{_pct(budget.remaining, 1)} remaining{' (exhausted)' if budget.exhausted else ''}"
    )
    current = result.current_burn_rate
    line = f"burn rate over {format_span(result.current_window_s)}: {fmt_burn(current)}"
    if result.exhaustion_s == 0:
        line += "; the budget is exhausted"
    elif result.exhaustion_s is not None:
        line += f"; at this rate the budget is gone in {format_span(result.exhaustion_s)}"
    print(line)
    print("alert rules (a rule fires when both windows burn above its factor):")
    for rule in result.rules:
        r = rule.rule
        hold = f", for {format_span(r.for_s)}" if r.for_s else ""
        print(
            f"  {r.name} ({r.severity}): {rule.state.upper()}: factor {r.factor:.4g} x "
            f"{allowed * 100:.3g}% = error ratio above {rule.threshold * 100:.4g}%{hold}"
        )
        for label, stat in (("long ", rule.long), ("short", rule.short)):
            ratio = stat.error_ratio
            verdict = "above" if ratio is not None and ratio > rule.threshold else "not above"
            clip = " (clipped to the period start)" if stat.clipped else ""
            if stat.total <= 0:
                print(f"    {label} {format_span(stat.window_s)}: no events{clip}")
                continue
            counts = f"{fmt_count(stat.bad)} bad of {fmt_count(stat.total)}"
            print(
                f"    {label} {format_span(stat.window_s)}: {counts} = {_pct(ratio)}, "
                f"burn {fmt_burn(stat.burn_rate)}: {verdict}{clip}"
            )
        if rule.state in ("firing", "pending"):
            pass
        elif rule.more_bad_to_fire is None:
            print("    cannot fire: the threshold is not below 100%")
        elif rule.state == "ok" and rule.long.total > 0:
            print(f"    {rule.more_bad_to_fire} more bad event(s) now would fire it")
    for guard in result.guards:
        print(f"low traffic: {guard.message}")
    print(f"release tier {tier}:")
    for cls, decision in decisions.items():
        verdict = "allowed" if decision.allowed else "denied"
        print(f"  {cls}: {verdict}: {decision.reason}")
    for note in result.notes:
        print(f"note: {note}")
