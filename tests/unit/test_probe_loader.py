"""Probe flow and library files: what loads, and where each mistake is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalmine.errors import SpecError
from coalmine.probes.loader import (
    NO_AUTH,
    AssertionSyntaxError,
    collect_flow_errors,
    load_flow,
    load_flows,
    load_library,
    parse_assertion,
)
from coalmine.probes.template_refs import references, spans

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "synthetics"

LIB = """\
apiVersion: coalmine.dev/v1
kind: ProbeLibrary
metadata: {name: shop-auth}
variables:
  client_id: probes
secrets:
  client_secret: {env: SHOP_CLIENT_SECRET}
  web_password: {file: ../secrets/web.txt}
auth:
  shop-oauth:
    type: oauth2_client_credentials
    token_url: /oauth/token
    client_id: "{{ client_id }}"
    client_secret: "{{ secrets.client_secret }}"
    scopes: [orders.read]
  shop-key:
    type: api_key
    value: "{{ secrets.api_key }}"
sessions:
  web-login:
    steps:
      - name: login
        request:
          method: POST
          url: /login
          auth: none
          form: {username: "{{ web_user }}", password: "{{ secrets.web_password }}"}
        extract:
          csrf: {jsonpath: "$.csrf_token", secret: true}
        assert: [status == 200]
"""

FLOW = """\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata:
  name: shop-canary
  service: shop
  owner: team-shop
  labels: {tier: critical}
slo: {name: shop-availability, objective: 99.5}
schedule: {interval: 1m, jitter: 5s, timeout: 20s, locations: [lo, eu], versions: [stable, canary]}
uses: [lib/auth.yaml]
auth: shop-oauth
session: web-login
variables:
  web_user: bot
  page: "1"
secrets:
  api_key: {env: SHOP_API_KEY}
environments:
  staging:
    base_url: http://127.0.0.1:8080/
    variables: {region: eu}
  prod:
    base_url: https://shop.example.com
    variables: {region: us}
    secrets: {client_secret: {env: PROD_SECRET}}
steps:
  - name: list
    request:
      url: /api/orders
      query: {page: "{{ page }}", region: "{{ region }}"}
      headers: {X-CSRF: "{{ csrf }}"}
      timeout: 2s
    assert:
      - status == 200
      - header "Content-Type" contains "json"
      - jsonpath "$.orders" not isEmpty
      - latency < 500ms
      - {schema: {type: object, required: [orders]}}
    retry: {count: 2, interval: 250ms, backoff: 2, on: any}
  - name: create
    request:
      method: post
      url: "{{ base_url }}/api/orders"
      json: {sku: "s-{{ uuid }}", qty: 1, tags: ["{{ region }}"]}
      auth: none
    extract:
      order_id: {jsonpath: "$.id"}
      loc: {header: Location}
      code: {status: true}
      num: {regex: "id=(\\\\d+)"}
      sid: {cookie: sid, secret: true}
    assert:
      - status in [200, 201]
      - cookie "sid" exists
      - body matches "^\\\\{"
      - flow_latency <= 2s
    allow_failure: true
    critical: false
finally:
  - name: delete
    request: {method: DELETE, url: "/api/orders/{{ order_id }}", auth: shop-oauth}
    assert: [status != 500]
"""


def write(tmp_path: Path, flow: str = FLOW, lib: str = LIB) -> Path:
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "lib" / "auth.yaml").write_text(lib)
    path = tmp_path / "flow.yaml"
    path.write_text(flow)
    return path


def line_of(text: str, needle: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert lines, f"{needle!r} not in the text"
    return lines[0]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


# --------------------------------------------------------------------------- good files


def test_a_good_flow_loads_into_the_model(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path))
    assert (flow.name, flow.service, flow.owner, flow.labels) == (
        "shop-canary",
        "shop",
        "team-shop",
        {"tier": "critical"},
    )
    assert flow.slo is not None and (flow.slo.name, flow.slo.objective) == (
        "shop-availability",
        99.5,
    )
    s = flow.schedule
    assert (s.interval_s, s.jitter_s, s.timeout_s) == (60.0, 5.0, 20.0)
    assert s.locations == ("lo", "eu") and s.versions == ("stable", "canary")
    assert [lib.name for lib in flow.uses] == ["shop-auth"]
    assert (flow.auth, flow.session) == ("shop-oauth", "web-login")
    assert flow.variables == {"web_user": "bot", "page": "1"}
    assert flow.secrets["api_key"].env == "SHOP_API_KEY"
    staging, prod = flow.environments["staging"], flow.environments["prod"]
    assert staging.base_url == "http://127.0.0.1:8080"  # trailing slash dropped
    assert staging.variables == {"region": "eu"} and prod.secrets["client_secret"].env == (
        "PROD_SECRET"
    )

    list_step, create = flow.steps
    assert list_step.request.method == "GET"  # the default
    assert list_step.request.query == {"page": "{{ page }}", "region": "{{ region }}"}
    assert list_step.request.timeout_s == 2.0
    status, header, jsonpath, latency, schema = list_step.asserts
    assert (status.subject, status.operator, status.value) == ("status", "==", 200)
    assert (header.arg, header.operator, header.value) == ("Content-Type", "contains", "json")
    assert (jsonpath.arg, jsonpath.operator, jsonpath.negate) == ("$.orders", "isEmpty", True)
    assert (latency.operator, latency.value) == ("<", 0.5)
    assert (schema.subject, schema.operator) == ("schema", "valid")
    assert schema.value == {"type": "object", "required": ["orders"]}
    assert status.where.line == line_of(FLOW, "- status == 200")
    r = list_step.retry
    assert (r.count, r.interval_s, r.backoff, r.on) == (2, 0.25, 2.0, "any")

    assert create.request.method == "POST"
    assert create.request.json == {"sku": "s-{{ uuid }}", "qty": 1, "tags": ["{{ region }}"]}
    assert create.request.auth == NO_AUTH
    assert create.allow_failure and not create.critical
    ex = {e.name: e for e in create.extract}
    assert (ex["order_id"].source, ex["order_id"].expr) == ("jsonpath", "$.id")
    assert (ex["loc"].source, ex["loc"].expr) == ("header", "Location")
    assert ex["code"].source == "status"
    assert (ex["num"].source, ex["num"].expr, ex["num"].group) == ("regex", r"id=(\d+)", 1)
    assert ex["sid"].secret and ex["sid"].source == "cookie"
    assert [a.value for a in create.asserts] == [[200, 201], None, r"^\{", 2.0]

    (delete,) = flow.finally_steps
    assert delete.request.auth == "shop-oauth" and delete.request.method == "DELETE"

    lib = flow.uses[0]
    assert lib.auth["shop-oauth"].type == "oauth2_client_credentials"
    assert lib.auth["shop-oauth"].settings["scopes"] == ["orders.read"]
    assert lib.sessions["web-login"].steps[0].extract[0].secret
    # secret files are resolved relative to the file that declares them
    assert lib.secrets["web_password"].file == str(tmp_path / "lib" / "../secrets/web.txt")


def test_the_examples_load(tmp_path: Path) -> None:
    flows = load_flows([EXAMPLES])
    assert sorted(f.name for f in flows) == ["maestro-api-canary", "rollback-chaos-lite"]
    canary = next(f for f in flows if f.name == "maestro-api-canary")
    assert canary.schedule.versions == ("stable", "canary")
    assert canary.uses[0].auth["maestro-oauth"].type == "oauth2_client_credentials"
    get_order = canary.steps[2]
    schema = next(a for a in get_order.asserts if a.subject == "schema")
    assert schema.value["required"] == ["id"]  # loaded from schemas/order.schema.json
    chaos = next(f for f in flows if f.name == "rollback-chaos-lite")
    assert chaos.session == "web-login"
    assert any(s.allow_failure for s in chaos.steps)
    # both flows share one Library object: the library is read once per load
    assert chaos.uses[0] is canary.uses[0]
    assert collect_flow_errors([EXAMPLES]) == []


def test_load_library_alone(tmp_path: Path) -> None:
    write(tmp_path)
    lib = load_library(tmp_path / "lib" / "auth.yaml")
    assert lib.name == "shop-auth" and set(lib.auth) == {"shop-oauth", "shop-key"}
    assert lib.variables == {"client_id": "probes"}


def test_a_directory_loads_flows_but_not_lib(tmp_path: Path) -> None:
    write(tmp_path)
    second = replace_once(FLOW, "name: shop-canary", "name: shop-canary-2")
    (tmp_path / "second.yml").write_text(second)
    (tmp_path / "notes.txt").write_text("not yaml")
    flows = load_flows([tmp_path])
    assert [f.name for f in flows] == ["shop-canary", "shop-canary-2"]


# --------------------------------------------------------------------------- errors

# (id, "flow" or "lib" to change, old, new, file the error is in, needle of its line, field,
#  part of the message, part of the hint)
CASES = [
    ("unknown-step-key", "flow", "    assert:\n      - status == 200",
     "    asert:\n      - status == 200",
     "flow", "asert:", "steps[0].asert", "unknown step field 'asert'", "did you mean 'assert'?"),
    ("unknown-request-key", "flow", "      headers: {X-CSRF", "      heders: {X-CSRF",
     "flow", "heders:", "steps[0].request.heders", "unknown request field", "'headers'"),
    ("unknown-top-key", "flow", "session: web-login", "sesion: web-login",
     "flow", "sesion:", "sesion", "unknown field 'sesion'", "did you mean 'session'?"),
    ("bad-operator", "flow", "- status == 200", "- status = 200",
     "flow", "status = 200", "steps[0].assert[0]", "unknown operator '='", "did you mean '=='?"),
    ("operator-case", "flow", '"$.orders" not isEmpty', '"$.orders" not isempty',
     "flow", "not isempty", "steps[0].assert[2]", "unknown operator 'isempty'", "'isEmpty'"),
    ("unknown-subject", "flow", "- latency < 500ms", "- latncy < 500ms",
     "flow", "latncy", "steps[0].assert[3]", "unknown assertion subject", "'latency'"),
    ("bad-regex-assert", "flow", 'body matches "^\\\\{"', 'body matches "(unclosed"',
     "flow", "(unclosed", "steps[1].assert[2]", "invalid regular expression", None),
    ("bad-regex-extract", "flow", 'num: {regex: "id=(\\\\d+)"}', 'num: {regex: "id=(\\\\d+"}',
     "flow", "num: {regex", "steps[1].extract.num.regex", "invalid regular expression", None),
    ("regex-group-out-of-range", "flow", 'num: {regex: "id=(\\\\d+)"}',
     'num: {regex: "id=(\\\\d+)", group: 2}',
     "flow", "num: {regex", "steps[1].extract.num.group", "from 0 to 1", "1 group(s)"),
    ("bad-jsonpath-extract", "flow", 'order_id: {jsonpath: "$.id"}',
     'order_id: {jsonpath: "$.[id"}',
     "flow", "order_id: {jsonpath", "steps[1].extract.order_id.jsonpath", "invalid JSONPath", None),
    ("bad-jsonpath-assert", "flow", 'jsonpath "$.orders"', 'jsonpath "$.orders["',
     "flow", "not isEmpty", "steps[0].assert[2]", "invalid JSONPath", None),
    ("missing-library", "flow", "uses: [lib/auth.yaml]", "uses: [lib/nope.yaml]",
     "flow", "uses:", "uses[0]", "library file not found: lib/nope.yaml", "relative to the flow"),
    ("unknown-auth", "flow", "auth: shop-oauth\n", "auth: shop-oaut\n",
     "flow", "auth: shop-oaut", "auth", "unknown auth scheme 'shop-oaut'", "'shop-oauth'"),
    ("unknown-request-auth", "flow", 'auth: shop-oauth}', 'auth: basic-x}',
     "flow", "request: {method: DELETE", "finally[0].request.auth", "unknown auth scheme 'basic-x'",
     "known auth schemes: shop-key, shop-oauth"),
    ("none-as-default-auth", "flow", "auth: shop-oauth\n", "auth: none\n",
     "flow", "auth: none", "auth", "only for one request", None),
    ("unknown-session", "flow", "session: web-login", "session: web-logon",
     "flow", "session:", "session", "unknown session 'web-logon'", "'web-login'"),
    ("unknown-secret", "flow", 'headers: {X-CSRF: "{{ csrf }}"}',
     'headers: {X-Key: "{{ secrets.api_kee }}"}',
     "flow", "X-Key", "steps[0].request.headers.X-Key", "unknown secret '{{ secrets.api_kee }}'",
     "did you mean 'api_key'?"),
    ("undefined-variable", "flow", 'page: "{{ page }}"', 'page: "{{ pgae }}"',
     "flow", "pgae", "steps[0].request.query.page", "unknown variable '{{ pgae }}'", "'page'"),
    ("variable-missing-in-an-environment", "flow", "variables: {region: us}", "variables: {}",
     "flow", "query: {page", "steps[0].request.query.region",
     "variable 'region' is not declared in every environment", "in staging but not in prod"),
    ("capture-used-before-defined", "flow", 'headers: {X-CSRF: "{{ csrf }}"}',
     'headers: {X-Order: "{{ order_id }}"}',
     "flow", "X-Order", "steps[0].request.headers.X-Order",
     "'order_id' is used before step 'create' captures it", "steps before it"),
    ("capture-used-in-its-own-step", "flow", 'url: "{{ base_url }}/api/orders"',
     'url: "{{ base_url }}/api/orders/{{ order_id }}"',
     "flow", "/api/orders/{{ order_id }}", "steps[1].request.url", "used before step 'create'",
     None),
    ("duplicate-step", "flow", "  - name: delete", "  - name: list # again",
     "flow", "# again", "finally[0].name", "duplicate step name 'list'",
     "already used on line 27"),
    ("bad-duration", "flow", "timeout: 2s\n", "timeout: 2 secs\n",
     "flow", "timeout: 2 secs", "steps[0].request.timeout", "expected a duration", "30s"),
    ("zero-duration", "flow", "timeout: 2s\n", "timeout: 0s\n",
     "flow", "timeout: 0s", "steps[0].request.timeout", "greater than zero", None),
    ("two-bodies", "flow", "      auth: none\n", "      auth: none\n      form: {a: b}\n",
     "flow", "form: {a: b}", "steps[1].request.form",
     "at most one body; 'form' and 'json' are both set", "keep one"),
    ("schema-file-missing", "flow", "{schema: {type: object, required: [orders]}}",
     "{schema: schemas/orders.json}",
     "flow", "schemas/orders.json", "steps[0].assert[4].schema",
     "schema file not found: schemas/orders.json", "relative to the flow file"),
    ("schema-invalid", "flow", "{schema: {type: object, required: [orders]}}",
     "{schema: {type: objekt}}",
     "flow", "objekt", "steps[0].assert[4].schema", "invalid JSON Schema at type", None),
    ("schema-key-typo", "flow", "{schema: {type: object, required: [orders]}}",
     "{shema: {type: object}}",
     "flow", "shema", "steps[0].assert[4].shema", "unknown assertion key", "'schema'"),
    ("unclosed-template", "flow", "url: /api/orders\n", "url: /api/{{ page\n",
     "flow", "url: /api/{{ page", "steps[0].request.url", "never closed", None),
    ("latency-without-unit", "flow", "- latency < 500ms", "- latency < 500",
     "flow", "latency < 500", "steps[0].assert[3]", "has no unit", "500ms or 500s"),
    ("unquoted-value", "flow", 'contains "json"', "contains json",
     "flow", "contains json", "steps[0].assert[1]", "unquoted text 'json'", '"json"'),
    ("status-not-a-number", "flow", "- status == 200", '- status == "200"',
     "flow", 'status == "200"', "steps[0].assert[0]", "status code is a number", None),
    ("in-needs-a-list", "flow", "status in [200, 201]", "status in 200",
     "flow", "status in 200", "steps[1].assert[0]", "'in' needs a non-empty list", None),
    ("exists-takes-no-value", "flow", 'cookie "sid" exists', 'cookie "sid" exists "x"',
     "flow", 'cookie "sid"', "steps[1].assert[1]", "'exists' takes no value", None),
    ("latency-cannot-contain", "flow", "- latency < 500ms", '- latency contains "5"',
     "flow", "latency contains", "steps[0].assert[3]", "'latency' cannot use 'contains'", None),
    ("jitter-not-below-interval", "flow", "jitter: 5s", "jitter: 1m",
     "flow", "schedule:", "schedule.jitter", "shorter than the interval", None),
    ("timeout-over-interval", "flow", "timeout: 20s,", "timeout: 2m,",
     "flow", "schedule:", "schedule.timeout", "must not exceed the interval", None),
    ("unknown-version", "flow", "versions: [stable, canary]", "versions: [stable, canry]",
     "flow", "schedule:", "schedule.versions[1]", "unknown version 'canry'", "'canary'"),
    ("bad-method", "flow", "method: post", "method: FETCH",
     "flow", "method: FETCH", "steps[1].request.method", "unknown method 'FETCH'", None),
    ("retry-on", "flow", "on: any}", "on: anny}",
     "flow", "retry:", "steps[0].retry.on", "unknown retry condition", "'any'"),
    ("no-environments", "flow",
     "  staging:\n    base_url: http://127.0.0.1:8080/\n    variables: {region: eu}\n"
     "  prod:\n    base_url: https://shop.example.com\n    variables: {region: us}\n"
     "    secrets: {client_secret: {env: PROD_SECRET}}\n",
     "  {}\n", "flow", "environments:", "environments", "at least one environment", None),
    ("bad-base-url", "flow", "base_url: https://shop.example.com", "base_url: shop.example.com",
     "flow", "base_url: shop", "environments.prod.base_url", "invalid base_url", "http://"),
    ("inline-secret", "flow", "api_key: {env: SHOP_API_KEY}", "api_key: hunter2",
     "flow", "api_key: ", "secrets.api_key", "never written inline", "{env: VARIABLE}"),
    ("reserved-variable", "flow", "  page: \"1\"", "  uuid: \"1\"",
     "flow", "uuid:", "variables.uuid", "'uuid' is a reserved name", None),
    ("capture-shadows-variable", "flow", "loc: {header: Location}", "page: {header: Location}",
     "flow", "page: {header", "steps[1].extract.page", "same name as a variable", None),
    ("extract-two-sources", "flow", "loc: {header: Location}", "loc: {header: L, cookie: c}",
     "flow", "loc: {header", "steps[1].extract.loc", "exactly one source, found header and cookie",
     None),
    ("wrong-kind", "flow", "kind: ProbeFlow", "kind: ProbeFlows",
     "flow", "kind:", "kind", "unknown kind 'ProbeFlows'", "'ProbeFlow'"),
    ("wrong-api-version", "flow", "apiVersion: coalmine.dev/v1", "apiVersion: coalmine.dev/v2",
     "flow", "apiVersion", "apiVersion", "unknown apiVersion", "coalmine.dev/v1"),
    ("session-variable-missing", "flow", "  web_user: bot\n", "",
     "lib", "form: {username", "sessions.web-login.steps[0].request.form.username",
     "unknown variable '{{ web_user }}'", "checked for the flow"),
    ("library-unknown-auth-type", "lib", "type: api_key", "type: apikey",
     "lib", "type: apikey", "auth.shop-key.type", "unknown auth type 'apikey'", "'api_key'"),
    ("library-missing-setting", "lib", "    token_url: /oauth/token\n", "",
     "lib", "shop-oauth:", "auth.shop-oauth", "missing required field 'token_url'", None),
    ("library-bad-setting", "lib", "    scopes: [orders.read]", "    scope: [orders.read]",
     "lib", "scope:", "auth.shop-oauth.scope", "unknown oauth2_client_credentials setting",
     "'scopes'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "old", "new", "err_file", "needle", "field", "message", "hint"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path,
    target: str,
    old: str,
    new: str,
    err_file: str,
    needle: str,
    field: str,
    message: str | None,
    hint: str | None,
) -> None:
    flow, lib = FLOW, LIB
    if target == "flow":
        flow = replace_once(flow, old, new)
    else:
        lib = replace_once(lib, old, new)
    path = write(tmp_path, flow, lib)
    with pytest.raises(SpecError) as caught:
        load_flow(path)
    err = caught.value
    file = str(path) if err_file == "flow" else str(path.parent / "lib" / "auth.yaml")
    line = line_of(flow if err_file == "flow" else lib, needle)
    assert (err.file, err.line, err.field) == (file, line, field), err.one_line()
    assert err.one_line().startswith(f"{file}:{line}: {field}: ")
    if message is not None:
        assert message in err.message, err.one_line()
    if hint is not None:
        assert err.hint is not None and hint in err.hint, err.one_line()


def test_library_secret_missing_names_the_secret(tmp_path: Path) -> None:
    path = write(tmp_path, FLOW.replace("secrets:\n  api_key: {env: SHOP_API_KEY}\n", ""))
    flow = replace_once(path.read_text(), "auth: shop-oauth\n", "auth: shop-key\n")
    path.write_text(flow)
    with pytest.raises(SpecError, match=r"unknown secret '\{\{ secrets.api_key \}\}'") as caught:
        load_flow(path)
    # reported where the library uses it, in the scope of the flow that uses the scheme
    assert caught.value.file == str(tmp_path / "lib" / "auth.yaml")
    assert caught.value.line == line_of(LIB, 'value: "{{ secrets.api_key }}"')
    assert caught.value.field == "auth.shop-key.value"


def test_uses_a_flow_instead_of_a_library(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / "lib" / "other.yaml").write_text(FLOW)
    path.write_text(replace_once(FLOW, "uses: [lib/auth.yaml]", "uses: [lib/other.yaml]"))
    with pytest.raises(SpecError) as caught:
        load_flow(path)
    assert caught.value.line == line_of(FLOW, "uses:")
    assert "is a ProbeFlow, not a ProbeLibrary" in caught.value.message


def test_two_libraries_defining_one_auth_name(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / "lib" / "copy.yaml").write_text(LIB.replace("name: shop-auth", "name: copy"))
    path.write_text(
        replace_once(FLOW, "uses: [lib/auth.yaml]", "uses: [lib/auth.yaml, lib/copy.yaml]")
    )
    with pytest.raises(SpecError) as caught:
        load_flow(path)
    assert caught.value.file == str(tmp_path / "lib" / "copy.yaml")
    assert "defined in two used libraries" in caught.value.message


def test_no_steps(tmp_path: Path) -> None:
    start = FLOW.index("steps:\n")
    end = FLOW.index("finally:")
    text = FLOW[:start] + "steps: []\n" + FLOW[end:]
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_flow(path)
    assert (caught.value.line, caught.value.field) == (line_of(text, "steps: []"), "steps")
    assert "at least one step" in caught.value.message


def test_tls_ca_is_resolved_and_must_exist(tmp_path: Path) -> None:
    text = replace_once(FLOW, "      timeout: 2s\n", "      timeout: 2s\n      tls: {ca: ca.pem}\n")
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=r"CA file not found: ca\.pem"):
        load_flow(path)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    flow = load_flow(path)
    assert flow.steps[0].request.tls.ca_file == str(tmp_path / "ca.pem")


def test_collect_reports_every_broken_file(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "bad-a.yaml").write_text(replace_once(FLOW, "- status == 200", "- status = 200"))
    (tmp_path / "bad-b.yaml").write_text(replace_once(FLOW, "name: shop-canary", "name: Shop!"))
    (tmp_path / "lib" / "broken.yaml").write_text(LIB.replace("type: api_key", "type: nope"))
    errors = collect_flow_errors([tmp_path])
    files = sorted(Path(str(e.file)).name for e in errors)
    assert files == ["bad-a.yaml", "bad-b.yaml", "broken.yaml"]
    assert all(e.line for e in errors)


def test_a_broken_library_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path, lib=LIB.replace("type: api_key", "type: nope"))
    (tmp_path / "second.yaml").write_text(FLOW.replace("name: shop-canary", "name: two"))
    errors = collect_flow_errors([tmp_path])
    assert [Path(str(e.file)).name for e in errors] == ["auth.yaml"]


def test_two_flows_with_one_name(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "same.yaml").write_text(FLOW)
    (err,) = collect_flow_errors([tmp_path])
    assert (Path(str(err.file)).name, err.field) == ("same.yaml", "metadata.name")
    assert "flow name 'shop-canary' is already used" in err.message


def test_a_file_reached_twice_is_loaded_once(tmp_path: Path) -> None:
    flow = write(tmp_path)
    assert collect_flow_errors([flow, flow]) == []
    assert [f.name for f in load_flows([flow, tmp_path])] == ["shop-canary"]
    assert [f.name for f in load_flows([tmp_path, tmp_path / "." / flow.name])] == ["shop-canary"]


@pytest.mark.parametrize("what", ["empty-dir", "only-lib", "other-files"])
def test_no_flows_found_is_an_error(tmp_path: Path, what: str) -> None:
    if what == "only-lib":
        write(tmp_path)
        (tmp_path / "flow.yaml").unlink()
    elif what == "other-files":
        (tmp_path / "notes.txt").write_text("not a flow")
    (err,) = collect_flow_errors([tmp_path])
    assert err.message == f"no flows found in {tmp_path}"
    assert err.hint and "directly inside the directories" in err.hint
    with pytest.raises(SpecError, match="no flows found"):
        load_flows([tmp_path])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_flow(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- assertions


@pytest.mark.parametrize(
    ("text", "subject", "arg", "negate", "operator", "value"),
    [
        ("status == 200", "status", None, False, "==", 200),
        ("status>=200", "status", None, False, ">=", 200),
        ("status not in [500, 502]", "status", None, True, "in", [500, 502]),
        ("header 'X-Id' matches '^[0-9]+$'", "header", "X-Id", False, "matches", "^[0-9]+$"),
        ('header "Content-Length" > 0', "header", "Content-Length", False, ">", 0),
        ('jsonpath "$.ok" == true', "jsonpath", "$.ok", False, "==", True),
        ('jsonpath "$.gone" == null', "jsonpath", "$.gone", False, "==", None),
        ('jsonpath "$.n" <= 2.5', "jsonpath", "$.n", False, "<=", 2.5),
        ('jsonpath "$.tags" contains "a"', "jsonpath", "$.tags", False, "contains", "a"),
        ('jsonpath "$.err" not exists', "jsonpath", "$.err", True, "exists", None),
        ("body isEmpty", "body", None, False, "isEmpty", None),
        ("flow_latency < 1m30s", "flow_latency", None, False, "<", 90.0),
        ('cookie "a b" exists', "cookie", "a b", False, "exists", None),
    ],
)
def test_assertion_strings(
    text: str, subject: str, arg: str | None, negate: bool, operator: str, value: object
) -> None:
    a = parse_assertion(text)
    assert (a.subject, a.arg, a.negate, a.operator, a.value, a.text) == (
        subject,
        arg,
        negate,
        operator,
        value,
        text,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot read assertion"),
        ("header == 1", "'header' needs a quoted name"),
        ('header "X', "unterminated"),
        ("status", "missing operator"),
        ("status ==", "'==' needs a value"),
        ('status == {"a": 1}', "cannot compare"),
        ("status == 2024-01-01", "cannot read the value"),
        ('jsonpath "$.x" < "a"', "compares numbers"),
        ("schema == 1", "mapping form"),
        ("status in []", "non-empty list"),
        ('body == ["a", b]', "unquoted text 'b'"),
    ],
)
def test_bad_assertion_strings(text: str, message: str) -> None:
    with pytest.raises(AssertionSyntaxError, match=message):
        parse_assertion(text)


# --------------------------------------------------------------------------- template refs


def test_references_in_order() -> None:
    text = "{{base_url}}/o/{{ order_id }}?k={{  secrets.key }}&u={{ env.USER }}&x={{uuid}}"
    assert references(text) == ["base_url", "order_id", "secrets.key", "env.USER", "uuid"]
    first = spans(text)[0]
    assert text[first.start : first.end] == "{{base_url}}"
    assert references("plain } text }} with no placeholders") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a {{ b", "never closed"),
        ("{{ a {{ b }}", "never closed"),
        ("{{ }}", "is not a name"),
        ("{{ a b }}", "is not a name"),
        ("{{ secrets. }}", "is not a name"),
        ("{{ vault.x }}", "is not a name"),
        ("{{ 1abc }}", "is not a name"),
    ],
)
def test_malformed_placeholders(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        references(text)
