"""``coalmine demo``: a real canary on this machine.

Two versions of the sample service start on loopback, the router splits live traffic from the
load generator between them, and the controller walks the rollout in ``rollouts.yaml``, judged
on the router's own measurements. With a fault, the canary turns bad some seconds into the
rollout and the controller rolls it back by itself; the summary says how fast.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from coalmine.demo.faults import FaultSet
from coalmine.demo.loadgen import LoadGenerator
from coalmine.demo.processes import ProcessGroup, wait_http_ok
from coalmine.rollout.state import RolloutPhase, RolloutState

SERVICE = "shop"
TEST_TENANT = "test-tenant-abc123"
PACKAGED_ROLLOUT = Path(__file__).with_name("rollouts.yaml")


class DemoInterrupted(Exception):
    """Ctrl-C or SIGTERM during the demo: every process it started is stopped."""


@dataclass(frozen=True)
class DemoOptions:
    rollout_file: Path
    time_scale: float = 10.0
    faults: FaultSet = field(default_factory=FaultSet)
    fault_after: float = 10.0  # seconds of real time after the rollout starts
    rate: float = 200.0
    mode: str = "live"
    workdir: Path | None = None


@dataclass
class DemoResult:
    phase: str
    message: str
    workdir: Path
    started_at: float
    finished_at: float
    receipts: list[Path]
    fault_onset: float | None = None
    verdict_at: float | None = None
    rollback_decided_at: float | None = None
    last_canary_request: float | None = None
    rollback_duration_ms: float | None = None
    traffic: dict[str, Any] = field(default_factory=dict)

    @property
    def expected(self) -> bool:
        healthy = self.phase == str(RolloutPhase.HEALTHY)
        return healthy if self.fault_onset is None else self.phase == str(RolloutPhase.ROLLED_BACK)

    def to_dict(self) -> dict[str, Any]:
        onset = self.fault_onset
        return {
            "phase": self.phase,
            "message": self.message,
            "expected": self.expected,
            "duration_s": round(self.finished_at - self.started_at, 3),
            "workdir": str(self.workdir),
            "receipts": [str(p) for p in self.receipts],
            "fault_onset": onset,
            "onset_to_verdict_s": _delta(onset, self.verdict_at),
            "onset_to_last_canary_request_s": _delta(onset, self.last_canary_request),
            "rollback_duration_ms": self.rollback_duration_ms,
            "traffic": self.traffic,
        }


def _delta(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_rollout_file() -> Path:
    local = Path("examples/rollouts.yaml")
    return local if local.exists() else PACKAGED_ROLLOUT


def write_config(
    workdir: Path,
    stable_port: int,
    canary_port: int,
    versions: tuple[str, str] = ("v1.2.2", "v1.2.3"),
    *,
    baseline_port: int | None = None,
) -> Path:
    """The demo's coalmine.yaml; with ``baseline_port``, the service also has a baseline cohort
    (the stable version, freshly started) on that port."""
    config: dict[str, Any] = {
        "defaultEnvironment": "demo",
        "environments": {
            "demo": {
                "database": f"sqlite:///{workdir / 'state.db'}",
                "receipts": str(workdir / "receipts"),
                "services": {
                    SERVICE: {
                        "stable": {
                            "url": f"http://127.0.0.1:{stable_port}",
                            "version": versions[0],
                        },
                        "canary": {
                            "url": f"http://127.0.0.1:{canary_port}",
                            "version": versions[1],
                        },
                        "tenancy": {"header": "X-Tenant", "testTenants": [TEST_TENANT]},
                        "router": {
                            "listen": f"127.0.0.1:{free_port()}",
                            "admin": f"127.0.0.1:{free_port()}",
                            "stateFile": str(workdir / "router-state.json"),
                        },
                    }
                },
            }
        },
    }
    if baseline_port is not None:
        service = config["environments"]["demo"]["services"][SERVICE]
        service["baseline"] = {"url": f"http://127.0.0.1:{baseline_port}", "version": versions[0]}
    path = workdir / "coalmine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_demo(options: DemoOptions) -> DemoResult:
    workdir = options.workdir or Path(".coalmine/demo") / time.strftime("%Y%m%d-%H%M%S")
    workdir = workdir.resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    with ProcessGroup(workdir / "logs") as group:
        group.install_signal_handlers()
        try:
            return _run(options, workdir, group)
        finally:
            group.restore_signal_handlers()


@dataclass(frozen=True)
class Services:
    config: Path
    environment: Any
    canary_port: int
    baseline_port: int | None = None


def start_services(
    group: ProcessGroup,
    workdir: Path,
    versions: tuple[str, str] = ("v1.2.2", "v1.2.3"),
    *,
    baseline: bool = False,
) -> Services:
    """Start the stable and canary sample services and the router in front of them, and
    write the demo's coalmine.yaml; returns when all of them answer. ``baseline``: also start
    a second copy of the stable version as the router's baseline cohort."""
    from coalmine.spec.config import load_config

    py = sys.executable
    ports = {}
    cohorts = [(versions[0], "stable"), (versions[1], "canary")]
    if baseline:
        cohorts.append((versions[0], "baseline"))
    for version, name in cohorts:
        port_file = workdir / f"{name}.port"
        argv = [
            py,
            "-m",
            "coalmine.demo.service",
            "--version",
            version,
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ]
        ports[name] = group.start(name, argv).wait_port_file(port_file, timeout=15)
    config_path = write_config(
        workdir, ports["stable"], ports["canary"], versions, baseline_port=ports.get("baseline")
    )
    environment = load_config(config_path).environment("demo")
    router_settings = environment.services[SERVICE].router
    router = group.start(
        "router",
        [
            py,
            "-m",
            "coalmine.cli.main",
            "router",
            "serve",
            "--config",
            str(config_path),
            "--service",
            SERVICE,
            "--env",
            "demo",
        ],
    )
    wait_http_ok(f"http://{router_settings.admin}/healthz", timeout=15, child=router)
    wait_http_ok(f"http://{router_settings.listen}/healthz", timeout=15, child=router)
    return Services(config_path, environment, ports["canary"], ports.get("baseline"))


def _run(options: DemoOptions, workdir: Path, group: ProcessGroup) -> DemoResult:
    from coalmine.cli.rollout_cmds import prepare_rollout

    services = start_services(group, workdir)
    record, plan = prepare_rollout(
        [options.rollout_file], services.environment, "demo", None, options.time_scale
    )
    return asyncio.run(
        _drive(options, workdir, services.environment, record, plan, services.canary_port)
    )


async def _drive(
    options: DemoOptions, workdir: Path, environment: Any, record: Any, plan: Any, canary_port: int
) -> DemoResult:
    from coalmine.cli.common import open_environment_store
    from coalmine.cli.rollout_cmds import make_controller, seed_generation
    from coalmine.cli.watch import watch
    from coalmine.traffic.client import RouterClient

    service = environment.services[SERVICE]
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # inside the loop, so nothing swallows them
        loop.add_signal_handler(sig, interrupted.set)
    load = LoadGenerator(
        f"http://{service.router.listen}/api/items/1",
        options.rate,
        tenants=1000,
        test_tenants=[TEST_TENANT],
    )
    load_task = asyncio.create_task(load.run())
    await asyncio.sleep(1.0)  # let the stable version warm up before the rollout begins
    store = open_environment_store(environment)
    record = store.create_rollout(await seed_generation(record, service))
    started = time.time()
    controller = make_controller(store, environment)
    stop = asyncio.Event()
    control = asyncio.create_task(controller.run({record.name}, stop, exit_when_settled=True))
    fault_task = None
    onset: list[float] = []
    if not options.faults.empty:
        fault_task = asyncio.create_task(
            _inject(f"http://127.0.0.1:{canary_port}", options.faults, options.fault_after, onset)
        )
    router = RouterClient(service.router.admin)
    try:
        await watch(
            store,
            record.name,
            router,
            plan,
            lambda: control.done() or interrupted.is_set(),
            options.mode,
        )
        if interrupted.is_set():
            control.cancel()
            raise DemoInterrupted
        await control
        await asyncio.sleep(1.0)  # requests already in flight at the flip drain
        stats = await router.stats(60.0, (0.5, 0.99))
    finally:
        stop.set()
        load.stop()
        if fault_task is not None:
            fault_task.cancel()
        await asyncio.gather(load_task, return_exceptions=True)
        await router.aclose()
    final = store.get_rollout(record.name)
    assert final is not None
    state = RolloutState.from_dict(final.state)
    decisions = store.decisions(final.name, final.revision)
    fault_onset = onset[0] if onset else None
    result = DemoResult(
        phase=str(state.phase),
        message=state.message,
        workdir=workdir,
        started_at=started,
        finished_at=time.time(),
        receipts=list(controller.receipt_paths),
        fault_onset=fault_onset,
        traffic={"load": load.snapshot(600.0)},
    )
    if fault_onset is not None:
        result.verdict_at = next(
            (  # the run verdict that acted, not a dry-run metric's opinion
                d.at
                for d in decisions
                if d.at >= fault_onset and d.kind in ("analysis-failed", "analysis-error")
            ),
            None,
        )
        result.rollback_decided_at = next(
            (d.at for d in decisions if d.kind == "rolled-back"), None
        )
        result.last_canary_request = stats.versions["canary"].last_request_at
    for receipt in store.receipts(final.name):
        if receipt.revision == final.revision and receipt.operation == "rollback_executed":
            result.rollback_duration_ms = receipt.body.get("rollback_duration_ms")
    return result


async def _inject(canary_url: str, faults: FaultSet, after: float, onset: list[float]) -> None:
    await asyncio.sleep(after)
    async with httpx.AsyncClient(timeout=5.0) as client:
        try:
            answer = await client.post(f"{canary_url}/_demo/fault", json=faults.to_json())
            onset.append(float(answer.json().get("onset", time.time())))
        except (httpx.HTTPError, ValueError):
            onset.append(time.time())  # a crash may close the connection first
