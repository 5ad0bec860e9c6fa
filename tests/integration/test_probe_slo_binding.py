"""A flow's ``slo:`` decides which SLO its runs count against, end to end: flow files run by
the real runner against the probe test app on loopback, results in a SQLite ProbeStore, SLOs
from a slos.yaml, buckets collected by the SLO evaluator. Only the runs of the SLI's
environment count, and canary-pinned runs do not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from coalmine.probes.loader import load_flows
from coalmine.probes.model import Flow, Version
from coalmine.probes.runner import ProbeRunner
from coalmine.probes.store import ProbeStore
from coalmine.slo.evaluate import SloEvaluator
from coalmine.slo.loader import load_slos
from coalmine.slo.spec import ProbeSource
from coalmine.slo.store import SloBucketStore
from coalmine.store.open import open_store
from coalmine.store.sql import SqlStore
from tests.fixtures.probe_app import API_KEY, ProbeApp

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_717_200_000.0  # a whole minute
RAN_AT = NOW - 90.0

# The canary is broken: /version echoes the pinned version, and the flow refuses "canary".
ORDERS = """\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {name: orders, service: shop, owner: team-shop}
slo: shop-probes
secrets: {api_key: {env: SHOP_API_KEY}}
environments:
  prod: {base_url: "APP"}
  staging: {base_url: "http://127.0.0.1:9"}   # nothing listens: every staging run fails
steps:
  - name: list
    request: {url: /api/orders, headers: {X-API-Key: "{{ secrets.api_key }}"}}
    assert: ["status == 200"]
  - name: version
    request: {url: /version}
    assert: ['body not contains "canary"']
"""
SEARCH = """\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {name: search, service: shop, owner: team-shop}
slo: {name: shop-search, objective: 99}
environments:
  prod: {base_url: "APP"}
steps:
  - name: search
    request: {url: "/fail?status=500"}
    assert: ["status == 200"]
"""
SLOS = """\
slos:
  - name: shop-probes        # bound by the orders flow
    service: shop
    objective: 99
    sli: {type: availability, source: probe, environment: prod}
    window: 7d
  - name: shop-search        # bound by the search flow
    service: shop
    objective: 99
    sli: {type: availability, source: probe, environment: prod}
    window: 7d
  - name: shop-staging       # lists a flow bound elsewhere: flows: keeps working
    service: shop
    objective: 99
    sli: {type: availability, source: probe, environment: staging, flows: [orders]}
    window: 7d
"""


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


def flows(tmp_path: Path, app: ProbeApp) -> dict[str, Flow]:
    for name, text in (("orders", ORDERS), ("search", SEARCH)):
        (tmp_path / f"{name}.yaml").write_text(text.replace("APP", app.url))
    return {f.name: f for f in load_flows([tmp_path / "orders.yaml", tmp_path / "search.yaml"])}


def run_and_store(
    store: ProbeStore, flow: Flow, environment: str, version: Version | None, times: int
) -> list[bool]:
    runner = ProbeRunner(clock=lambda: RAN_AT, environ={"SHOP_API_KEY": API_KEY})

    async def go() -> list[bool]:
        results = [await runner.run(flow, environment, version=version) for _ in range(times)]
        store.record_many(results)
        return [r.success for r in results]

    return asyncio.run(go())


def test_runs_count_against_the_slo_their_flow_binds(
    tmp_path: Path, probe_app: ProbeApp, sql: SqlStore
) -> None:
    store = ProbeStore(sql)
    by_name = flows(tmp_path, probe_app)
    orders, search = by_name["orders"], by_name["search"]
    assert run_and_store(store, orders, "prod", None, 2) == [True, True]
    assert run_and_store(store, orders, "prod", "stable", 2) == [True, True]
    assert run_and_store(store, orders, "prod", "canary", 3) == [False] * 3
    assert run_and_store(store, orders, "staging", None, 2) == [False, False]
    assert run_and_store(store, search, "prod", None, 2) == [False, False]
    assert {r["flow"]: r["slo"] for r in store.recent()} == {
        "orders": "shop-probes",
        "search": "shop-search",
    }

    (tmp_path / "slos.yaml").write_text(SLOS)
    slos = load_slos([tmp_path / "slos.yaml"])
    evaluator = SloEvaluator(SloBucketStore(sql.engine), probe_db=sql.engine)
    periods = {}
    for slo in slos.slos:
        result = asyncio.run(evaluator.refresh(slo, NOW))
        assert not result.stale, result.collection_failures
        periods[slo.name] = (result.period.total, result.period.bad)
    assert periods == {
        # prod runs of orders, unpinned and stable-pinned: not the failing canary or staging
        "shop-probes": (4, 0),
        # the failing search runs burn shop-search's budget only
        "shop-search": (2, 2),
        # listed by flows: (its runs are bound to shop-probes), staging runs only
        "shop-staging": (2, 2),
    }


def test_an_slo_nothing_binds_or_lists_sees_no_runs_and_says_so(
    tmp_path: Path, probe_app: ProbeApp, sql: SqlStore
) -> None:
    store = ProbeStore(sql)
    run_and_store(store, flows(tmp_path, probe_app)["search"], "prod", None, 2)
    (tmp_path / "slos.yaml").write_text(SLOS.replace("name: shop-search", "name: shop-other"))
    slo = load_slos([tmp_path / "slos.yaml"]).get("shop-other")
    assert slo is not None
    result = asyncio.run(
        SloEvaluator(SloBucketStore(sql.engine), probe_db=sql.engine).refresh(slo, NOW)
    )
    assert result.period.total == 0
    assert (
        "no probe runs bound to shop-other in prod between the last collection and now"
        in result.notes
    )


def test_the_example_flows_bind_a_probe_slo_of_the_example() -> None:
    slos = load_slos([ROOT / "examples" / "slos.yaml"])
    example = load_flows([ROOT / "examples" / "synthetics"])
    assert example
    for flow in example:
        assert flow.slo is not None, flow.name
        slo = slos.get(flow.slo.name)
        assert slo is not None, f"{flow.name}: slo {flow.slo.name} is not in examples/slos.yaml"
        assert isinstance(slo.sli.source, ProbeSource), (
            f"{flow.name}: {slo.name} is not a probe SLO"
        )
        assert slo.service == flow.service
        if flow.schedule.versions != ("canary",):  # some of its runs count against the SLO
            assert slo.sli.source.environment in flow.environments
        if flow.slo.objective is not None:
            assert flow.slo.objective == slo.objective
