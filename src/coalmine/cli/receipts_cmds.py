"""``coalmine receipts list|show``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from coalmine.cli.common import (
    CONFIG_OPTION,
    ENV_OPTION,
    JSON_OPTION,
    load_environment,
    open_environment_store,
    print_json,
)
from coalmine.errors import CoalmineError
from coalmine.evidence.receipts import receipt_document

receipts_app = typer.Typer(
    help="The evidence of every promotion and rollback.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(receipts_app, name="receipts")


@receipts_app.command("list")
def list_(
    rollout: str | None = typer.Option(None, "--rollout", help="only this rollout"),
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Receipts in time order."""
    _, environment = load_environment(config, env)
    receipts = open_environment_store(environment).receipts(rollout)
    if json_:
        print_json([receipt_document(r) for r in receipts])
        return
    table = Table("receipt", "time", "rollout", "rev", "operation", "status")
    for r in receipts:
        table.add_row(
            r.receipt_id[:8],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.timestamp)),
            r.rollout,
            str(r.revision),
            r.operation,
            str(r.body.get("status", "")),
        )
    Console().print(table)


@receipts_app.command("show")
def show(
    receipt_id: str = typer.Argument(..., help="the id, or its first 8 characters or more"),
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
) -> None:
    """One receipt as JSON."""
    _, environment = load_environment(config, env)
    receipt = open_environment_store(environment).get_receipt(receipt_id)
    if receipt is None:
        raise CoalmineError(f"no receipt {receipt_id!r}", hint="`coalmine receipts list` shows ids")
    print(json.dumps(receipt_document(receipt), indent=2, default=str))
