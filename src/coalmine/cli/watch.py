"""Following a rollout while it runs: a live panel on a terminal, plain lines elsewhere."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

from rich.console import Console
from rich.live import Live

from coalmine.cli.view import plain_line, render, status_document
from coalmine.errors import CoalmineError
from coalmine.rollout.state import Plan
from coalmine.store.base import Store
from coalmine.traffic.base import Stats, TrafficRouter

TRAFFIC_WINDOW_S = 10.0


async def current_document(
    store: Store, name: str, router: TrafficRouter | None, plan: Plan | None
) -> dict[str, object] | None:
    record = store.get_rollout(name)
    if record is None:
        return None
    stats: Stats | None = None
    if router is not None:
        try:
            stats = await router.stats(TRAFFIC_WINDOW_S, (0.5, 0.99))
        except CoalmineError:
            stats = None
    return status_document(record, store.decisions(name, record.revision), stats, plan)


async def watch(
    store: Store,
    name: str,
    router: TrafficRouter | None,
    plan: Plan | None,
    done: Callable[[], bool],
    mode: str = "live",
    interval: float = 0.5,
) -> None:
    """Show the rollout until ``done()``; mode is live, plain or json (one document per line)."""
    if mode == "live" and not sys.stdout.isatty():
        mode = "plain"
    seen_decisions = 0
    if mode == "live":
        console = Console()
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                doc = await current_document(store, name, router, plan)
                if doc is not None:
                    live.update(render(doc))
                if done():
                    return
                await asyncio.sleep(interval)
    last_plain = 0.0
    while True:
        doc = await current_document(store, name, router, plan)
        if doc is not None:
            if mode == "json":
                print(json.dumps(doc, default=str), flush=True)
            else:
                record = store.get_rollout(name)
                decisions = store.decisions(name, record.revision) if record else []
                for d in decisions[seen_decisions:]:
                    print(f"  decision {d.kind}: {d.reason}", flush=True)
                seen_decisions = len(decisions)
                loop_now = asyncio.get_running_loop().time()
                if loop_now - last_plain >= 2.0:
                    print(plain_line(doc), flush=True)
                    last_plain = loop_now
        if done():
            return
        await asyncio.sleep(interval)
