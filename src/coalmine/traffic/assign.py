"""Which version serves a request: a pure function of the routing document and the request.

Rules, first match wins:

1. ``override``: the override header says ``stable`` or ``canary`` (probes pin themselves), or
   ``baseline`` when the service has a baseline cohort;
2. ``header-route``: every match rule of some header route matches -> canary;
3. ``test-tenant``: the tenant is a test tenant and the canary is exposed at all
   (weight above zero or any header route) -> canary;
4. ``weight``: a sticky split. The tenant key (tenancy header, else cookie, else client address)
   hashes to a bucket in ``0..9999``; the canary gets the buckets below ``weight * 100``. The
   weight is therefore a share of tenants, and a tenant on the canary at weight ``w`` stays there
   at every weight above ``w``.

With a baseline cohort (a fresh copy of the stable version), rule 4 also gives the baseline the
next slice of the same size, buckets ``[w * 100, 2 * w * 100)`` capped at ``BUCKETS``: its share
is ``min(w, 100 - w)``. The canary's buckets are exactly those without a baseline, so its
stickiness is unchanged. Rules 2 and 3 only ever choose the canary; weight 0 empties both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from multidict import CIMultiDict, CIMultiDictProxy

from coalmine.spec.model import Tenancy
from coalmine.traffic.base import Routing

BUCKETS = 10_000
VERSIONS = ("stable", "canary")
BASELINE = "baseline"  # the optional third cohort: stable's code, canary's share


@dataclass(frozen=True)
class _Rule:
    header: str
    kind: str
    value: str
    pattern: re.Pattern[str] | None

    def matches(self, headers: Mapping[str, str]) -> bool:
        got = headers.get(self.header)
        if got is None:
            return False
        if self.kind == "exact":
            return got == self.value
        if self.kind == "prefix":
            return got.startswith(self.value)
        assert self.pattern is not None
        return self.pattern.fullmatch(got) is not None


def compile_routes(routing: Routing) -> tuple[tuple[_Rule, ...], ...]:
    """Each header route as a tuple of rules. Raises ``ValueError`` for a bad kind or regex."""
    routes = []
    for route in routing.header_routes:
        rules = []
        for m in route.matches:
            if m.kind not in ("exact", "prefix", "regex"):
                raise ValueError(
                    f"header route {route.name!r}: kind must be exact, prefix or regex, "
                    f"got {m.kind!r}"
                )
            try:
                pattern = re.compile(m.value) if m.kind == "regex" else None
            except re.error as err:
                raise ValueError(
                    f"header route {route.name!r}: invalid regex {m.value!r}: {err}"
                ) from None
            rules.append(_Rule(m.header_name, m.kind, m.value, pattern))
        if rules:  # a route without rules matches nothing (Argo: no matches removes the route)
            routes.append(tuple(rules))
    return tuple(routes)


_compiled_cache: tuple[Routing, tuple[tuple[_Rule, ...], ...]] | None = None


@lru_cache(maxsize=64)
def _compile_cached(routing: Routing) -> tuple[tuple[_Rule, ...], ...]:
    return compile_routes(routing)


def _compiled(routing: Routing) -> tuple[tuple[_Rule, ...], ...]:
    """The router serves one routing object at a time: an identity check makes it O(1)."""
    global _compiled_cache
    cached = _compiled_cache
    if cached is not None and cached[0] is routing:
        return cached[1]
    routes = _compile_cached(routing)
    _compiled_cache = (routing, routes)
    return routes


def bucket(key: str) -> int:
    """A stable bucket in ``0..BUCKETS-1`` for a tenant key (same on every host and run)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def tenant_key(
    tenancy: Tenancy, headers: Mapping[str, str], cookies: Mapping[str, str], client_id: str
) -> tuple[str, bool]:
    """The key that identifies the user, and whether it names a tenant (not just an address)."""
    if tenancy.header:
        value = headers.get(tenancy.header)
        if value:
            return value, True
    if tenancy.cookie:
        value = cookies.get(tenancy.cookie)
        if value:
            return value, True
    return client_id, False


def _case_insensitive(headers: Mapping[str, str]) -> Mapping[str, str]:
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return CIMultiDict(headers)


def choose_version(
    routing: Routing,
    tenancy: Tenancy,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    client_id: str,
    override_header: str,
    *,
    baseline: bool = False,
) -> tuple[str, str]:
    """``("stable" | "canary" | "baseline", reason)`` with reason override, header-route,
    test-tenant or weight. ``baseline``: the service has a baseline cohort (otherwise
    ``"baseline"`` is never chosen). ``headers`` is looked up case-insensitively."""
    headers = _case_insensitive(headers)
    pinned = headers.get(override_header)
    if pinned is not None:
        pinned = pinned.strip().lower()
        if pinned in VERSIONS or (baseline and pinned == BASELINE):
            return pinned, "override"
    routes = _compiled(routing)
    for rules in routes:
        if all(rule.matches(headers) for rule in rules):
            return "canary", "header-route"
    key, is_tenant = tenant_key(tenancy, headers, cookies, client_id)
    if (
        is_tenant
        and key in tenancy.test_tenants
        and (routing.canary_weight > 0 or routing.header_routes)
    ):
        return "canary", "test-tenant"
    weight = routing.canary_weight
    if weight <= 0:
        return "stable", "weight"
    if weight >= 100:
        return "canary", "weight"
    slice_size = weight * (BUCKETS // 100)
    b = bucket(key)
    if b < slice_size:
        return "canary", "weight"
    if baseline and b < 2 * slice_size:  # past BUCKETS for w > 50: the baseline gets the rest
        return BASELINE, "weight"
    return "stable", "weight"
