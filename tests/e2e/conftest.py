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
from coalmine.demo.processes import ProcessGroup
from coalmine.demo.run import SERVICE, TEST_TENANT, start_services
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
        services = start_services(group, tmp_path, versions=("v1", "v2"))
        service = services.environment.services[SERVICE]
        yield World(
            tmp_path, services.config, service, group, f"http://127.0.0.1:{services.canary_port}"
        )


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
