"""Synthetic probes: sustained scheduling load, and timing accuracy against blackbox_exporter.

``.venv/bin/python -m bench.probes_bench [--load-seconds 120]`` (``make bench`` runs it). Needs
``prometheus-blackbox-exporter`` (Debian package, installed by ``scripts/setup.sh bench``).
Writes ``bench/results/probes.json``.

1. **Sustained load.** 50 three-step flows (list, read one back, post JSON) each every 3 s with
   1 s of jitter: 1,000 flow runs a minute against ``bench.probe_target`` in its own process.
   Reported: runs completed per minute, scheduling lag (start minus due time) p50/p99, the
   scheduler's on-time ratio, the CPU the probe process used.
2. **Timing accuracy.** The target's ``/slow?ms=D`` endpoint waits D ms and remembers how long
   it really waited. coalmine (a one-step flow) and blackbox_exporter (module ``http_2xx``)
   probe it in turns, 25 times per delay. Per tool: the error of the measured ``processing``
   phase and of the whole probe duration against the server's real wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.common import RESULTS, free_port, wait_for_port
from coalmine.probes.loader import load_flows
from coalmine.probes.model import Flow, FlowResult
from coalmine.probes.runner import ProbeRunner
from coalmine.probes.scheduler import Scheduler, as_run_flow, targets_for

DELAYS_MS = (0, 10, 50, 100, 250, 500)
REPEATS = 25
FLOWS = 50
INTERVAL = "3s"
JITTER = "1s"

FLOW_YAML = """
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {{name: load-{n}, service: bench}}
slo: bench-availability
schedule: {{interval: {interval}, jitter: {jitter}, timeout: 2s}}
environments:
  local: {{base_url: "http://127.0.0.1:{port}"}}
steps:
  - name: list
    request: {{method: GET, url: /api/items, timeout: 2s}}
    extract:
      item_id: {{jsonpath: "$.items[0].id"}}
    assert: ["status == 200", 'jsonpath "$.items" not isEmpty']
  - name: read
    request: {{method: GET, url: "/api/items/{{{{ item_id }}}}", timeout: 2s}}
    assert: ["status == 200", 'jsonpath "$.name" == "widget"']
  - name: post
    request:
      method: POST
      url: /api/echo
      json: {{flow: "load-{n}", at: "{{{{ timestamp_ms }}}}"}}
      timeout: 2s
    assert: ["status == 201", 'jsonpath "$.id" exists']
"""

ACCURACY_YAML = """
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {{name: accuracy, service: bench}}
slo: bench-availability
schedule: {{interval: 1m, timeout: 5s}}
variables: {{ms: "0", id: "x"}}
environments:
  local: {{base_url: "http://127.0.0.1:{port}"}}
steps:
  - name: slow
    request: {{method: GET, url: "/slow?ms={{{{ ms }}}}&id={{{{ id }}}}", timeout: 5s}}
    assert: ["status == 200"]
"""

BLACKBOX_CONFIG = """
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
    except RuntimeError:
        proc.kill()
        raise
    return proc


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def write_flows(folder: Path, port: int) -> list[Flow]:
    for n in range(FLOWS):
        text = FLOW_YAML.format(n=n, port=port, interval=INTERVAL, jitter=JITTER)
        (folder / f"load-{n}.yaml").write_text(text)
    return load_flows([folder])


# --------------------------------------------------------------------------- sustained load


class Collect:
    """A result sink that keeps every result."""

    name = "bench"

    def __init__(self) -> None:
        self.results: list[FlowResult] = []

    async def emit(self, result: FlowResult) -> None:
        self.results.append(result)

    async def close(self) -> None:
        return None


async def sustained_load(port: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        flows = write_flows(Path(tmp), port)
    memory = Collect()
    runner = ProbeRunner()
    scheduler = Scheduler(
        targets_for(flows, "local"),
        as_run_flow(runner),
        [memory],
        rng=random.Random(7),
        max_concurrency=64,
    )
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    await scheduler.start()
    warmup = 6.0  # every target has started once (first slots are spread over one interval)
    await asyncio.sleep(warmup)
    measured_from = time.time()
    await asyncio.sleep(seconds)
    measured_until = time.time()
    await scheduler.stop(drain_s=5.0)
    wall = time.monotonic() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    results: list[FlowResult] = [
        r for r in memory.results if measured_from <= (r.scheduled_at or 0) < measured_until
    ]
    lags = [r.started_at - r.scheduled_at for r in results if r.scheduled_at is not None]
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    window_min = (measured_until - measured_from) / 60.0
    stats = scheduler.stats
    return {
        "flows": FLOWS,
        "steps_per_flow": 3,
        "interval": INTERVAL,
        "jitter": JITTER,
        "target_runs_per_minute": FLOWS * 60 / 3,
        "measured_seconds": round(measured_until - measured_from, 1),
        "runs": len(results),
        "runs_per_minute": round(len(results) / window_min, 1),
        "success_ratio": round(sum(r.success for r in results) / max(1, len(results)), 5),
        "lag_ms": {
            "p50": round(percentile(lags, 0.5) * 1000, 2),
            "p99": round(percentile(lags, 0.99) * 1000, 2),
            "max": round(max(lags, default=float("nan")) * 1000, 2),
        },
        "scheduler_on_time_ratio": stats.on_time / stats.scheduled if stats.scheduled else None,
        "scheduler_missed": dict(stats.missed),
        "cpu_cores_used": round(cpu_s / wall, 3),
        "cpu_ms_per_run": round(cpu_s * 1000 / max(1, len(memory.results)), 3),
    }


# --------------------------------------------------------------------------- accuracy


async def blackbox_probe(
    client: httpx.AsyncClient, bb_port: int, target: str
) -> tuple[float, float, bool]:
    """(probe_duration_seconds, processing phase seconds, success) of one blackbox probe."""
    answer = await client.get(
        f"http://127.0.0.1:{bb_port}/probe", params={"module": "http_2xx", "target": target}
    )
    answer.raise_for_status()
    duration = processing = success = float("nan")
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "probe_duration_seconds":
                duration = sample.value
            elif sample.name == "probe_success":
                success = sample.value
            elif (
                sample.name == "probe_http_duration_seconds"
                and sample.labels.get("phase") == "processing"
            ):
                processing = sample.value
    return duration, processing, success == 1.0


async def accuracy(port: int, bb_port: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "accuracy.yaml"
        path.write_text(ACCURACY_YAML.format(port=port))
        flow = load_flows([path])[0]
    runner = ProbeRunner()
    base = f"http://127.0.0.1:{port}"
    errors: dict[str, dict[str, list[float]]] = {
        tool: {"processing": [], "duration": []} for tool in ("coalmine", "blackbox_exporter")
    }
    per_delay: dict[str, dict[str, Any]] = {}
    failures = {"coalmine": 0, "blackbox_exporter": 0}
    async with httpx.AsyncClient(timeout=10) as client:
        for delay in DELAYS_MS:
            rows: dict[str, dict[str, list[float]]] = {
                tool: {"processing": [], "duration": []} for tool in errors
            }
            for i in range(REPEATS):
                order = ("coalmine", "blackbox_exporter")
                for tool in order if i % 2 == 0 else tuple(reversed(order)):
                    key = f"{tool}-{delay}-{i}"
                    if tool == "coalmine":
                        variables = {**flow.variables, "ms": str(delay), "id": key}
                        result = await runner.run(
                            _with_variables(flow, variables), "local", location="bench"
                        )
                        final = result.steps[0].final
                        ok = result.success and final is not None
                        processing = final.timing.processing if final else float("nan")
                        duration = result.duration_s
                    else:
                        duration, processing, ok = await blackbox_probe(
                            client, bb_port, f"{base}/slow?ms={delay}&id={key}"
                        )
                    truth = (await client.get(f"{base}/waited", params={"id": key})).json()
                    if not ok or "waited_s" not in truth:
                        failures[tool] += 1
                        continue
                    for phase, value in (("processing", processing), ("duration", duration)):
                        rows[tool][phase].append((value - truth["waited_s"]) * 1000)
            per_delay[str(delay)] = {
                tool: {phase: _summary(values) for phase, values in rows[tool].items() if values}
                for tool in rows
            }
            for tool in rows:
                for phase in rows[tool]:
                    errors[tool][phase].extend(rows[tool][phase])
    overall = {
        tool: {phase: _summary(values) for phase, values in errors[tool].items()} for tool in errors
    }
    ratio = (
        overall["coalmine"]["processing"]["median_abs_ms"]
        / overall["blackbox_exporter"]["processing"]["median_abs_ms"]
    )
    return {
        "delays_ms": list(DELAYS_MS),
        "repeats": REPEATS,
        "failures": failures,
        "error_ms": overall,
        "per_delay_ms": per_delay,
        "processing_median_abs_error_ratio_coalmine_vs_blackbox": round(ratio, 3),
    }


def _with_variables(flow: Flow, variables: dict[str, Any]) -> Flow:
    import dataclasses

    return dataclasses.replace(flow, variables=variables)


def _summary(values: list[float]) -> dict[str, float]:
    absolute = [abs(v) for v in values]
    return {
        "n": len(values),
        "mean_ms": round(statistics.fmean(values), 3),
        "median_abs_ms": round(statistics.median(absolute), 3),
        "p90_abs_ms": round(percentile(absolute, 0.9), 3),
        "max_abs_ms": round(max(absolute), 3),
    }


# --------------------------------------------------------------------------- main


def blackbox_binary() -> str:
    for name in ("prometheus-blackbox-exporter", "blackbox_exporter"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("bench.probes_bench: blackbox_exporter not found (scripts/setup.sh bench)")


def blackbox_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True)
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-seconds", type=float, default=120.0)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    binary = blackbox_binary()
    port, bb_port = free_port(), free_port()
    target = start([sys.executable, "-m", "bench.probe_target", str(port)], port)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        blackbox = start(
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{bb_port}",
                "--log.level=warn",
            ],
            bb_port,
        )
        try:
            report: dict[str, Any] = {
                "benchmark": "probes",
                "machine": {
                    "cores": len(__import__("os").sched_getaffinity(0)),
                    "python": platform.python_version(),
                    "blackbox_exporter": blackbox_version(binary),
                },
                "accuracy": asyncio.run(accuracy(port, bb_port)),
            }
            if not args.skip_load:
                report["sustained_load"] = asyncio.run(sustained_load(port, args.load_seconds))
        finally:
            blackbox.terminate()
            target.terminate()
            blackbox.wait(10)
            target.wait(10)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "probes.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
