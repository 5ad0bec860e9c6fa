"""The routing decision: order of rules, stickiness, weight as a share of tenants."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coalmine.spec.model import HeaderMatch, Tenancy
from coalmine.traffic.assign import bucket, choose_version, compile_routes
from coalmine.traffic.base import HeaderRoute, Routing

TENANCY = Tenancy(header="X-Tenant", cookie="tenant", test_tenants=("tester",))
OVERRIDE = "X-Coalmine-Version"


def choose(
    routing: Routing,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    client_id: str = "10.0.0.1",
) -> tuple[str, str]:
    return choose_version(routing, TENANCY, headers or {}, cookies or {}, client_id, OVERRIDE)


def tenant(routing: Routing, key: str) -> str:
    return choose(routing, {"X-Tenant": key})[0]


@given(key=st.text(min_size=1), w1=st.integers(0, 100), w2=st.integers(0, 100))
def test_a_tenant_on_the_canary_stays_there_as_the_weight_grows(key: str, w1: int, w2: int) -> None:
    low, high = sorted((w1, w2))
    if tenant(Routing(canary_weight=low), key) == "canary":
        assert tenant(Routing(canary_weight=high), key) == "canary"


@pytest.mark.parametrize("weight", [1, 5, 30, 50, 90, 99])
def test_the_weight_is_the_share_of_tenants(weight: int) -> None:
    rng = random.Random(weight)
    routing = Routing(canary_weight=weight)
    keys = [f"tenant-{rng.getrandbits(64):x}" for _ in range(20_000)]
    share = sum(tenant(routing, k) == "canary" for k in keys) / len(keys)
    assert abs(share - weight / 100) <= 0.03


def test_weight_0_sends_nobody_and_100_everybody() -> None:
    for i in range(2000):
        assert choose(Routing(canary_weight=0), {"X-Tenant": f"t{i}"}) == ("stable", "weight")
        assert choose(Routing(canary_weight=100), {"X-Tenant": f"t{i}"}) == ("canary", "weight")
    # test tenants too: a rollback (weight 0, no header routes) reaches nobody
    assert choose(Routing(canary_weight=0), {"X-Tenant": "tester"}) == ("stable", "weight")


def test_the_bucket_is_stable_and_in_range() -> None:
    assert bucket("acme") == bucket("acme")
    assert all(0 <= bucket(str(i)) < 10_000 for i in range(1000))


def test_the_override_header_wins_over_everything() -> None:
    everyone = Routing(canary_weight=100)
    assert choose(everyone, {"x-coalmine-version": "stable"}) == ("stable", "override")
    assert choose(Routing(), {OVERRIDE: "Canary"}) == ("canary", "override")
    assert choose(Routing(), {OVERRIDE: "other"})[1] == "weight"  # unknown values are ignored


def route(name: str, *matches: tuple[str, str, str]) -> HeaderRoute:
    return HeaderRoute(name, tuple(HeaderMatch(h, k, v) for h, k, v in matches))  # type: ignore[arg-type]


def test_a_header_route_needs_every_rule_to_match() -> None:
    routing = Routing(
        header_routes=(
            route("beta", ("X-Beta", "exact", "yes"), ("User-Agent", "prefix", "Mozilla/")),
            route("ios", ("X-Client", "regex", "ios-[0-9]+")),
        )
    )
    assert choose(routing, {"x-beta": "yes", "user-agent": "Mozilla/5.0"}) == (
        "canary",
        "header-route",
    )
    assert choose(routing, {"X-Beta": "yes"})[0] == "stable"
    assert choose(routing, {"X-Beta": "yes!", "User-Agent": "Mozilla/5"})[0] == "stable"
    assert choose(routing, {"X-Client": "ios-17"}) == ("canary", "header-route")
    assert choose(routing, {"X-Client": "ios-17b"})[0] == "stable"  # full match only
    # the override still wins over a matching header route
    assert choose(routing, {"X-Client": "ios-1", OVERRIDE: "stable"}) == ("stable", "override")


def test_a_route_without_rules_matches_nothing() -> None:
    assert choose(Routing(header_routes=(route("empty"),)), {"X-Tenant": "a"})[0] == "stable"


def test_invalid_routes_are_rejected() -> None:
    with pytest.raises(ValueError, match="invalid regex"):
        compile_routes(Routing(header_routes=(route("bad", ("X", "regex", "(")),)))
    with pytest.raises(ValueError, match="kind must be"):
        compile_routes(Routing(header_routes=(route("bad", ("X", "glob", "*")),)))


def test_test_tenants_get_the_canary_while_it_is_exposed() -> None:
    assert choose(Routing(canary_weight=1), {"X-Tenant": "tester"}) == ("canary", "test-tenant")
    routes_only = Routing(header_routes=(route("beta", ("X-Beta", "exact", "1")),))
    assert choose(routes_only, {"X-Tenant": "tester"}) == ("canary", "test-tenant")
    assert choose(routes_only, cookies={"tenant": "tester"}) == ("canary", "test-tenant")


def test_the_tenant_key_is_header_then_cookie_then_client_address() -> None:
    routing = Routing(canary_weight=50)
    canary_key = next(f"k{i}" for i in range(1000) if bucket(f"k{i}") < 5000)
    stable_key = next(f"k{i}" for i in range(1000) if bucket(f"k{i}") >= 5000)
    assert choose(routing, {"X-Tenant": canary_key}, cookies={"tenant": stable_key})[0] == "canary"
    assert choose(routing, cookies={"tenant": canary_key})[0] == "canary"
    assert choose(routing, client_id=canary_key)[0] == "canary"
    assert choose(routing, client_id=stable_key)[0] == "stable"
