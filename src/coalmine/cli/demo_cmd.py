"""``coalmine demo``: the main job, end to end, on this machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from coalmine.durations import parse_duration
from coalmine.errors import CoalmineError


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    fault: list[str] = typer.Option(
        [], "--fault", help="make the canary bad: error-rate=0.05, latency=+150ms or crash"
    ),
    fault_after: str = typer.Option(
        "10s", "--fault-after", help="when the fault starts, after the rollout starts"
    ),
    time_scale: float = typer.Option(
        10.0, "--time-scale", help="run the rollout's durations N times faster"
    ),
    rollout_file: Path | None = typer.Option(
        None, "--file", "-f", help="default: examples/rollouts.yaml"
    ),
    rate: float = typer.Option(200.0, "--rate", help="requests per second of user traffic"),
    mode: str = typer.Option("live", "--mode", help="live (terminal panel), plain or json"),
    json_: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="where state, logs and receipts go"
    ),
) -> None:
    """Run a real canary: two versions, the router, live traffic, analysis, then promotion,
    or, with --fault, an automatic rollback. Exit code 0 when the outcome is the expected one."""
    from coalmine.demo.faults import combine, parse_fault
    from coalmine.demo.run import DemoOptions, default_rollout_file, run_demo

    faults = combine(parse_fault(f) for f in fault)
    try:
        after = parse_duration(fault_after)
    except ValueError as err:
        raise CoalmineError(str(err), field="--fault-after", hint="use 10s, 1m") from None
    if rate <= 0:
        raise CoalmineError("the rate must be above 0", field="--rate")
    if mode not in ("live", "plain", "json"):
        raise CoalmineError(f"unknown mode {mode!r}", field="--mode", hint="live, plain or json")
    options = DemoOptions(
        rollout_file=rollout_file or default_rollout_file(),
        time_scale=time_scale,
        faults=faults,
        fault_after=after,
        rate=rate,
        mode="json" if json_ and mode == "live" else mode,
        workdir=workdir,
    )
    from coalmine.demo.run import DemoInterrupted

    try:
        result = run_demo(options)
    except DemoInterrupted:
        print("interrupted: every process the demo started is stopped", file=sys.stderr)
        raise typer.Exit(130) from None
    if json_:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_summary(result, faults.describe() if not faults.empty else None)
    raise typer.Exit(0 if result.expected else 1)


def print_summary(result: object, fault: str | None) -> None:
    from coalmine.demo.run import DemoResult

    assert isinstance(result, DemoResult)
    data = result.to_dict()
    console = Console()
    style = "green" if result.phase == "Healthy" else "red"
    console.print(f"\n[bold]outcome:[/bold] [{style}]{result.phase}[/{style}] — {result.message}")
    console.print(f"duration: {data['duration_s']:.1f}s")
    if fault:
        console.print(f"fault injected into the canary: {fault}")
        for label, key in (
            ("fault onset → failing verdict", "onset_to_verdict_s"),
            ("fault onset → last request routed to the canary", "onset_to_last_canary_request_s"),
        ):
            value = data[key]
            console.print(f"{label}: " + ("–" if value is None else f"{value:.2f}s"))
        if result.rollback_duration_ms is not None:
            console.print(
                f"rollback decision → traffic switched: {result.rollback_duration_ms:.0f} ms"
            )
    if not result.expected:
        console.print(
            "[bold red]unexpected outcome[/bold red]: "
            + (
                "the healthy canary was rolled back"
                if fault is None
                else "the faulty canary was not rolled back"
            )
        )
    print("receipts:")
    for path in result.receipts:
        print(f"  {path}")
    print(f"state, logs and configuration: {result.workdir}")
