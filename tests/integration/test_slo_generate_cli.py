"""``coalmine slo rules`` and ``coalmine slo alertmanager`` produce files the real tools accept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COALMINE = Path(sys.executable).parent / "coalmine"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (scripts/setup.sh test installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


def coalmine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COALMINE), *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_rules_of_the_example_pass_promtool(tmp_path: Path) -> None:
    promtool = need("promtool")
    done = coalmine(
        "slo", "rules", "--slos", str(ROOT / "examples/slos.yaml"), "-o", "r.yaml", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    # The probe SLO uses time slices, which PromQL cannot count: skipped, and said so.
    assert "skipped maestro-api-probes" in done.stderr
    check = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "r.yaml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    groups = yaml.safe_load((tmp_path / "r.yaml").read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    slos = {a["labels"]["slo"] for a in alerts if "slo" in a["labels"]}
    assert slos == {"shop-availability", "shop-latency", "maestro-api-availability"}
    factors = {
        a["labels"]["burn_rate_factor"]
        for a in alerts
        if a["labels"].get("slo") == "maestro-api-availability"
        and "burn_rate_factor" in a["labels"]
    }
    assert "13.44" in factors  # the 28-day table


def test_rules_for_an_unknown_service_is_a_one_line_error(tmp_path: Path) -> None:
    done = coalmine(
        "slo",
        "rules",
        "--slos",
        str(ROOT / "examples/slos.yaml"),
        "--service",
        "nope",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no SLO to write rules for" in done.stderr


def test_alertmanager_routes_pass_amtool(tmp_path: Path) -> None:
    amtool = need("amtool")
    done = coalmine(
        "slo", "alertmanager", "--page-webhook", "http://127.0.0.1:9/page", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    routes = tmp_path / "alertmanager" / "canary-routes.yaml"
    check = subprocess.run([amtool, "check-config", str(routes)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(routes.read_text())
    assert config["inhibit_rules"], "a page must inhibit the ticket of the same SLO"
