"""Steering a running rollout from another terminal, and reading it back: promote, abort,
retry, promote --full, undo; status, list, history and receipts, as JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.rollouts import shop_rollout

from .conftest import COALMINE, World

ROLLOUT = shop_rollout(
    """\
- setWeight: 10
- pause: {}
- setWeight: 40
- pause: {}
- setWeight: 80
"""
)


def cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COALMINE_CONFIG": str(world.config)}
    return subprocess.run([*COALMINE, *args], env=env, capture_output=True, text=True, timeout=60)


def status(world: World) -> dict[str, Any]:
    done = cli(world, "rollout", "status", "shop", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_until(world: World, what: str, check: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = status(world)
        if check(doc):
            return doc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {doc}")


def weight(world: World) -> int:
    return int(
        httpx.get(f"http://{world.service.router.admin}/admin/routing").json()["canary_weight"]
    )


def test_steering_and_reading_a_rollout(world: World, tmp_path: Path) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text(ROLLOUT)
    assert cli(world, "rollout", "start", str(spec), "--detach").returncode == 0
    env = {**os.environ, "COALMINE_CONFIG": str(world.config)}
    controller = subprocess.Popen(
        [*COALMINE, "controller", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        doc = wait_until(world, "the first pause", lambda d: d["phase"] == "Paused")
        assert doc["pause_reason"] == "CanaryPauseStep" and weight(world) == 10

        assert cli(world, "rollout", "promote", "shop").returncode == 0
        wait_until(
            world, "the second pause", lambda d: d["phase"] == "Paused" and d["canary_weight"] == 40
        )
        assert weight(world) == 40

        refused = cli(world, "rollout", "undo", "shop")
        assert refused.returncode == 2 and "only a Healthy" in refused.stderr

        assert cli(world, "rollout", "abort", "shop", "--reason", "bad build").returncode == 0
        doc = wait_until(world, "the abort", lambda d: d["phase"] == "Aborted")
        assert weight(world) == 0 and doc["message"] == "bad build"

        assert cli(world, "rollout", "retry", "shop").returncode == 0
        wait_until(
            world, "the retry", lambda d: d["phase"] == "Paused" and d["canary_weight"] == 10
        )

        assert cli(world, "rollout", "promote", "shop", "--full").returncode == 0
        wait_until(world, "full promotion", lambda d: d["phase"] == "Healthy")
        assert weight(world) == 100

        assert cli(world, "rollout", "undo", "shop").returncode == 0
        wait_until(world, "the undo", lambda d: d["phase"] == "RolledBack")
        assert weight(world) == 0
    finally:
        controller.send_signal(signal.SIGTERM)
        assert controller.wait(timeout=10) == 0

    listed = json.loads(cli(world, "rollout", "list", "--json").stdout)
    assert [(r["name"], r["phase"]) for r in listed] == [("shop", "RolledBack")]

    history = json.loads(cli(world, "rollout", "history", "shop", "--json").stdout)
    kinds = [d["kind"] for d in history]
    for kind in (
        "started",
        "promoted",
        "aborted",
        "retried",
        "promoted-full",
        "healthy",
        "rolled-back",
    ):
        assert kind in kinds, kind
    assert "command-rejected" not in kinds, "a refused command is never queued"

    receipts = json.loads(cli(world, "receipts", "list", "--json").stdout)
    ops = [r["operation"] for r in receipts]
    assert ops.count("rollback_executed") == 2  # the abort and the undo
    assert "deployment_complete" in ops
    first = receipts[0]["receipt_id"]
    shown = cli(world, "receipts", "show", first[:8])
    assert shown.returncode == 0 and json.loads(shown.stdout)["receipt_id"] == first
    missing = cli(world, "receipts", "show", "00000000")
    assert missing.returncode == 2 and "no receipt" in missing.stderr
