"""The per-step table ``probes run`` prints: status, timing phases and every assertion."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from coalmine.probes.model import FlowResult, StepResult

PHASES = ("resolve", "connect", "tls", "processing", "transfer")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _step_word(step: StepResult) -> Text:
    if step.skipped:
        return Text("skipped", style="dim")
    if step.passed:
        word = "ok" if step.first_passed else f"ok after {len(step.attempts)} attempts"
        return Text(word, style="green")
    if step.allow_failure:
        return Text("failed (allowed)", style="yellow")
    return Text("FAILED", style="bold red")


def result_table(result: FlowResult) -> Table:
    pinned = f", pinned to {result.version}" if result.version else ""
    verdict = "passed" if result.success else f"FAILED ({result.reason or 'error'})"
    table = Table(
        title=f"{result.flow} on {result.environment}{pinned}: {verdict} "
        f"in {_ms(result.duration_s)} ms",
        title_justify="left",
    )
    table.add_column("step")
    table.add_column("result")
    table.add_column("status", justify="right")
    for phase in PHASES:
        table.add_column(f"{phase} ms", justify="right")
    table.add_column("total ms", justify="right")
    for step in result.steps:
        name = f"finally: {step.name}" if step.is_finally else step.name
        final = step.final
        if final is None:
            table.add_row(name, _step_word(step), "", *[""] * (len(PHASES) + 1))
            continue
        phases = final.timing.as_dict()
        table.add_row(
            name,
            _step_word(step),
            str(final.status) if final.status is not None else "-",
            *[_ms(phases[p]) for p in PHASES],
            _ms(final.duration_s),
        )
        if final.error:
            table.add_row("", Text(f"  {final.error}", style="red"), *[""] * (len(PHASES) + 2))
        for check in final.assertions:
            mark = Text("  ✓ ", style="green") if check.passed else Text("  ✗ ", style="red")
            line = mark + Text(check.text)
            if not check.passed:
                line += Text(f" — {check.message or 'saw ' + check.actual}", style="red")
            table.add_row("", line, *[""] * (len(PHASES) + 2))
    return table


def print_result(result: FlowResult, console: Console | None = None) -> None:
    (console or Console()).print(result_table(result))
    if result.success and not result.first_attempt_success:
        (console or Console()).print(
            "note: passed only after retries; the first attempt failed "
            "(counted apart in coalmine_probe_first_attempt_success)"
        )
