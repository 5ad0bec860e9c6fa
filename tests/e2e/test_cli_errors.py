"""Bad input through the real command: one line naming file, line and field, exit code 2,
no traceback, nothing stored and the router's traffic untouched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml

from coalmine.store.open import open_store

from .conftest import COALMINE, World

GOOD = Path(__file__).resolve().parents[2] / "examples" / "rollouts.yaml"


def coalmine(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COALMINE_CONFIG": str(world.config)}
    return subprocess.run([*COALMINE, *args], env=env, capture_output=True, text=True, timeout=60)


def routing(world: World) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"http://{world.service.router.admin}/admin/routing").json()


def set_weight(world: World, weight: int) -> None:
    current = routing(world)
    body = {"canary_weight": weight, "header_routes": [], "generation": current["generation"] + 1}
    httpx.put(f"http://{world.service.router.admin}/admin/routing", json=body).raise_for_status()


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = GOOD.read_text()
    assert old in text, old
    path = tmp_path / "rollouts.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


CASES = {
    "malformed yaml": ("      steps:\n", "      steps:\n   - : [\n", "- : ["),
    "unknown kind": (
        "kind: AnalysisTemplate\nmetadata:\n  name: canary-health",
        "kind: AnalysisTemplat\nmetadata:\n  name: canary-health",
        "AnalysisTemplat",
    ),
    "weight above 100": ("- setWeight: 20", "- setWeight: 120", "setWeight: 120"),
    "unknown field": ("startingStep: 2", "startingStepp: 2", "startingStepp"),
    "invalid condition": (
        "successCondition: result.canary <= 0.01",
        "successCondition: result.canary <= (0.01",
        "result.canary <= (0.01",
    ),
    "missing template": (
        "- templateName: canary-step-check",
        "- templateName: canary-step-chek",
        None,
    ),
    "not supported yet": ("- setWeight: 50", "- setCanaryScale: {weight: 50}", "setCanaryScale"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_rollout_files_change_nothing(world: World, tmp_path: Path, case: str) -> None:
    old, new, needle = CASES[case]
    path = broken(tmp_path, old, new)
    set_weight(world, 7)
    before = routing(world)
    done = coalmine(world, "rollout", "start", str(path))
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(path) in lines[0]
    if needle is not None:
        assert f":{line_of(path, needle)}:" in lines[0], lines[0]
    assert routing(world) == before, "the router's traffic must not change"
    db = world.workdir / "state.db"
    if db.exists():
        assert open_store(f"sqlite:///{db}").list_rollouts() == []


def test_unreachable_upstream_is_refused_before_anything_is_stored(world: World) -> None:
    config = yaml.safe_load(world.config.read_text())
    config["environments"]["demo"]["services"]["shop"]["canary"]["url"] = "http://127.0.0.1:9"
    world.config.write_text(yaml.safe_dump(config))
    done = coalmine(world, "rollout", "start", str(GOOD))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "canary upstream http://127.0.0.1:9" in done.stderr and "unreachable" in done.stderr
    assert (
        not (world.workdir / "state.db").exists()
        or not open_store(f"sqlite:///{world.workdir / 'state.db'}").list_rollouts()
    )


def test_unreachable_router_is_one_line(world: World) -> None:
    world.group.children[-1].terminate()  # the router
    done = coalmine(world, "rollout", "start", str(GOOD))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "router admin" in done.stderr and "unreachable" in done.stderr


def test_database_from_a_newer_coalmine(world: World) -> None:
    db = world.workdir / "state.db"
    open_store(f"sqlite:///{db}").close()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    done = coalmine(world, "rollout", "list")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "newer coalmine" in done.stderr


def test_commands_on_unknown_or_finished_rollouts(world: World) -> None:
    done = coalmine(world, "rollout", "promote", "nope")
    assert done.returncode == 2 and "no rollout named 'nope'" in done.stderr
    bad_flag = coalmine(world, "rollout", "start", str(GOOD), "--time-scale", "0")
    assert bad_flag.returncode == 2 and "--time-scale" in bad_flag.stderr
    not_a_number = coalmine(world, "rollout", "start", str(GOOD), "--time-scale", "fast")
    assert not_a_number.returncode == 2 and "Traceback" not in not_a_number.stderr


def test_demo_rejects_a_bad_fault(tmp_path: Path) -> None:
    done = subprocess.run(
        [*COALMINE, "demo", "--fault", "latency=slow"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "--fault" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / ".coalmine").exists(), "nothing started, nothing written"
