"""``coalmine slo webhook``: receive Alertmanager's webhook; a firing page (fast-burn) alert
aborts every active rollout of its service, through a durable ``abort`` command that the
controller applies at its next tick. See docs/controller.md, "Release policy and rollback on
burn".
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import typer
from aiohttp import web

from coalmine.cli.common import CONFIG_OPTION, ENV_OPTION
from coalmine.errors import CoalmineError
from coalmine.slo.webhook import WEBHOOK_PATH, BurnAlert, add_webhook_route
from coalmine.store.base import Store

_LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")


def register(app: typer.Typer) -> None:
    """Attach ``webhook`` to the ``slo`` group (created by ``coalmine.cli.slo_cmds``)."""
    from coalmine.cli.slo_cmds import slo_app

    slo_app.command("webhook")(webhook_cmd)


def parse_listen(text: str) -> tuple[str, int]:
    match = _LISTEN.fullmatch(text.strip())
    if match is None or int(match.group(2)) > 65535:
        raise CoalmineError(
            f"invalid address {text!r}",
            field="--listen",
            hint="write host:port, e.g. 127.0.0.1:8787",
        )
    return match.group(1).strip("[]"), int(match.group(2))


def make_app(
    store: Store,
    clock: Callable[[], float] = time.time,
    echo: Callable[[str], None] = print,
    path: str = WEBHOOK_PATH,
) -> web.Application:
    """The receiver: ``POST path`` (Alertmanager webhook v4) and ``GET /-/ready``."""
    from coalmine.rollout.burn import enqueue_burn_aborts

    async def on_alerts(alerts: list[BurnAlert]) -> None:
        queued = await asyncio.to_thread(enqueue_burn_aborts, store, alerts, clock())
        for q in queued:
            echo(f"abort queued for {q.rollout} (command {q.command_id}): {q.burn.describe()}")
        for alert in alerts:
            if not queued and alert.firing and alert.severity == "page":
                echo(f"no active rollout of {alert.service}: {alert.describe()}")

    async def ready(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    add_webhook_route(app, on_alerts, path)
    app.router.add_get("/-/ready", ready)
    return app


async def serve(
    store: Store, host: str, port: int, stop: asyncio.Event, echo: Callable[[str], None] = print
) -> None:
    runner = web.AppRunner(make_app(store, echo=echo), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as err:
            raise CoalmineError(
                f"cannot listen on {host}:{port}: {err.strerror}",
                field="--listen",
                hint="pick a free port",
            ) from None
        echo(f"receiving Alertmanager webhooks on http://{host}:{port}{WEBHOOK_PATH}")
        await stop.wait()
    finally:
        await runner.cleanup()


def webhook_cmd(
    listen: str = typer.Option("127.0.0.1:8787", "--listen", help="host:port to listen on"),
    config: Path | None = CONFIG_OPTION,
    env: str | None = ENV_OPTION,
) -> None:
    """Receive Alertmanager's webhook: a firing page burn alert rolls back its service's active
    rollouts (an abort command each). Tickets and resolved alerts change nothing."""
    import signal

    from coalmine.cli.common import load_environment, open_environment_store

    host, port = parse_listen(listen)
    _, environment = load_environment(config, env)
    store = open_environment_store(environment)

    def echo(line: str) -> None:
        print(line, flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(store, host, port, stop, echo)

    try:
        asyncio.run(main())
    finally:
        store.close()


if __name__ == "__main__":  # `python -m coalmine.cli.slo_webhook_cmd --listen ...`
    import sys

    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command()(webhook_cmd)
    try:
        standalone()
    except CoalmineError as err:
        print(f"coalmine: error: {err.one_line()}", file=sys.stderr)
        sys.exit(2)
