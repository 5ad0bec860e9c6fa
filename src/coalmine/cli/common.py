"""What several commands share: finding coalmine.yaml, opening the store, printing JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from coalmine.errors import CoalmineError
from coalmine.spec.model import Config, Environment

CONFIG_OPTION = typer.Option(
    None, "--config", "-c", help="coalmine.yaml (default: $COALMINE_CONFIG or ./coalmine.yaml)"
)
ENV_OPTION = typer.Option(None, "--env", "-e", help="environment in coalmine.yaml")
JSON_OPTION = typer.Option(False, "--json", help="machine-readable output")


def refuse_unusable_output(path: Path, field: str) -> None:
    """Fail now, before any work, when a file could not be put at ``path`` at the end: it is
    a directory or a device, its directory does not exist, or nothing can be written there."""
    import tempfile

    if path.is_dir():
        raise CoalmineError(f"{path} is a directory", field=field, hint="give a file name")
    if path.exists() and not path.is_file():
        raise CoalmineError(f"{path} is not a regular file", field=field, hint="give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise CoalmineError(
            f"cannot write {path}: the directory {folder} does not exist",
            field=field,
            hint=f"create it first: mkdir -p {folder}",
        )
    try:  # the truest test: root passes os.access checks on a read-only file system
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as err:
        raise CoalmineError(
            f"cannot write in {folder} ({err.strerror or err})",
            field=field,
            hint="choose a writable directory",
        ) from None


def config_path(given: Path | None) -> Path:
    path = given or Path(os.environ.get("COALMINE_CONFIG", "coalmine.yaml"))
    if not path.exists():
        raise CoalmineError(
            f"configuration file {path} not found",
            hint="pass --config FILE, set COALMINE_CONFIG, or start from examples/coalmine.yaml",
        )
    return path


def load_environment(given: Path | None, env: str | None) -> tuple[Config, Environment]:
    from coalmine.spec.config import load_config

    path = config_path(given)
    config = load_config(path)
    name = env or config.default_environment
    if name not in config.environments:
        raise CoalmineError(
            f"no environment {name!r} in {path}",
            field="--env",
            hint="one of: " + ", ".join(sorted(config.environments)),
        )
    return config, config.environments[name]


def open_environment_store(environment: Environment) -> Any:
    from coalmine.store.open import open_store

    return open_store(os.environ.get("COALMINE_DATABASE_URL") or environment.database_url)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
