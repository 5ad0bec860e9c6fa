"""What ``probes run`` prints: per flow, a table of steps (result, status, timing phases) and,
under it, every assertion of every step with what was seen.

Assertions live outside the table: a column wide enough for them would squeeze the timing
columns into ellipses on an 80-column terminal or a CI log. When the output is not a terminal
(CI logs, pipes) the table gets the width it needs, so nothing is cut off.
"""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from coalmine.probes.model import AssertionResult, FlowResult, StepResult

PHASES = ("resolve", "connect", "tls", "processing", "transfer")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _step_name(step: StepResult) -> str:
    return f"finally: {step.name}" if step.is_finally else step.name


def _step_word(step: StepResult) -> Text:
    if step.skipped:
        return Text("skipped", style="dim")
    if step.passed:
        word = "ok" if step.first_passed else f"ok after {len(step.attempts)} attempts"
        return Text(word, style="green")
    if step.allow_failure:
        return Text("failed (allowed)", style="yellow")
    return Text("FAILED", style="bold red")


def title(result: FlowResult) -> Text:
    pinned = f", pinned to {result.version}" if result.version else ""
    verdict = "passed" if result.success else f"FAILED ({result.reason or 'error'})"
    style = "bold" if result.success else "bold red"
    return Text(
        f"{result.flow} on {result.environment}{pinned}: {verdict} in {_ms(result.duration_s)} ms",
        style=style,
    )


def steps_table(result: FlowResult) -> Table:
    """One row per step: result, status, the timing phases and the total, in milliseconds."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0, 0, 1), pad_edge=False, show_edge=False)
    table.add_column("step", overflow="fold")
    table.add_column("result", overflow="fold")
    table.add_column("status", justify="right", no_wrap=True)
    for phase in PHASES:
        table.add_column(phase, justify="right", no_wrap=True)
    table.add_column("total ms", justify="right", no_wrap=True)
    for step in result.steps:
        final = step.final
        if final is None:
            table.add_row(_step_name(step), _step_word(step), *[""] * (len(PHASES) + 2))
            continue
        phases = final.timing.as_dict()
        table.add_row(
            _step_name(step),
            _step_word(step),
            str(final.status) if final.status is not None else "-",
            *[_ms(phases[p]) for p in PHASES],
            _ms(final.duration_s),
        )
    return table


def _why(check: AssertionResult) -> str:
    """The failure without repeating the assertion (messages start with its text)."""
    message = check.message or f"got {check.actual}"
    return message.removeprefix(f"{check.text}: ")


def checks(result: FlowResult) -> Group:
    """Per step that ran: its error (no response, a template or capture problem) and each
    assertion, ✓ or ✗ with what was seen."""
    lines: list[Text] = []
    for step in result.steps:
        final = step.final
        if final is None:
            continue
        lines.append(Text(_step_name(step), style="bold"))
        messages = {a.message for a in final.assertions if not a.passed}
        if final.error and final.error not in messages:
            lines.append(Text(f"  error: {final.error}", style="red"))
        for check in final.assertions:
            if check.passed:
                lines.append(Text("  ✓ ", style="green") + Text(check.text))
            else:
                lines.append(
                    Text("  ✗ ", style="red")
                    + Text(check.text)
                    + Text(f" — {_why(check)}", style="red")
                )
    return Group(*lines)


def _console_for(table: Table) -> Console:
    console = Console()
    if not console.is_terminal:
        needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
        if needed > console.width:
            console = Console(width=needed)
    return console


def print_result(result: FlowResult, console: Console | None = None) -> None:
    table = steps_table(result)
    out = console or _console_for(table)
    out.print(title(result))
    out.print(table)
    out.print(checks(result))
    if result.success and not result.first_attempt_success:
        out.print(
            "note: passed only after retries; the first attempt failed "
            "(counted apart in coalmine_probe_first_attempt_success)"
        )
    out.print()
