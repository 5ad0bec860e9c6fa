"""kill -9 the controller in the middle of a rollout, start it again: the rollout continues
from the persisted step with the same weight; nothing is lost and no step runs twice."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from coalmine.rollout.state import RolloutState
from coalmine.store.open import open_store
from tests.support.rollouts import shop_rollout

from .conftest import COALMINE, BackgroundLoad, World

STEPS = """\
- setWeight: 10
- pause: {duration: 1s}
- setWeight: 30
- analysis:
    templates:
      - templateName: slow-check
- setWeight: 60
- pause: {duration: 1s}
- setWeight: 100
"""
SLOW_CHECK = """\
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: slow-check
spec:
  metrics:
    - name: availability
      interval: 1500ms
      count: 4
      successCondition: result >= 0.9
      provider:
        plugin:
          coalmine/router:
            query: availability
            version: canary
            window: 5s
            minRequests: 5
"""
ROLLOUT = shop_rollout(STEPS) + SLOW_CHECK


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_rollout_and_restart(world: World, tmp_path: Path) -> None:
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(ROLLOUT)
    env = {**os.environ, "COALMINE_CONFIG": str(world.config)}
    started = subprocess.run(
        [*COALMINE, "rollout", "start", str(rollout), "--detach"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    store = open_store(f"sqlite:///{world.workdir / 'state.db'}")
    admin = f"http://{world.service.router.admin}/admin/routing"
    log = open(tmp_path / "controller.log", "w")  # noqa: SIM115

    def controller() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*COALMINE, "controller", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    with BackgroundLoad(f"http://{world.service.router.listen}/", rate=150):
        first = controller()

        def mid_analysis() -> RolloutState | None:
            record = store.get_rollout("shop")
            assert record is not None
            state = RolloutState.from_dict(record.state)
            run = state.step_run
            if state.step_index == 3 and run is not None and run.metrics[0].count >= 2:
                return state
            return None

        wait_for(mid_analysis, 60, "the analysis step to have two measurements")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        record = store.get_rollout("shop")
        assert record is not None
        before = RolloutState.from_dict(record.state)
        assert before.canary_weight == 30 and before.step_index == 3

        # The data plane keeps serving the last weight while the controller is down.
        time.sleep(1.0)
        assert httpx.get(admin).json()["canary_weight"] == 30

        second = controller()
        try:
            final = wait_for(
                lambda: (r := store.get_rollout("shop")) and r.phase == "Healthy" and r,
                90,
                "the rollout to finish after the restart",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=10) == 0
    log.close()

    decisions = store.decisions("shop", final.revision)
    started_steps = collections.Counter(d.step for d in decisions if d.kind == "step-started")
    assert all(n == 1 for n in started_steps.values()), f"a step ran twice: {started_steps}"
    assert sorted(started_steps) == list(range(7))
    weights = [d.data["canary_weight"] for d in decisions if d.kind == "routing-set"]
    assert weights == [0, 10, 30, 60, 100], weights
    runs = [d.data["run"] for d in decisions if d.kind == "analysis-started"]
    assert runs == ["step-3"], "the analysis run continued instead of starting again"
    receipts = [r for r in store.receipts("shop") if r.revision == final.revision]
    ops = [r.operation for r in receipts]
    assert ops.count("traffic_promoted") == 4 and ops.count("deployment_complete") == 1
    phase_30 = next(
        r
        for r in receipts
        if r.operation == "canary_phase_complete" and r.body["phase"] == "30_percent"
    )
    check = phase_30.body["sli_checks"]["step-3/availability"]
    assert check["measurements"] == 4, "measurements before the kill were kept, none repeated"
    files = sorted((world.workdir / "receipts" / "shop").rglob("*.json"))
    assert len(files) == len(receipts)
