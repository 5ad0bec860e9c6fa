"""An SLI source that cannot be read: ten days of good buckets are stored, then Prometheus (a
closed port on loopback) is down for a day. Nothing may call that budget healthy: not the
evaluator, not the controller's budget, not `coalmine slo status|explain`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coalmine.cli import slo_cmds
from coalmine.rollout.budget import observe, release_policy
from coalmine.rollout.budget_source import SloBudgetSource
from coalmine.slo.engine import Bucket
from coalmine.slo.evaluate import SloEvaluator
from coalmine.slo.loader import load_slos
from coalmine.slo.policy import Tier, evaluation_tier
from coalmine.slo.spec import Slo
from coalmine.slo.store import SloBucketStore
from coalmine.store.open import open_store
from tests.support.cli_env import command_app, isolated_cli

NOW = 1_717_200_000  # 2024-06-01T00:00:00Z
MINUTE, DAY = 60, 86400
DOWN = "http://probe:s3cret@127.0.0.1:1"  # nothing listens on port 1: connection refused

SLOS = f"""\
slos:
  - name: app-availability
    service: app
    objective: 99
    sli:
      type: availability
      source: prometheus
      address: {DOWN}
      total: app_requests_total
      bad: app_requests_total{{code="500"}}
    window: 30d
    missingData: MISSING
"""


def slos_file(directory: Path, missing: str = "ignore") -> Path:
    path = directory / "slos.yaml"
    path.write_text(SLOS.replace("MISSING", missing), encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """10 days of good buckets up to a day ago, and the collector's cursor there."""
    slos_file(tmp_path)
    url = isolated_cli(tmp_path, monkeypatch)
    store = open_store(url)
    buckets = SloBucketStore(store.engine)
    first = NOW - 11 * DAY
    buckets.put("app-availability", [Bucket(first + i * MINUTE, 50, 50) for i in range(10 * 1440)])
    buckets.set_cursor("app-availability", "prometheus", NOW - DAY - MINUTE, NOW - DAY)
    store.close()
    return tmp_path


def the_slo(workdir: Path) -> Slo:
    return load_slos([workdir / "slos.yaml"]).slos[0]


def refresh(workdir: Path, slo: Slo) -> object:
    store = open_store(f"sqlite:///{workdir / 'state.db'}")
    try:
        return asyncio.run(SloEvaluator(SloBucketStore(store.engine)).refresh(slo, NOW))
    finally:
        store.close()


def test_the_evaluation_says_the_collection_failed_and_the_tier_is_cautious(
    workdir: Path,
) -> None:
    slo = the_slo(workdir)
    result = refresh(workdir, slo)
    assert result.budget.remaining == 1.0  # what the stored buckets say, before the outage
    assert result.stale
    [failure] = result.collection_failures
    assert failure.source == "prometheus"
    assert failure.reason.startswith("Prometheus http://127.0.0.1:1 unreachable (ConnectError)")
    assert "s3cret" not in json.dumps(result.to_dict())
    data = result.to_dict()
    assert data["stale"] is True and data["collection_failures"][0]["source"] == "prometheus"
    assert evaluation_tier(result, slo.release) is Tier.CAUTIOUS


def test_the_controller_budget_is_cautious_and_never_accelerated(workdir: Path) -> None:
    slo = the_slo(workdir)
    store = open_store(f"sqlite:///{workdir / 'state.db'}")
    try:
        source = SloBudgetSource(SloEvaluator(SloBucketStore(store.engine)))
        budget = asyncio.run(source.observe([slo], NOW))
    finally:
        store.close()
    assert budget.worst is Tier.CAUTIOUS
    [seen] = budget.slos
    assert seen.tier is Tier.CAUTIOUS and seen.remaining == 1.0
    verdict = release_policy("feature", budget, thresholds=slo.release, accelerate=True)
    assert verdict.tier is Tier.CAUTIOUS and verdict.allowed
    assert verdict.pause_factor == 2.0  # longer pauses, not the normal tier's x0.5
    assert verdict.reason.startswith(
        "cautious: SLO app-availability could not be collected from prometheus (Prometheus "
        "http://127.0.0.1:1 unreachable (ConnectError)"
    )
    assert "the budget is unknown; feature allowed with pauses x2" in verdict.reason
    assert verdict.to_dict()["data_gap"].startswith("SLO app-availability could not be")


def test_a_known_worse_tier_of_a_stale_slo_stays(workdir: Path) -> None:
    """The stored buckets already say frozen: a failed collection cannot make that better."""
    slo = the_slo(workdir)
    store = open_store(f"sqlite:///{workdir / 'state.db'}")
    SloBucketStore(store.engine).add("app-availability", [Bucket(NOW - 2 * DAY, 0, 100_000)])
    store.close()
    result = refresh(workdir, slo)
    assert result.stale and evaluation_tier(result, slo.release) is Tier.FROZEN
    verdict = release_policy("feature", observe(NOW, [(slo, result)]), thresholds=slo.release)
    assert verdict.tier is Tier.FROZEN and not verdict.allowed
    assert "; also SLO app-availability could not be collected from prometheus" in verdict.reason


def cli() -> typer.Typer:
    return command_app(slo_cmds.register)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli(), ["slo", *args])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_status_shows_what_is_known_marked_stale_and_exits_2(workdir: Path) -> None:
    code, out, err = run("status", "--at", str(NOW))
    assert code == 2
    assert (
        "  stale: collection from prometheus failed: Prometheus http://127.0.0.1:1 unreachable "
        "(ConnectError)" in out
    )
    assert "budget 100.0% left" in out and "-> release tier cautious" in out
    assert "release tier normal" not in out
    assert "alert state: ok as of the stored buckets (stale)" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "coalmine: error: SLO app-availability: collection from prometheus failed: Prometheus "
        "http://127.0.0.1:1 unreachable (ConnectError)"
    )
    assert "(hint: is prometheus reachable?" in lines[0]
    assert "s3cret" not in out + err


def test_status_json_carries_the_flag_and_exits_2(workdir: Path) -> None:
    code, out, err = run("status", "--at", str(NOW), "--json")
    assert code == 2 and err.startswith("coalmine: error: SLO app-availability:")
    [app] = json.loads(out)["slos"]
    assert app["stale"] is True and app["tier"] == "cautious"
    assert app["collection_failures"][0]["source"] == "prometheus"
    assert app["data_gap"].startswith("SLO app-availability could not be collected")


def test_no_collect_is_not_a_failure(workdir: Path) -> None:
    code, out, err = run("status", "--at", str(NOW), "--no-collect")
    assert code == 0 and err == ""
    assert "stale" not in out and "-> release tier normal" in out


def test_explain_exits_2_and_no_release_is_normal(workdir: Path) -> None:
    code, out, err = run("explain", "app-availability", "--at", str(NOW))
    assert code == 2 and "collection from prometheus failed" in err
    assert out.splitlines()[1].startswith("stale: collection from prometheus failed: ")
    assert "release tier cautious:" in out
    assert "  feature: allowed: cautious: SLO app-availability could not be collected" in out
    data = json.loads(run("explain", "app-availability", "--at", str(NOW), "--json")[1])
    assert data["stale"] is True and data["tier"] == "cautious"
    assert data["release"]["feature"]["accelerate"] is False


def test_missing_data_alert_with_the_source_down(workdir: Path) -> None:
    """Every rule is no_data and the source is down: cautious, with both reasons."""
    slos_file(workdir, "alert")
    code, out, _ = run("status", "--at", str(NOW), "--json")
    assert code == 2
    [app] = json.loads(out)["slos"]
    assert app["tier"] == "cautious" and app["state"] == "no_data"
    assert app["no_data_rules"] == ["page-1h", "page-6h", "ticket-1d", "ticket-3d"]
    assert "has no data in windows 5m, 30m, 1h, 2h, 6h" in app["data_gap"]
