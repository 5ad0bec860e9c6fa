"""``coalmine router``: run the embedded router, look at it, move its weight by hand."""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from coalmine.cli.common import CONFIG_OPTION, ENV_OPTION, JSON_OPTION, print_json
from coalmine.errors import CoalmineError
from coalmine.spec.model import ServiceConfig

ADMIN_OPTION = typer.Option(
    "127.0.0.1:8081", "--admin", help="The router's admin address (router.admin in coalmine.yaml)."
)


def _service(config: Path | None, service: str, env: str | None) -> ServiceConfig:
    from coalmine.cli.common import config_path, load_environment

    _, environment = load_environment(config, env or os.environ.get("COALMINE_ENVIRONMENT"))
    if service not in environment.services:
        known = ", ".join(sorted(environment.services)) or "none"
        raise CoalmineError(
            f"no service {service!r} in environment {environment.name!r} of {config_path(config)}",
            field="--service",
            hint=f"services defined there: {known}",
        )
    return environment.services[service]


async def _status(admin: str) -> dict[str, Any]:
    from coalmine.traffic.client import RouterClient

    async with RouterClient(admin) as client:
        info = await client.routing_info()
        stats = await client.stats(60.0, (0.5, 0.99))
    return {"routing": info, "stats": {k: asdict(v) for k, v in stats.versions.items()}}


async def _set_weight(admin: str, weight: int) -> dict[str, Any]:
    from coalmine.traffic.base import Routing
    from coalmine.traffic.client import RouterClient

    async with RouterClient(admin) as client:
        current = await client.get_routing()
        wanted = Routing(
            canary_weight=weight,
            header_routes=current.header_routes,
            generation=current.generation + 1,
        )
        await client.set_routing(wanted)
        return await client.routing_info()


def _describe(info: dict[str, Any]) -> str:
    routes = ", ".join(r["name"] for r in info.get("header_routes", ())) or "none"
    return (
        f"{info['service']}: canary weight {info['canary_weight']}% "
        f"(generation {info['generation']}), header routes: {routes}\n"
        f"  stable {info['stable_url']}\n  canary {info['canary_url']}"
    )


def register(app: typer.Typer) -> None:
    router = typer.Typer(help="The embedded traffic router.", no_args_is_help=True)
    app.add_typer(router, name="router")

    @router.command("serve")
    def serve(
        config: Path | None = CONFIG_OPTION,
        service: str = typer.Option(..., "--service", "-s", help="Which service to route."),
        env: str | None = ENV_OPTION,
    ) -> None:
        """Run the router for one service in the foreground (SIGTERM/Ctrl-C stops it)."""
        from coalmine.traffic.serve import run_router

        run_router(_service(config, service, env))

    @router.command("status")
    def status(
        admin: str = ADMIN_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """What the router serves now, and its traffic over the last minute."""
        result = asyncio.run(_status(admin))
        if as_json:
            print_json(result)
            return
        print(_describe(result["routing"]))
        for version, s in result["stats"].items():
            rate = "-" if s["error_rate"] is None else f"{s['error_rate']:.2%}"
            lat = s["latency_ms"]
            p50 = f"{lat['p50']:.1f}ms" if "p50" in lat else "-"
            p99 = f"{lat['p99']:.1f}ms" if "p99" in lat else "-"
            print(
                f"  {version:6} last 60s: {s['requests']} requests, errors {rate}, "
                f"p50 {p50}, p99 {p99}"
            )

    @router.command("set-weight")
    def set_weight(
        weight: int = typer.Argument(..., min=0, max=100, help="Canary share of tenants, 0..100."),
        admin: str = ADMIN_OPTION,
    ) -> None:
        """Set the canary weight by hand (keeps header routes); prints what is served now."""
        print(_describe(asyncio.run(_set_weight(admin, weight))))
