"""Where every command group is attached to the ``coalmine`` command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print coalmine's version."""
        from coalmine import __version__

        print(__version__)
