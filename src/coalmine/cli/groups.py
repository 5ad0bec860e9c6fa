"""Where every command group is attached to the ``coalmine`` command."""

from __future__ import annotations

import importlib

import typer

GROUPS = (
    "coalmine.cli.demo_cmd",
    "coalmine.cli.rollout_cmds",
    "coalmine.cli.receipts_cmds",
    "coalmine.cli.spec_cmds",
    "coalmine.cli.router_cmds",
    "coalmine.cli.analyze_cmds",
    "coalmine.cli.probes_cmds",
    "coalmine.cli.slo_cmds",
    "coalmine.cli.slo_webhook_cmd",
)


def register(app: typer.Typer) -> None:
    for module in GROUPS:
        importlib.import_module(module).register(app)

    @app.command()
    def version() -> None:
        """Print coalmine's version."""
        from coalmine import __version__

        print(__version__)
