"""ProbeRunner against the real probe application (aiohttp on loopback)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from typing import Any

from coalmine.probes.auth import TokenCache
from coalmine.probes.model import (
    Assertion,
    AuthScheme,
    Environment,
    Extract,
    Flow,
    FlowResult,
    Library,
    Request,
    Retry,
    Schedule,
    SecretRef,
    Session,
    Step,
)
from coalmine.probes.runner import ProbeRunner, ResponseRecord
from tests.fixtures.probe_app import API_KEY, CLIENT_ID, CLIENT_SECRET, PASSWORD, ProbeApp

ENVIRON = {
    "PROBE_CLIENT_SECRET": CLIENT_SECRET,
    "PROBE_PASSWORD": PASSWORD,
    "PROBE_API_KEY": API_KEY,
}


def status(code: int | list[int]) -> Assertion:
    op = "in" if isinstance(code, list) else "=="
    return Assertion("status", op, f"status {op} {code}", value=code)  # type: ignore[arg-type]


def jp(path: str, op: str, value: Any = None, negate: bool = False) -> Assertion:
    text = f'jsonpath "{path}" {"not " if negate else ""}{op} {json.dumps(value)}'
    return Assertion("jsonpath", op, text, arg=path, value=value, negate=negate)  # type: ignore[arg-type]


def oauth_library(client_auth: str | None = None, scopes: list[str] | None = None) -> Library:
    settings: dict[str, Any] = {
        "token_url": "/oauth/token",
        "client_id": CLIENT_ID,
        "client_secret": "{{ secrets.client_secret }}",
    }
    if client_auth:
        settings["client_auth"] = client_auth
    if scopes:
        settings["scopes"] = scopes
    return Library(
        name="auth",
        file="lib/auth.yaml",
        auth={"api": AuthScheme("api", "oauth2_client_credentials", settings)},
        secrets={"client_secret": SecretRef("client_secret", env="PROBE_CLIENT_SECRET")},
    )


def session_library() -> Library:
    login = Step(
        "sign-in",
        Request(
            "POST",
            "/login",
            form={"username": "alice", "password": "{{ secrets.password }}"},
            auth="none",
        ),
        extract=(Extract("csrf", "jsonpath", "$.csrf_token", secret=True),),
        asserts=(status(200),),
    )
    return Library(
        name="session",
        file="lib/session.yaml",
        sessions={"login": Session("login", (login,))},
        secrets={"password": SecretRef("password", env="PROBE_PASSWORD")},
    )


def flow(
    app: ProbeApp | str,
    *steps: Step,
    finally_steps: tuple[Step, ...] = (),
    timeout: float = 5.0,
    **kw: Any,
) -> Flow:
    base = app if isinstance(app, str) else app.url
    return Flow(
        name=kw.pop("name", "orders"),
        service="shop",
        file="synthetics/orders.yaml",
        steps=steps,
        environments={"staging": Environment("staging", base, variables={"qty": 3})},
        schedule=Schedule(timeout_s=timeout),
        finally_steps=finally_steps,
        **kw,
    )


def get(name: str, url: str, *asserts: Assertion, **kw: Any) -> Step:
    request_kw = {k: kw.pop(k) for k in list(kw) if k in ("timeout_s", "headers", "auth", "query")}
    return Step(name, Request("GET", url, **request_kw), asserts=asserts, **kw)


def runner(**kw: Any) -> ProbeRunner:
    return ProbeRunner(environ=ENVIRON, **kw)


def run(r: ProbeRunner, f: Flow, **kw: Any) -> FlowResult:
    return asyncio.run(r.run(f, "staging", **kw))


def dump(result: FlowResult, records: list[ResponseRecord] = ()) -> str:  # type: ignore[assignment]
    return json.dumps(dataclasses.asdict(result)) + json.dumps(
        [dataclasses.asdict(r) for r in records]
    )


# --------------------------------------------------------------------------- flows


def test_a_multi_step_flow_passes_captures_between_steps(probe_app: ProbeApp) -> None:
    create = Step(
        "create",
        Request("POST", "/api/orders", json={"item": "pen-{{ uuid }}", "quantity": "{{ qty }}"}),
        extract=(Extract("order_id", "jsonpath", "$.id"), Extract("item", "jsonpath", "$.item")),
        asserts=(status(201), jp("$.quantity", "==", 3)),
    )
    read = get(
        "read",
        "/api/orders/{{ order_id }}",
        status(200),
        jp("$.id", "==", "{{ order_id }}"),
        jp("$.item", "matches", "^pen-[0-9a-f-]{36}$"),
    )
    delete = Step("delete", Request("DELETE", "/api/orders/{{ order_id }}"), asserts=(status(204),))
    f = flow(probe_app, create, read, finally_steps=(delete,), uses=(oauth_library(),), auth="api")
    result = run(runner(), f)
    assert result.success and result.first_attempt_success, result.error
    assert [s.name for s in result.steps] == ["create", "read", "delete"]
    assert result.steps[2].is_finally
    order_id = result.steps[1].url.rsplit("/", 1)[1]
    assert order_id.startswith("ord-")
    assert probe_app.state.orders == {}  # the finally step deleted it
    timing = result.steps[0].final.timing  # type: ignore[union-attr]
    assert timing.connect > 0 and result.steps[1].final.timing.connect == 0  # type: ignore[union-attr]


def test_the_oauth2_token_is_fetched_once_for_many_runs_and_flows(probe_app: ProbeApp) -> None:
    cache = TokenCache()
    lib = oauth_library()
    orders = flow(probe_app, get("list", "/api/orders", status(200)), uses=(lib,), auth="api")
    other = flow(
        probe_app, get("one", "/api/orders", status(200)), uses=(lib,), auth="api", name="other"
    )
    r = runner(token_cache=cache)

    async def many() -> list[FlowResult]:
        first = await asyncio.gather(*(r.run(orders, "staging") for _ in range(8)))
        second = await asyncio.gather(*(r.run(other, "staging") for _ in range(4)))
        return [*first, *second]

    results = asyncio.run(many())
    assert all(x.success for x in results)
    assert probe_app.state.token_calls == 1  # concurrent runs waited for one fetch
    assert cache.fetches == 1
    # another configuration (scopes) is another token; a separate cache fetches its own
    scoped = flow(
        probe_app,
        get("list", "/api/orders", status(200)),
        uses=(oauth_library(scopes=["orders:read"]),),
        auth="api",
    )
    assert run(r, scoped).success
    assert probe_app.state.token_calls == 2
    assert probe_app.state.token_forms[-1]["scope"] == "orders:read"
    assert run(runner(), orders).success
    assert probe_app.state.token_calls == 3


def test_the_token_is_refreshed_when_it_expires(probe_app: ProbeApp) -> None:
    probe_app.state.expires_in = 100  # reused for 90 s (10% margin)
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    r = runner(token_cache=cache, clock=lambda: now[0])
    f = flow(
        probe_app, get("list", "/api/orders", status(200)), uses=(oauth_library(),), auth="api"
    )
    assert run(r, f).success
    now[0] += 89
    assert run(r, f).success
    assert probe_app.state.token_calls == 1
    now[0] += 2
    assert run(r, f).success
    assert probe_app.state.token_calls == 2


def test_a_401_drops_the_cached_token_and_retries_once(probe_app: ProbeApp) -> None:
    r = runner()
    f = flow(
        probe_app, get("list", "/api/orders", status(200)), uses=(oauth_library(),), auth="api"
    )
    assert run(r, f).success
    probe_app.state.revoke_tokens()
    result = run(r, f)
    assert result.success, result.error
    assert probe_app.state.token_calls == 2
    assert len(result.steps[0].attempts) == 1 and result.first_attempt_success


def test_client_credentials_can_go_in_a_basic_auth_header(probe_app: ProbeApp) -> None:
    f = flow(
        probe_app,
        get("list", "/api/orders", status(200)),
        uses=(oauth_library(client_auth="basic"),),
        auth="api",
    )
    assert run(runner(), f).success
    form = probe_app.state.token_forms[-1]
    assert form == {"grant_type": "client_credentials"}


def test_a_failing_token_endpoint_is_an_auth_failure_without_the_secret(
    probe_app: ProbeApp,
) -> None:
    probe_app.state.client_secret = "the-server-expects-another"
    f = flow(
        probe_app, get("list", "/api/orders", status(200)), uses=(oauth_library(),), auth="api"
    )
    result = run(runner(), f)
    assert not result.success and result.reason == "auth"
    assert "token endpoint" in result.error and "answered 401" in result.error
    assert "invalid_client" in result.error
    assert CLIENT_SECRET not in dump(result)


def test_a_cookie_login_session_runs_first_in_each_runs_own_jar(probe_app: ProbeApp) -> None:
    create = Step(
        "create",
        Request(
            "POST", "/api/orders", headers={"X-CSRF-Token": "{{ csrf }}"}, json={"item": "ink"}
        ),
        asserts=(status(201),),
    )
    f = flow(probe_app, create, uses=(session_library(),), session="login")
    r = runner()
    first, second = run(r, f), run(r, f)
    assert first.success and second.success, first.error
    assert [s.name for s in first.steps] == ["login/sign-in", "create"]
    assert len(probe_app.state.sessions) == 2  # one login per run
    # a flow without the session shares no cookies with the earlier runs
    alone = run(r, flow(probe_app, get("list", "/api/orders", status(200))))
    assert not alone.success and alone.steps[0].final.status == 401  # type: ignore[union-attr]


def test_retries_keep_the_first_attempt_apart(probe_app: ProbeApp) -> None:
    step = get(
        "flaky",
        "/flaky?fail_first=2&key=a",
        status(200),
        retry=Retry(count=3, interval_s=0.01, backoff=2.0, on="any"),
    )
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    result = run(runner(sleep=sleep), flow(probe_app, step))
    assert result.success and not result.first_attempt_success
    attempts = result.steps[0].attempts
    assert [a.status for a in attempts] == [503, 503, 200]
    assert [a.passed for a in attempts] == [False, False, True]
    assert attempts[0].reason == "assertion"
    assert waits == [0.01, 0.02]
    # on: network does not retry a bad status
    network = get("flaky", "/flaky?fail_first=2&key=b", status(200), retry=Retry(count=3))
    result = run(runner(sleep=sleep), flow(probe_app, network))
    assert not result.success and len(result.steps[0].attempts) == 1


def test_network_errors_are_retried_and_refused_connections_are_connect_failures() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    step = get("ping", "/version", retry=Retry(count=2, interval_s=0.01))
    result = run(runner(), flow(f"http://127.0.0.1:{port}", step))
    assert not result.success and result.reason == "connect"
    assert len(result.steps[0].attempts) == 3
    assert all(a.status is None and a.reason == "connect" for a in result.steps[0].attempts)
    assert "cannot connect" in result.error


def test_an_unknown_host_is_a_connect_failure() -> None:
    result = run(runner(), flow("http://no-such-host.invalid", get("ping", "/")))
    assert result.reason == "connect"
    assert "cannot resolve no-such-host.invalid" in result.error


def test_tls_to_a_plain_http_port_is_a_tls_failure(probe_app: ProbeApp) -> None:
    result = run(runner(), flow(f"https://127.0.0.1:{probe_app.port}", get("ping", "/version")))
    assert result.reason == "tls", result.error


def test_finally_runs_after_a_failed_critical_step(probe_app: ProbeApp) -> None:
    never = Step(
        "never", Request("GET", "/version"), extract=(Extract("vid", "jsonpath", "$.version"),)
    )
    f = flow(
        probe_app,
        get("broken", "/fail?status=500", status(200)),
        never,
        finally_steps=(
            get("cleanup", "/version", status(200)),
            get("uses-capture", "/api/orders/{{ vid }}"),  # nothing was captured: skipped
        ),
    )
    result = run(runner(), f)
    assert not result.success and result.failed_step == "broken" and result.reason == "assertion"
    assert "status == 200: got 500" in result.error
    _, skipped, cleanup, uses_capture = result.steps
    assert skipped.skipped and skipped.attempts == ()
    assert cleanup.is_finally and cleanup.passed
    assert uses_capture.is_finally and uses_capture.skipped
    assert probe_app.state.versions_seen == [None]  # only the cleanup reached /version


def test_allow_failure_and_non_critical_steps(probe_app: ProbeApp) -> None:
    optional = get("optional", "/fail?status=503", allow_failure=True)
    f = flow(probe_app, optional, get("main", "/version", status(200)))
    result = run(runner(), f)
    assert result.success and not result.steps[0].passed
    assert result.steps[0].final.reason == "assertion"  # type: ignore[union-attr]
    assert "status < 400 (default): got 503" in result.steps[0].final.error  # type: ignore[union-attr]
    soft = get("soft", "/fail?status=500", status(200), critical=False)
    result = run(runner(), flow(probe_app, soft, get("main", "/version", status(200))))
    assert not result.success and result.failed_step == "soft"
    assert result.steps[1].passed  # the run went on


def test_request_timeouts_and_the_flow_timeout(probe_app: ProbeApp) -> None:
    slow = get("slow", "/slow?ms=600", timeout_s=0.2)
    result = run(runner(), flow(probe_app, slow))
    attempt = result.steps[0].final
    assert result.reason == "timeout" and attempt is not None
    assert 0.19 <= attempt.duration_s < 0.5
    assert "timed out after 0.2s" in attempt.error
    # three 200 ms steps in a 0.3 s flow: the second times out, the third is skipped,
    # finally still runs with its own budget
    steps = [get(f"s{i}", "/slow?ms=200") for i in range(3)]
    f = flow(probe_app, *steps, finally_steps=(get("cleanup", "/version"),), timeout=0.3)
    result = run(runner(), f)
    assert result.reason == "timeout" and result.failed_step == "s1"
    assert "flow's timeout (0.3s) ran out" in result.error
    assert result.steps[2].skipped and result.steps[3].passed
    assert result.duration_s < 1.0


def test_timing_phases_add_up_and_processing_shows_the_server_delay(probe_app: ProbeApp) -> None:
    url = f"http://localhost:{probe_app.port}/slow?ms=200"
    result = run(runner(), flow(probe_app, get("slow", url)))
    attempt = result.steps[0].final
    assert attempt is not None and attempt.passed
    t = attempt.timing
    assert 0.195 <= t.processing <= 0.30
    assert t.resolve > 0 and t.connect > 0 and t.tls == 0
    assert abs(t.total - attempt.duration_s) <= 0.005 + 0.05 * attempt.duration_s
    assert t.transfer < 0.05


def test_a_pinned_run_sends_the_version_header(probe_app: ProbeApp) -> None:
    f = flow(probe_app, get("v", "/version", jp("$.version", "==", "canary")))
    result = run(runner(), f, version="canary")
    assert result.success and result.version == "canary"
    plain = run(runner(), flow(probe_app, get("v", "/version")))
    assert plain.version is None
    custom = run(runner(override_header="X-Other"), f, version="canary")
    assert not custom.success
    assert probe_app.state.versions_seen == ["canary", None, None]


def test_template_and_capture_failures_name_the_variable(probe_app: ProbeApp) -> None:
    result = run(runner(), flow(probe_app, get("x", "/api/orders/{{ missing_id }}")))
    assert result.reason == "template" and "unknown variable 'missing_id'" in result.error
    step = Step("x", Request("GET", "/version"), extract=(Extract("vid", "jsonpath", "$.nope"),))
    result = run(runner(), flow(probe_app, step))
    assert result.reason == "extract" and "capture 'vid'" in result.error


def test_a_missing_secret_fails_the_step_naming_the_secret(probe_app: ProbeApp) -> None:
    lib = oauth_library()
    f = flow(probe_app, get("list", "/api/orders"), uses=(lib,), auth="api")
    result = asyncio.run(ProbeRunner(environ={}).run(f, "staging"))
    assert result.reason == "template"
    assert "secret 'client_secret': environment variable PROBE_CLIENT_SECRET is not set" in (
        result.error
    )


# --------------------------------------------------------------------------- secrets


def test_secrets_never_reach_results_errors_or_recorded_responses(probe_app: ProbeApp) -> None:
    """An env secret, a secret capture, the OAuth2 client secret and its token."""
    libs = (oauth_library(), session_library())
    key = SecretRef("key", env="PROBE_API_KEY")
    echo_key = get(
        "echo-key",
        "/echo",
        jp("$.headers.X-Api-Key", "==", "wrong"),  # fails: actual is the secret
        headers={"X-Api-Key": "{{ secrets.key }}"},
        query={"k": "{{ secrets.key }}", "csrf": "{{ csrf }}"},
        auth="none",
        allow_failure=True,
    )
    echo_token = get(
        "echo-token", "/echo", jp("$.headers.Authorization", "==", "Bearer x"), allow_failure=True
    )
    orders = get("orders", "/api/orders", status(200))
    broken = get("broken", "/api/orders/{{ secrets.key }}", status(200))
    f = flow(
        probe_app,
        echo_key,
        echo_token,
        orders,
        broken,
        uses=libs,
        auth="api",
        session="login",
        secrets={"key": key},
    )
    records: list[ResponseRecord] = []
    result = run(runner(on_response=records.append), f)
    assert not result.success and result.failed_step == "broken"
    token = next(iter(probe_app.state.tokens))
    csrf = next(iter(probe_app.state.sessions.values()))[1]
    session_id = next(iter(probe_app.state.sessions))
    text = dump(result, records)
    for secret in (API_KEY, CLIENT_SECRET, PASSWORD, token, csrf, session_id):
        assert secret not in text, secret
    # the checks did see the values, and said so in redacted form
    key_check = result.steps[1].final.assertions[1]  # type: ignore[union-attr]
    assert not key_check.passed and key_check.actual == '"***"'
    assert result.steps[1].url.endswith("/echo?k=***&csrf=***")
    assert result.steps[4].url.endswith("/api/orders/***")
    assert len(records) == 5 and records[2].body.count("***") >= 1
    assert records[0].headers["Set-Cookie"].startswith("session=***")


# --------------------------------------------------------------------------- YAML examples


def test_the_example_flows_run_green_against_the_app(probe_app: ProbeApp) -> None:
    """examples/synthetics/*.yaml through the real loader, pointed at the app."""
    from coalmine.probes.loader import load_flow

    probe_app.state.client_id = "maestro-probes"
    probe_app.state.users["probe-bot"] = PASSWORD
    environ = {
        "MAESTRO_CLIENT_SECRET": CLIENT_SECRET,
        "MAESTRO_API_KEY": API_KEY,
        "MAESTRO_WEB_PASSWORD": PASSWORD,
    }
    records: list[ResponseRecord] = []
    r = ProbeRunner(environ=environ, on_response=records.append)
    for name in ("maestro-api-canary", "rollback-chaos-lite"):
        loaded = load_flow(f"examples/synthetics/{name}.yaml")
        staging = dataclasses.replace(loaded.environments["staging"], base_url=probe_app.url)
        f = dataclasses.replace(loaded, environments={"staging": staging})
        result = asyncio.run(r.run(f, "staging", version="canary"))
        failures = [(s.name, s.final.error) for s in result.steps if s.final and not s.passed]
        assert result.success, failures
        for secret in (CLIENT_SECRET, API_KEY, PASSWORD, *probe_app.state.tokens):
            assert secret not in dump(result, records)
    assert probe_app.state.orders == {}  # both flows cleaned up after themselves
    assert probe_app.state.token_calls == 1
