"""Run CLI commands in a folder of their own, with nothing from the caller's environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer


def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Work in ``tmp_path`` with a state database there and no coalmine.yaml or slos.yaml from
    the environment; returns the database URL."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COALMINE_DATABASE_URL", url)
    monkeypatch.delenv("COALMINE_CONFIG", raising=False)
    monkeypatch.delenv("COALMINE_SLOS", raising=False)
    return url


def command_app(register: Callable[[typer.Typer], None]) -> typer.Typer:
    """A Typer app with a root callback (so subcommands keep their names) and the commands
    one ``cli`` module's ``register`` adds, for driving with ``CliRunner``."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """coalmine (test)."""

    register(app)
    return app
