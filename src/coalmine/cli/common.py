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
