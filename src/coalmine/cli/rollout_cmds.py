"""``coalmine rollout ...`` and ``coalmine controller run``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from coalmine.cli.common import (
    CONFIG_OPTION,
    ENV_OPTION,
    JSON_OPTION,
    load_environment,
    open_environment_store,
    print_json,
)
from coalmine.clock import SystemClock
from coalmine.errors import CoalmineError, SpecError
from coalmine.rollout.reconcile import command_problem
from coalmine.rollout.state import RolloutPhase, RolloutState
from coalmine.spec.model import Environment, ServiceConfig
from coalmine.store.base import RolloutRecord, Store

rollout_app = typer.Typer(help="Start, follow and steer rollouts.", no_args_is_help=True)
controller_app = typer.Typer(help="Run the controller that drives rollouts.", no_args_is_help=True)

MODE_OPTION = typer.Option("live", "--mode", help="live (terminal panel), plain or json")
ROLLOUT_CLASSES = ("feature", "fix", "rollback")
BUDGET_REFRESH_S = 10.0  # the controller evaluates a rollout's SLOs at most this often


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(controller_app, name="controller")


# ---------------------------------------------------------------------- starting


def prepare_rollout(
    files: list[Path],
    environment: Environment,
    env_name: str,
    name: str | None,
    time_scale: float,
    *,
    rollout_class: str | None = None,
    slo_files: list[Path] | None = None,
    accelerate: bool = False,
) -> tuple[RolloutRecord, Any]:
    """Load and check everything, and return the record to store and the plan. Writes nothing.

    ``rollout_class`` (``--class``) overrides the ``coalmine.dev/class`` annotation;
    ``slo_files`` (``--slos``) replace the environment's ``slos:`` list."""
    from coalmine.rollout.plan import build_plan, snapshot
    from coalmine.spec.loader import load_bundle
    from coalmine.spec.resolve import check_runnable

    if time_scale <= 0:
        raise CoalmineError(
            "the time scale must be above 0",
            field="--time-scale",
            hint="1 runs durations as written; 10 runs them ten times faster",
        )
    bundle = load_bundle([str(f) for f in files])
    if not bundle.rollouts:
        raise SpecError(
            "no Rollout in the files", file=str(files[0]), hint="add a document of kind Rollout"
        )
    if name is None:
        if len(bundle.rollouts) > 1:
            raise CoalmineError(
                "the files hold several Rollouts",
                field="--name",
                hint="pick one with --name: " + ", ".join(sorted(bundle.rollouts)),
            )
        (name,) = bundle.rollouts
    problems = check_runnable(bundle, name)
    if problems:
        raise problems[0]
    rollout = bundle.rollouts.get(name)
    if rollout is None:
        raise CoalmineError(
            f"no Rollout named {name!r}",
            field="--name",
            hint="one of: " + ", ".join(sorted(bundle.rollouts)),
        )
    service = environment.services.get(rollout.service)
    if service is None:
        raise CoalmineError(
            f"no service {rollout.service!r} in environment {env_name!r} of the configuration",
            hint="add it under environments." + env_name + ".services, or set the annotation "
            "coalmine.dev/service",
        )
    if rollout_class is not None and rollout_class not in ROLLOUT_CLASSES:
        raise CoalmineError(
            f"unknown rollout class {rollout_class!r}",
            field="--class",
            hint="use one of: " + ", ".join(ROLLOUT_CLASSES),
        )
    slo_paths = tuple(str(p) for p in slo_files) if slo_files else environment.slos
    slos = _load_slos(slo_paths)
    plan = build_plan(
        bundle,
        name,
        service,
        time_scale,
        rollout_class=rollout_class,
        slos=slos,
        accelerate=accelerate,
    )
    now = time.time()
    record = RolloutRecord(
        name=name,
        revision=0,
        phase=str(RolloutPhase.PENDING),
        state=RolloutState().to_dict(),
        spec=snapshot(
            [str(f) for f in files],
            service,
            env_name,
            time_scale,
            slo_paths=slo_paths,
            rollout_class=rollout_class,
            accelerate=accelerate,
        ),
        created_at=now,
        updated_at=now,
    )
    return record, plan


def _load_slos(paths: tuple[str, ...]) -> tuple[Any, ...]:
    from coalmine.slo.loader import load_slos

    for path in paths:
        if not Path(path).exists():
            raise CoalmineError(
                f"SLO file {path} not found",
                field="--slos",
                hint="give a slos.yaml or OpenSLO file",
            )
    return load_slos(list(paths)).slos if paths else ()


async def seed_generation(record: RolloutRecord, service: ServiceConfig) -> RolloutRecord:
    """Check that the router and both upstreams answer, and start the rollout's routing
    generations at what the router serves now."""
    from dataclasses import replace

    from coalmine.rollout.preflight import check_upstreams
    from coalmine.traffic.client import RouterClient

    await check_upstreams(service)
    client = RouterClient(service.router.admin)
    try:
        current = await client.get_routing()
    finally:
        await client.aclose()
    state = RolloutState(generation=current.generation, applied_generation=current.generation)
    return replace(record, state=state.to_dict())


def make_controller(
    store: Store, environment: Environment, slo_files: list[Path] | None = None
) -> Any:
    """The controller with the SLO engine as its budget source. ``slo_files``
    (``controller run --slos``): these SLOs replace the ones each rollout started with."""
    from dataclasses import replace

    from coalmine.rollout.budget_source import SloBudgetSource
    from coalmine.rollout.runner import Controller
    from coalmine.rollout.snapshot import plan_from_record, service_of
    from coalmine.slo.evaluate import SloEvaluator
    from coalmine.slo.store import SloBucketStore
    from coalmine.traffic.client import RouterClient

    override = _load_slos(tuple(str(p) for p in slo_files)) if slo_files else None

    def plan_for(record: RolloutRecord) -> Any:
        plan = plan_from_record(record)
        if override is None:
            return plan
        return replace(plan, slos=tuple(s for s in override if s.service == plan.rollout.service))

    def admin(service: str) -> str | None:
        found = environment.services.get(service)
        return None if found is None else found.router.admin

    budget = None
    engine = getattr(store, "engine", None)
    if engine is not None:
        evaluator = SloEvaluator(SloBucketStore(engine), probe_db=engine, router_admin=admin)
        budget = SloBudgetSource(evaluator, refresh_s=BUDGET_REFRESH_S)

    routers: dict[str, RouterClient] = {}

    def router_for(record: RolloutRecord) -> RouterClient:
        admin = service_of(record).router.admin
        if admin not in routers:
            routers[admin] = RouterClient(admin)
        return routers[admin]

    return Controller(
        store=store,
        clock=SystemClock(),
        plan_for=plan_for,
        router_for=router_for,
        receipts_dir=Path(environment.receipts_dir),
        budget_source=budget,
    )


async def drive(
    store: Store, environment: Environment, name: str, plan: Any, mode: str
) -> RolloutRecord:
    """Run the controller for one rollout in the foreground, showing it, until it settles."""
    from coalmine.cli.watch import watch
    from coalmine.rollout.runner import is_settled
    from coalmine.traffic.client import RouterClient

    controller = make_controller(store, environment)
    stop = asyncio.Event()
    control = asyncio.create_task(controller.run({name}, stop, exit_when_settled=True))
    router = RouterClient(environment.services[plan.rollout.service].router.admin)
    try:
        await watch(store, name, router, plan, control.done, mode)
        await control
    finally:
        stop.set()
        await router.aclose()
    record = store.get_rollout(name)
    assert record is not None and is_settled(record)
    print_receipts(controller.receipt_paths)
    return record


def print_receipts(paths: list[Path]) -> None:
    if paths:
        print("receipts:")
        for path in paths:
            print(f"  {path}")


@rollout_app.command("start")
def start(
    files: list[Path] = typer.Argument(..., help="Argo Rollouts manifests (Rollout + templates)"),
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    name: str | None = typer.Option(
        None, "--name", help="which Rollout, if the files hold several"
    ),
    time_scale: float = typer.Option(1.0, "--time-scale", help="run durations N times faster"),
    detach: bool = typer.Option(
        False, "--detach", help="only register it; a running `coalmine controller run` drives it"
    ),
    mode: str = MODE_OPTION,
    rollout_class: str | None = typer.Option(
        None,
        "--class",
        help="feature, fix or rollback, for the error-budget release policy (overrides the "
        "coalmine.dev/class annotation; default feature)",
    ),
    slos: list[Path] | None = typer.Option(
        None, "--slos", help="SLO files for the release policy (replace coalmine.yaml's slos:)"
    ),
    accelerate: bool = typer.Option(
        False,
        "--accelerate",
        help="with a healthy budget (normal tier), shorten pauses by the SLO's accelerateFactor",
    ),
) -> None:
    """Start a new revision of a rollout. Exit code 0 when it ends Healthy, 1 when rolled back."""
    cfg, environment = load_environment(config, env)
    env_name = env or cfg.default_environment
    record, plan = prepare_rollout(
        files,
        environment,
        env_name,
        name,
        time_scale,
        rollout_class=rollout_class,
        slo_files=slos,
        accelerate=accelerate,
    )
    service = environment.services[plan.rollout.service]
    record = asyncio.run(seed_generation(record, service))
    store = open_environment_store(environment)
    record = store.create_rollout(record)
    print(
        f"rollout {record.name} revision {record.revision} started "
        f"({len(plan.rollout.steps)} steps)"
    )
    if plan.slos:
        print(
            f"release policy: class {plan.rollout_class}, SLOs "
            + ", ".join(s.name for s in plan.slos)
        )
    if detach:
        return
    final = asyncio.run(drive(store, environment, record.name, plan, mode))
    state = RolloutState.from_dict(final.state)
    print(f"rollout {final.name}: {state.phase}: {state.message}")
    raise typer.Exit(0 if state.phase == RolloutPhase.HEALTHY else 1)


# ---------------------------------------------------------------------- reading


def _record(store: Store, name: str) -> RolloutRecord:
    record = store.get_rollout(name)
    if record is None:
        known = ", ".join(r.name for r in store.list_rollouts()) or "none yet"
        raise CoalmineError(f"no rollout named {name!r}", hint=f"known rollouts: {known}")
    return record


@rollout_app.command("status")
def status(
    name: str,
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    watch_: bool = typer.Option(False, "--watch", "-w", help="keep updating until it settles"),
    json_: bool = JSON_OPTION,
    mode: str = MODE_OPTION,
) -> None:
    """Where a rollout is: step, weights, traffic per version, analysis, decisions."""
    from coalmine.cli.watch import current_document, watch
    from coalmine.rollout.runner import is_settled
    from coalmine.rollout.snapshot import plan_from_record, service_of
    from coalmine.traffic.client import RouterClient

    _, environment = load_environment(config, env)
    store = open_environment_store(environment)
    record = _record(store, name)
    plan = plan_from_record(record)
    router = RouterClient(service_of(record).router.admin)

    async def once() -> dict[str, Any] | None:
        try:
            return await current_document(store, name, router, plan)
        finally:
            await router.aclose()

    if not watch_:
        doc = asyncio.run(once())
        if json_:
            print_json(doc)
        else:
            from coalmine.cli.view import render

            Console().print(render(doc or {}))
        return

    def done() -> bool:
        current = store.get_rollout(name)
        return current is None or is_settled(current)

    async def follow() -> None:
        try:
            await watch(store, name, router, plan, done, "json" if json_ else mode)
        finally:
            await router.aclose()

    asyncio.run(follow())


@rollout_app.command("list")
def list_(
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    all_: bool = typer.Option(False, "--all", help="every revision, not only the latest"),
    json_: bool = JSON_OPTION,
) -> None:
    """Every rollout with its latest revision and phase."""
    _, environment = load_environment(config, env)
    store = open_environment_store(environment)
    rows = []
    for r in store.list_rollouts(include_history=all_):
        state = RolloutState.from_dict(r.state)
        rows.append(
            {
                "name": r.name,
                "revision": r.revision,
                "phase": r.phase,
                "step": state.step_index,
                "canary_weight": state.canary_weight,
                "message": state.message,
                "updated_at": r.updated_at,
            }
        )
    if json_:
        print_json(rows)
        return
    table = Table("name", "rev", "phase", "step", "weight", "message")
    for row in rows:
        table.add_row(
            row["name"],
            str(row["revision"]),
            row["phase"],
            str(row["step"]),
            f"{row['canary_weight']}%",
            row["message"],
        )
    Console().print(table)


@rollout_app.command("history")
def history(
    name: str,
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    revision: int | None = typer.Option(None, "--revision", help="default: the latest"),
    json_: bool = JSON_OPTION,
) -> None:
    """Every decision the controller took for a rollout, with its reason."""
    _, environment = load_environment(config, env)
    store = open_environment_store(environment)
    record = _record(store, name)
    decisions = store.decisions(name, revision or record.revision)
    if json_:
        print_json([d.__dict__ for d in decisions])
        return
    table = Table("time", "step", "decision", "reason")
    for d in decisions:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.at)),
            "" if d.step is None else str(d.step + 1),
            d.kind,
            d.reason,
        )
    Console().print(table)


# ---------------------------------------------------------------------- steering


def _enqueue(
    name: str, command: str, args: dict[str, Any], config: Path | None, env: str | None
) -> None:
    _, environment = load_environment(config, env)
    store = open_environment_store(environment)
    record = _record(store, name)
    problem = command_problem(RolloutState.from_dict(record.state), command)
    if problem:
        raise CoalmineError(f"cannot {command} rollout {name!r}: {problem}")
    store.enqueue_command(name, command, args, time.time())
    beat = store.last_heartbeat()
    if beat is None or time.time() - beat[1] > 5:
        print(
            f"{command} queued for {name}; no controller is running: it applies when "
            "`coalmine controller run` or `coalmine rollout start` runs"
        )
    else:
        print(f"{command} queued for {name}; the controller applies it within a second")


def _steering(command: str, doc: str) -> None:
    def handler(
        name: str,
        config: Path | None = CONFIG_OPTION,
        env: str | None = ENV_OPTION,
        reason: str | None = typer.Option(None, "--reason", help="kept with the decision"),
    ) -> None:
        _enqueue(name, command, {"reason": reason} if reason else {}, config, env)

    handler.__doc__ = doc
    rollout_app.command(command)(handler)


@rollout_app.command("promote")
def promote(
    name: str,
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    full: bool = typer.Option(False, "--full", help="skip every remaining step and analysis"),
) -> None:
    """Accept the current step (a pause, an inconclusive analysis) and go on."""
    _enqueue(name, "promote", {"full": full}, config, env)


@rollout_app.command("approve")
def approve(
    name: str,
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    emergency: bool = typer.Option(
        False, "--emergency", help="declare an emergency: lets a release go on a frozen budget"
    ),
    reason: str | None = typer.Option(None, "--reason", help="kept with the decision"),
) -> None:
    """Approve a release the error-budget policy holds: a fix on a protected budget, or (with
    --emergency) any release on an exhausted one."""
    import getpass

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    args: dict[str, Any] = {"emergency": emergency, "by": who}
    if reason:
        args["reason"] = reason
    _enqueue(name, "approve", args, config, env)


_steering("pause", "Hold the rollout at its current step (analysis keeps watching).")
_steering("resume", "Continue a paused rollout; an inconclusive analysis runs again.")
_steering("abort", "Stop the rollout and send all traffic back to the stable version.")
_steering("retry", "Start an aborted or rolled-back rollout again from its first step.")
_steering("undo", "Send all traffic of a fully promoted rollout back to the previous version.")


# ---------------------------------------------------------------------- controller


@controller_app.command("run")
def controller_run(
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    exit_when_idle: bool = typer.Option(
        False, "--exit-when-idle", help="stop once no rollout is active"
    ),
    slos: list[Path] | None = typer.Option(
        None,
        "--slos",
        help="SLO files for the release policy, instead of those each rollout started with",
    ),
) -> None:
    """Drive every active rollout of the environment until stopped (SIGTERM or Ctrl-C)."""
    import signal

    _, environment = load_environment(config, env)
    store = open_environment_store(environment)
    controller = make_controller(store, environment, slos)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await controller.run(None, stop, exit_when_settled=exit_when_idle)

    print(f"controller {controller.controller_id} running", flush=True)
    asyncio.run(main())
