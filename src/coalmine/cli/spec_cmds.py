"""``coalmine validate`` and ``coalmine schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from coalmine.errors import CoalmineError, SpecError
from coalmine.spec.schema import KINDS as SCHEMA_KINDS


def _problems(files: list[Path], config: Path | None) -> tuple[list[SpecError], dict[str, Any]]:
    """Every problem of the files (load errors first, then what stops them running)."""
    from coalmine.spec.config import load_config
    from coalmine.spec.loader import load_bundle_with_errors
    from coalmine.spec.resolve import check_runnable

    bundle, problems = load_bundle_with_errors(files)
    if not problems:
        problems.extend(check_runnable(bundle))
    if config is not None:
        try:
            cfg = load_config(config)
        except SpecError as err:
            problems.append(err)
        else:
            services = cfg.environment().services
            for rollout in bundle.rollouts.values():
                if rollout.service not in services:
                    where = rollout.location
                    problems.append(
                        SpecError(
                            f"service '{rollout.service}' is not in environment "
                            f"'{cfg.default_environment}' of {config}",
                            file=where.file if where else None,
                            line=where.line if where else None,
                            field="metadata",
                            hint="add it under services, or set annotation coalmine.dev/service",
                        )
                    )
    summary = {
        "rollouts": sorted(bundle.rollouts),
        "templates": sorted(bundle.templates),
        "clusterTemplates": sorted(bundle.cluster_templates),
    }
    return problems, summary


def _as_dict(err: SpecError) -> dict[str, Any]:
    return {
        "file": err.file,
        "line": err.line,
        "field": err.field,
        "message": err.message,
        "hint": err.hint,
        "notSupported": type(err).__name__ == "NotSupportedError",
    }


def register(app: typer.Typer) -> None:
    """Attach ``validate`` and ``schema`` to ``app``."""

    @app.command()
    def validate(
        files: list[Path] = typer.Argument(..., help="Rollout and AnalysisTemplate files."),
        config: Path | None = typer.Option(None, "--config", help="Also check this coalmine.yaml."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
    ) -> None:
        """Check files for errors and for what coalmine cannot run yet. Exit code 2 on problems."""
        problems, summary = _problems(files, config)
        if as_json:
            report = {"ok": not problems, "problems": [_as_dict(p) for p in problems], **summary}
            typer.echo(json.dumps(report, indent=2))
        elif problems:
            for problem in problems:
                typer.echo(problem.one_line())
        else:
            templates = len(summary["templates"]) + len(summary["clusterTemplates"])
            typer.echo(f"ok: {len(summary['rollouts'])} rollouts, {templates} templates")
        if problems:
            raise typer.Exit(2)

    @app.command()
    def schema(
        kind: str = typer.Argument("rollout", help=f"One of: {', '.join(SCHEMA_KINDS)}."),
        output: Path | None = typer.Option(None, "--output", "-o", help="Write it to this file."),
    ) -> None:
        """Print the JSON Schema of a file kind coalmine reads."""
        from coalmine.spec.schema import json_schema

        try:
            text = json.dumps(json_schema(kind), indent=2) + "\n"
        except CoalmineError as err:
            typer.echo(f"coalmine: error: {err.one_line()}", err=True)
            raise typer.Exit(2) from None
        if output is None:
            typer.echo(text, nl=False)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as err:
            typer.echo(f"coalmine: error: {output}: cannot write: {err.strerror}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"wrote {output}")
