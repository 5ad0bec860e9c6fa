"""`coalmine demo`, as a user runs it: promotion on a healthy canary, automatic rollback on
each kind of fault, and Ctrl-C leaving no process behind."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import COALMINE

FAST = ["--time-scale", "20", "--mode", "plain", "--json"]


def run_demo(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [*COALMINE, "demo", *FAST, "--workdir", str(tmp_path / "demo"), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert "Traceback" not in done.stderr, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])
    summary["returncode"] = done.returncode
    return summary


@pytest.mark.slow
def test_healthy_canary_is_promoted_with_receipts(tmp_path: Path) -> None:
    summary = run_demo(tmp_path)
    assert summary["returncode"] == 0, summary
    assert summary["phase"] == "Healthy"
    ops = [Path(p).name.split("-", 1)[1].rsplit("-", 1)[0] for p in summary["receipts"]]
    assert ops[-1] == "deployment_complete"
    assert "canary_phase_complete" in ops and "traffic_promoted" in ops
    for path in summary["receipts"]:
        assert json.loads(Path(path).read_text())["receipt_id"]
    assert summary["duration_s"] < 120


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["error-rate=0.05", "latency=+150ms", "crash"])
def test_faulty_canary_is_rolled_back_by_itself(tmp_path: Path, fault: str) -> None:
    summary = run_demo(tmp_path, "--fault", fault, "--fault-after", "4s")
    assert summary["returncode"] == 0, summary
    assert summary["phase"] == "RolledBack"
    assert 0 < summary["onset_to_verdict_s"] < 20
    assert summary["onset_to_last_canary_request_s"] < summary["onset_to_verdict_s"] + 2
    assert summary["rollback_duration_ms"] is not None
    rollback = [p for p in summary["receipts"] if "rollback_executed" in p]
    assert len(rollback) == 1
    body = json.loads(Path(rollback[0]).read_text())
    assert body["version_rolled_back"] == "v1.2.3" and body["version_restored"] == "v1.2.2"
    assert body["failed_metric"]["name"]


@pytest.mark.slow
def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [*COALMINE, "demo", "--mode", "plain", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    for line in proc.stdout:
        if "step=" in line or time.monotonic() > deadline:
            break
    children = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert len(children.stdout.split()) >= 3, "stable, canary and router should be running"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert left.stdout.split() == [], f"orphans: {left.stdout}"
