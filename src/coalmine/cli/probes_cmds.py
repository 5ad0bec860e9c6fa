"""``coalmine probes validate|lint|run|serve|replay``, also installed as ``syntheticsctl``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from coalmine.errors import CoalmineError

probes_app = typer.Typer(
    name="probes",
    help="Synthetic probe flows: check them, run them once, serve them on schedule, spot drift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PATHS_ARG = typer.Argument(..., help="Flow files or directories of flows (synthetics/).")


@probes_app.command()
def validate(
    paths: list[Path] = PATHS_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Check flows and the libraries they use: schema and references. Exit code 2 on errors."""
    from coalmine.probes.loader import load_flows_with_errors

    flows, errors = load_flows_with_errors(paths)
    if as_json:
        report = {
            "ok": not errors,
            "flows": sorted(f.name for f in flows),
            "errors": [
                {"file": e.file, "line": e.line, "field": e.field, "message": e.message}
                | {"hint": e.hint}
                for e in errors
            ],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        for error in errors:
            typer.echo(error.one_line(), err=True)
        if not errors:
            names = ", ".join(sorted(f.name for f in flows))
            typer.echo(f"ok: {len(flows)} flow(s) valid: {names}")
    if errors:
        raise typer.Exit(2)


@probes_app.command()
def lint(
    paths: list[Path] = PATHS_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Flag drift risks: no assertions, no timeout, no SLO binding, plain-text secrets, unused
    captures. Exit code 1 when there are findings, 2 when a file does not load."""
    from coalmine.probes.lint import lint_paths

    findings, errors = lint_paths(paths)
    if as_json:
        report = {
            "ok": not findings and not errors,
            "findings": [f.as_dict() for f in findings],
            "errors": [e.one_line() for e in errors],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        for error in errors:
            typer.echo(error.one_line(), err=True)
        for finding in findings:
            typer.echo(finding.one_line())
        if not findings and not errors:
            typer.echo("ok: no findings")
    if errors:
        raise typer.Exit(2)
    if findings:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(probes_app)


def syntheticsctl_main() -> None:
    """The ``syntheticsctl`` console script: the ``probes`` group as a command of its own."""
    probes_app.info.name = "syntheticsctl"
    try:
        probes_app()
    except CoalmineError as err:
        print(f"syntheticsctl: error: {err.one_line()}", file=sys.stderr)
        sys.exit(2)
