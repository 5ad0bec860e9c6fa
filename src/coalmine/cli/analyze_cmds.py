"""``coalmine analyze replay`` and ``coalmine analyze record``: backtesting.

See docs/backtesting.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import typer

from coalmine.cli.common import JSON_OPTION, print_json
from coalmine.errors import CoalmineError

analyze_app = typer.Typer(
    help="Backtest analysis templates: record router traffic, replay it on a simulated clock.",
    no_args_is_help=True,
)

PAGE_LIMIT = 10_000  # records per admin call
POLL_S = 1.0


def register(app: typer.Typer) -> None:
    app.add_typer(analyze_app, name="analyze")


# ---------------------------------------------------------------------- replay


@analyze_app.command("replay")
def replay_cmd(
    template: list[Path] = typer.Option(
        ..., "--template", "-t", help="File or directory with AnalysisTemplates (repeatable)."
    ),
    data: Path = typer.Option(..., "--data", "-d", help="JSON-lines data file."),
    name: list[str] = typer.Option(
        [], "--name", "-n", help="Template to replay (repeatable; default: the only one)."
    ),
    args: list[str] = typer.Option([], "--args", "-a", help="Template arg as name=value."),
    start: str | None = typer.Option(
        None,
        "--start",
        help="Start the run at this data time t, or +DURATION after the first line "
        "(default: the first line).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Replay recorded data through the analysis on a simulated clock; print the timeline."""
    from coalmine.analysis import replay as rp
    from coalmine.spec.loader import load_bundle

    bundle = load_bundle(template)
    metrics, resolved = rp.resolve_metrics(bundle, name, rp.parse_args(args))
    loaded = rp.load_data(data)
    result = rp.replay(metrics, loaded, start=_start(start, loaded), args=resolved)
    if as_json:
        print_json(result.to_dict())
        return
    _print_timeline(result)


def _start(text: str | None, data: Any) -> float | None:
    from coalmine.durations import parse_duration

    if text is None:
        return None
    raw = text.strip()
    try:
        if raw.startswith("+"):
            return float(data.start) + parse_duration(raw[1:])
        return float(raw)
    except ValueError:
        raise CoalmineError(
            f"expected a data time or +DURATION, got {text!r}",
            field="--start",
            hint="--start 120 starts at t=120; --start +2m two minutes after the first line",
        ) from None


def _print_timeline(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from coalmine.analysis.replay import outcome_line, timeline_rows

    summary = result.data.summary()
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(
        f"replayed {summary['file']}: {summary['requests']} requests "
        f"({summary['canary_requests']} canary, {summary['stable_requests']} stable), "
        f"{summary['samples']} samples, t {summary['first_t']:g} to {summary['last_t']:g}"
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    table = Table("time", "metric", "phase", "value", "message", box=None, padding=(0, 1))
    for row in timeline_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(outcome_line(result), markup=False)


# ---------------------------------------------------------------------- record


@analyze_app.command("record")
def record_cmd(
    admin: str = typer.Option(..., "--admin", help="The router's admin address, host:port."),
    duration: str = typer.Option(..., "--duration", help="How long to record, e.g. 60s or 5m."),
    output: Path = typer.Option(..., "--output", "-o", help="JSON-lines file to write."),
    history: str = typer.Option(
        "0s",
        "--history",
        help="Also keep what the router still holds from this long before the start, e.g. 5m.",
    ),
    poll: float = typer.Option(POLL_S, "--poll", help="Seconds between admin calls."),
) -> None:
    """Record the router's per-request measurements to a file that `analyze replay` reads."""
    from coalmine.durations import format_duration

    seconds = _duration(duration, "--duration")
    back = _duration(history, "--history")
    if poll <= 0:
        raise CoalmineError("the poll interval must be above 0", field="--poll")
    try:
        handle = output.open("w", encoding="utf-8")
    except OSError as err:
        raise CoalmineError(f"cannot write {output}: {err.strerror}", field="--output") from None
    with handle:
        try:
            counts = asyncio.run(_record(admin, seconds, back, poll, handle))
        except KeyboardInterrupt:
            print("coalmine: interrupted; the file holds what was recorded", file=sys.stderr)
            raise typer.Exit(130) from None
        except CoalmineError:
            if handle.tell() == 0:  # nothing recorded: leave no empty file behind
                handle.close()
                output.unlink(missing_ok=True)
            raise
    total = sum(counts.values())
    print(
        f"recorded {total} requests ({counts['canary']} canary, {counts['stable']} stable) "
        f"over {format_duration(seconds)} to {output}",
        file=sys.stderr,
    )


def _duration(text: str, option: str) -> float:
    from coalmine.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        raise CoalmineError(str(err), field=option, hint="e.g. 30s, 5m or 1h") from None


async def _record(
    admin: str, seconds: float, back: float, poll: float, out: IO[str]
) -> dict[str, int]:
    """Poll ``/admin/records`` from the start until ``start + seconds`` and write every record
    with ``start - back < t <= start + seconds`` once, in time order."""
    from coalmine.traffic.client import RouterClient

    counts = {"canary": 0, "stable": 0}
    started = time.time()
    end = started + seconds
    since = started - back
    async with RouterClient(admin) as client:
        announced = False
        while True:
            polled_at = time.time()
            since = await _drain(client, since, end, out, counts)
            if not announced:
                print(
                    f"recording {admin} until {end:.3f} (epoch seconds)",
                    file=sys.stderr,
                    flush=True,
                )
                announced = True
            if polled_at > end:  # this poll saw everything up to the end
                break
            await asyncio.sleep(max(0.0, min(poll, end - time.time() + 0.05)))
    return counts


async def _drain(
    client: Any, since: float, end: float, out: IO[str], counts: dict[str, int]
) -> float:
    """Write every record with ``since < t <= end`` the router holds now; return the new since.

    A full page may cut a group of records with the same ``t``: that group is left for the next
    call (which asks for ``t`` above the last complete time), so nothing is lost or doubled."""
    from coalmine.traffic.client import whole_records_page

    while True:
        page, full = await whole_records_page(client, since, PAGE_LIMIT)
        for item in page:
            if item["t"] > end:
                return since
            line = {
                "t": item["t"],
                "version": item["version"],
                "latency_ms": item["latency_ms"],
                "status": item["status"],
            }
            out.write(json.dumps(line) + "\n")
            counts[item["version"] if item["version"] in counts else "stable"] += 1
            since = item["t"]
        out.flush()
        if not full:
            return since
