"""A real little world for end-to-end tests: two sample-service processes, the router process
and a coalmine.yaml pointing at them."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coalmine.demo.loadgen import LoadGenerator
from coalmine.demo.processes import ProcessGroup, wait_http_ok
from coalmine.demo.run import TEST_TENANT, write_config
from coalmine.spec.config import load_config
from coalmine.spec.model import ServiceConfig

COALMINE = [sys.executable, "-m", "coalmine.cli.main"]


@dataclass
class World:
    workdir: Path
    config: Path
    service: ServiceConfig
    group: ProcessGroup
    canary_url: str


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "logs").mkdir()
    with ProcessGroup(tmp_path / "logs") as group:
        ports = {}
        for version, name in (("v1", "stable"), ("v2", "canary")):
            port_file = tmp_path / f"{name}.port"
            child = group.start(
                name,
                [
                    sys.executable,
                    "-m",
                    "coalmine.demo.service",
                    "--version",
                    version,
                    "--port",
                    "0",
                    "--port-file",
                    str(port_file),
                ],
            )
            ports[name] = child.wait_port_file(port_file, timeout=15)
        config = write_config(tmp_path, ports["stable"], ports["canary"])
        service = load_config(config).environment("demo").services["shop"]
        router = group.start(
            "router", [*COALMINE, "router", "serve", "--config", str(config), "--service", "shop"]
        )
        wait_http_ok(f"http://{service.router.admin}/healthz", timeout=15, child=router)
        yield World(tmp_path, config, service, group, f"http://127.0.0.1:{ports['canary']}")


class BackgroundLoad:
    """The load generator on its own thread and event loop, for synchronous tests."""

    def __init__(self, url: str, rate: float) -> None:
        self.load = LoadGenerator(url, rate, tenants=500, test_tenants=[TEST_TENANT])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self.load.run())

    def __enter__(self) -> LoadGenerator:
        self.thread.start()
        return self.load

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.load.stop)
        self.thread.join(timeout=10)
