"""``coalmine analyze replay`` and ``coalmine analyze record``: backtesting.

See docs/backtesting.md.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import typer

from coalmine.cli.common import JSON_OPTION, print_json, refuse_unusable_output
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
        start = float(data.start) + parse_duration(raw[1:]) if raw.startswith("+") else float(raw)
    except ValueError:
        start = math.nan
    if not math.isfinite(start):
        raise CoalmineError(
            f"expected a data time or +DURATION, got {text!r}",
            field="--start",
            hint="--start 120 starts at t=120; --start +2m two minutes after the first line",
        )
    return start


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
    if not (math.isfinite(poll) and poll > 0):
        raise CoalmineError(
            f"the poll interval must be a number of seconds above 0, got {poll}", field="--poll"
        )
    _check_admin(admin)
    counts = {"canary": 0, "stable": 0}
    with _Output(output) as out:
        try:
            asyncio.run(_record(admin, seconds, back, poll, out.handle, counts))
        except KeyboardInterrupt:
            print(f"coalmine: interrupted; {_keep(out, counts)}", file=sys.stderr)
            raise typer.Exit(130) from None
        except OSError as err:  # the file, not the network: httpx wraps its own errors
            raise CoalmineError(
                f"cannot write {output}: {err.strerror}", field="--output"
            ) from None
        except (CoalmineError, KeyError, TypeError, ValueError) as err:
            error = err if isinstance(err, CoalmineError) else _not_a_router(admin)
            if sum(counts.values()):
                error.hint = _keep(out, counts)
            raise error from None
        out.keep()
    total = sum(counts.values())
    print(
        f"recorded {total} requests ({counts['canary']} canary, {counts['stable']} stable) "
        f"over {format_duration(seconds)} to {output}",
        file=sys.stderr,
    )


def _keep(out: _Output, counts: dict[str, int]) -> str:
    """Keep a stopped recording's whole lines, if it has any; say where they are."""
    total = sum(counts.values())
    if not total:
        return f"nothing was recorded; {out.path} was not written"
    return f"the {total} requests recorded before are in {out.keep()}"


def _not_a_router(
    admin: str, what: str = "something that is not a router's record list"
) -> CoalmineError:
    return CoalmineError(
        f"router admin {admin} answered {what}",
        field="--admin",
        hint="give the router's admin address (router.admin in coalmine.yaml)",
    )


def _check_admin(admin: str) -> None:
    """``host:port`` (``http://`` allowed); user info is refused without being echoed."""
    text = admin.strip().removeprefix("http://").rstrip("/")
    if "@" in text:
        raise CoalmineError(
            "the router's admin address takes no user name or password", field="--admin"
        )
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in "/ "):
        raise CoalmineError(
            f"expected the router's admin address as host:port, got {admin!r}",
            field="--admin",
            hint="e.g. --admin 127.0.0.1:8081 (router.admin in coalmine.yaml)",
        )


class _Output:
    """The recording's file, written whole or not at all: lines go to a hidden file beside
    ``path`` that replaces it only by :meth:`keep`. A failed or empty recording leaves ``path``
    as it was, and a line is never cut off. Refuses an unusable ``path`` before recording."""

    def __init__(self, path: Path) -> None:
        self.path = path
        refuse_unusable_output(path, "--output")
        folder = path.parent
        self.partial = folder / f".{path.name}.{os.getpid()}.partial"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            fd = os.open(self.partial, flags, 0o666)  # the umask applies, as to a plain open()
        except OSError as err:
            raise CoalmineError(
                f"cannot write in {folder}: {err.strerror}", field="--output"
            ) from None
        self.handle: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        self.kept = False

    def __enter__(self) -> _Output:
        return self

    def keep(self) -> Path:
        """Move what was written into place (once); return where it is."""
        if not self.kept:
            self.handle.close()
            os.replace(self.partial, self.path)
            self.kept = True
        return self.path

    def __exit__(self, *exc: object) -> None:
        if not self.kept:
            self.handle.close()
            self.partial.unlink(missing_ok=True)


def _duration(text: str, option: str) -> float:
    from coalmine.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        raise CoalmineError(str(err), field=option, hint="e.g. 30s, 5m or 1h") from None


async def _record(
    admin: str, seconds: float, back: float, poll: float, out: IO[str], counts: dict[str, int]
) -> None:
    """Poll ``/admin/records`` from the start until ``start + seconds`` and write every record
    with ``start - back < t <= start + seconds`` once, in time order; ``counts`` per version."""
    from coalmine.traffic.client import RouterClient

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


async def _drain(
    client: Any, since: float, end: float, out: IO[str], counts: dict[str, int]
) -> float:
    """Write every record with ``since < t <= end`` the router holds now; return the new since.

    A full page may cut a group of records with the same ``t``: that group is left for the next
    call (which asks for ``t`` above the last complete time), so nothing is lost or doubled.
    A page is checked whole before any of it is written."""
    from coalmine.traffic.client import whole_records_page

    while True:
        page, full = await whole_records_page(client, since, PAGE_LIMIT)
        lines: list[str] = []
        sides: list[str] = []
        for item in page:
            line, record = _line(item, client.admin)
            if record.t > end:
                full = False
                break
            lines.append(line)
            sides.append(record.side)
            since = record.t
        out.write("".join(lines))
        out.flush()
        for side in sides:
            counts[side] += 1
        if not full:
            return since


def _line(item: Any, admin: str) -> tuple[str, Any]:
    """One router record as a data line, checked as `analyze replay` will read it."""
    from coalmine.analysis.replay import REQUEST_FIELDS, ReplayDataError, validate_line

    try:
        line = json.dumps({key: item[key] for key in REQUEST_FIELDS}, allow_nan=False)
        record = validate_line(line)
    except (KeyError, TypeError, ValueError, ReplayDataError) as err:
        reason = err.one_line() if isinstance(err, ReplayDataError) else "not a request record"
        raise _not_a_router(admin, f"a record that cannot be replayed: {reason}") from None
    return line + "\n", record
