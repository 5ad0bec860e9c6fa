"""Lint findings on probe flows: each rule fires at the right file:line, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalmine.probes.lint import RULES, Finding, lint_flow, lint_flows, lint_paths
from coalmine.probes.loader import load_flow
from coalmine.spec.yamlpos import read_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "synthetics"

LIB = """\
apiVersion: coalmine.dev/v1
kind: ProbeLibrary
metadata: {name: shop-auth}
secrets:
  client_secret: {env: SHOP_CLIENT_SECRET}
auth:
  shop-oauth:
    type: oauth2_client_credentials
    token_url: /oauth/token
    client_id: probes
    client_secret: "{{ secrets.client_secret }}"
"""

CLEAN = """\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {name: shop, service: shop}
slo: shop-availability
schedule: {interval: 1m, timeout: 20s}
uses: [lib/auth.yaml]
auth: shop-oauth
variables:
  tenant: acme
secrets:
  api_key: {env: SHOP_API_KEY}
environments:
  staging:
    base_url: http://127.0.0.1:8080
steps:
  - name: create
    request:
      method: POST
      url: /api/orders
      headers: {X-API-Key: "{{ secrets.api_key }}", X-Tenant: "{{ tenant }}"}
      json: {sku: a}
    extract:
      order_id: {jsonpath: "$.id"}
    assert:
      - status == 201
finally:
  - name: delete
    request: {method: DELETE, url: "/api/orders/{{ order_id }}"}
    assert:
      - status in [200, 204, 404]
"""


def write(tmp_path: Path, flow: str = CLEAN, lib: str = LIB, name: str = "flow.yaml") -> Path:
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "lib" / "auth.yaml").write_text(lib)
    path = tmp_path / name
    path.write_text(flow)
    return path


def line_of(text: str, needle: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert lines, f"{needle!r} not in the text"
    return lines[0]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def findings(tmp_path: Path, flow: str = CLEAN, lib: str = LIB) -> list[tuple[str, str, int]]:
    path = write(tmp_path, flow, lib)
    return [(f.rule, Path(f.file).name, f.line) for f in lint_flow(load_flow(path))]


def test_the_clean_flow_and_the_examples_have_no_findings(tmp_path: Path) -> None:
    assert findings(tmp_path) == []
    found, errors = lint_paths([EXAMPLES])
    assert [f.one_line() for f in found] == [] and errors == []


# (id, old, new, needle of the finding's line in the flow, rule)
CASES = [
    ("no-assertions", "    assert:\n      - status == 201\n", "",
     "- name: create", "no-assertions"),
    ("no-slo", "slo: shop-availability\n", "", "apiVersion", "no-slo"),
    ("plaintext-header", '{X-API-Key: "{{ secrets.api_key }}",', '{Authorization: "Bearer abc123",',
     "Authorization", "plaintext-secret"),
    ("header-from-env", '{X-API-Key: "{{ secrets.api_key }}",', '{X-API-Key: "{{ env.SHOP_KEY }}",',
     "X-API-Key", "plaintext-secret"),
    ("cookie-header", '{X-API-Key: "{{ secrets.api_key }}",', '{Cookie: "sid=42",',
     "Cookie", "plaintext-secret"),
    ("variable-named-like-a-password", "  tenant: acme\n",
     "  tenant: acme\n  db_password: hunter2\n",
     "db_password", "plaintext-secret"),
    ("json-field-token", "json: {sku: a}", "json: {sku: a, auth: {refresh_token: abc}}",
     "json: {sku", "plaintext-secret"),
    ("password-in-url", "url: /api/orders\n", "url: https://bot:pw@shop.example.com/api/orders\n",
     "bot:pw@", "plaintext-secret"),
    ("password-in-base-url", "base_url: http://127.0.0.1:8080",
     "base_url: http://bot:pw@127.0.0.1:8080", "bot:pw@", "plaintext-secret"),
    ("unused-capture", '/api/orders/{{ order_id }}"', '/api/orders/1"',
     "order_id: {jsonpath", "unused-capture"),
    ("tls-verify-off", "      json: {sku: a}\n",
     "      json: {sku: a}\n      tls: {verify: false}\n",
     "tls: {verify", "tls-verify-off"),
    ("step-timeout-exceeds-flow", "      json: {sku: a}\n",
     "      json: {sku: a}\n      timeout: 25s\n",
     "timeout: 25s", "step-timeout-exceeds-flow"),
    ("retry-not-idempotent", "    assert:\n      - status == 201\n",
     "    assert:\n      - status == 201\n    retry: {count: 1}\n",
     "retry:", "retry-not-idempotent"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "needle", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_fires_at_its_line(
    tmp_path: Path, old: str, new: str, needle: str, rule: str
) -> None:
    text = replace_once(CLEAN, old, new)
    assert findings(tmp_path, text) == [(rule, "flow.yaml", line_of(text, needle))]


@pytest.mark.parametrize(
    "url",
    [
        "/echo?password=hunter2",
        "/echo?page=2&api_key=k-123",
        "/echo?token=t-123#top",
        "/echo?access_token=at-123",
        "/echo?client_secret=cs-123",
        "https://bot:pw-123@shop.example.com/echo",
    ],
)
def test_a_credential_written_in_a_url_is_a_plaintext_secret(tmp_path: Path, url: str) -> None:
    text = replace_once(CLEAN, "url: /api/orders\n", f'url: "{url}"\n')
    assert findings(tmp_path, text) == [("plaintext-secret", "flow.yaml", line_of(text, url))]
    found = lint_flow(load_flow(tmp_path / "flow.yaml"))
    assert "123" not in found[0].one_line() and "hunter2" not in found[0].one_line()


def test_url_query_secrets_from_secrets_or_harmless_names_are_fine(tmp_path: Path) -> None:
    url = "/echo?token={{ secrets.api_key }}&page=2&tokens_left=3&password="
    assert findings(tmp_path, replace_once(CLEAN, "url: /api/orders\n", f'url: "{url}"\n')) == []
    base = "base_url: http://127.0.0.1:8080?api_key=k-123"
    text = replace_once(CLEAN, "base_url: http://127.0.0.1:8080", base)
    assert findings(tmp_path, text) == [("plaintext-secret", "flow.yaml", line_of(text, base))]


def test_no_timeout_needs_neither_schedule_nor_request_timeout(tmp_path: Path) -> None:
    text = replace_once(CLEAN, "schedule: {interval: 1m, timeout: 20s}", "schedule: {interval: 1m}")
    assert findings(tmp_path, text) == [
        ("no-timeout", "flow.yaml", line_of(text, "- name: create")),
        ("no-timeout", "flow.yaml", line_of(text, "- name: delete")),
    ]
    # a request timeout on each step is enough
    text = replace_once(text, "json: {sku: a}", "json: {sku: a}\n      timeout: 5s")
    text = replace_once(text, 'order_id }}"}', 'order_id }}", timeout: 5s}')
    assert findings(tmp_path, text) == []


def test_retry_on_any_with_latency(tmp_path: Path) -> None:
    text = replace_once(
        CLEAN,
        "    request: {method: DELETE",
        "    retry: {count: 2, on: any}\n    request: {method: DELETE",
    )
    text = replace_once(text, "- status in [200, 204, 404]", "- latency < 1s")
    assert findings(tmp_path, text) == [
        ("retry-masks-latency", "flow.yaml", line_of(text, "retry: {count: 2, on: any}"))
    ]


def test_secret_values_through_captures_and_variables(tmp_path: Path) -> None:
    # a header fed by a variable that holds a secret reference: fine
    text = replace_once(
        CLEAN, "  tenant: acme\n", '  tenant: acme\n  key: "{{ secrets.api_key }}"\n'
    )
    text = replace_once(text, '{X-API-Key: "{{ secrets.api_key }}",', '{X-API-Key: "k-{{ key }}",')
    assert findings(tmp_path, text) == []
    # a token captured without secret: true and sent as Authorization: not redacted
    text = replace_once(
        CLEAN,
        'order_id: {jsonpath: "$.id"}',
        'order_id: {jsonpath: "$.id"}\n      tok: {jsonpath: "$.t"}',
    )
    text = replace_once(
        text,
        "request: {method: DELETE,",
        'request: {headers: {Authorization: "Bearer {{ tok }}"}, method: DELETE,',
    )
    assert findings(tmp_path, text) == [
        ("plaintext-secret", "flow.yaml", line_of(text, "Authorization"))
    ]
    # a URL password from a secret: fine
    text2 = replace_once(
        CLEAN, "url: /api/orders\n", 'url: "http://bot:{{ secrets.api_key }}@h/x"\n'
    )
    assert findings(tmp_path, text2) == []
    # the same capture marked secret: fine
    text = replace_once(text, 'tok: {jsonpath: "$.t"}', 'tok: {jsonpath: "$.t", secret: true}')
    assert findings(tmp_path, text) == []


def test_plaintext_secret_in_a_library_is_reported_in_the_library(tmp_path: Path) -> None:
    lib = replace_once(LIB, 'client_secret: "{{ secrets.client_secret }}"', "client_secret: s3cr3t")
    assert findings(tmp_path, lib=lib) == [
        ("plaintext-secret", "auth.yaml", line_of(lib, "client_secret: s3cr3t"))
    ]
    # two flows sharing the library: reported once
    write(tmp_path, CLEAN.replace("name: shop,", "name: shop-2,"), lib, name="two.yaml")
    found, errors = lint_paths([tmp_path])
    assert errors == []
    assert [(f.rule, Path(f.file).name) for f in found] == [("plaintext-secret", "auth.yaml")]
    assert found[0].severity == "error"


def test_findings_print_on_one_line(tmp_path: Path) -> None:
    text = replace_once(CLEAN, "slo: shop-availability\n", "")
    path = write(tmp_path, text)
    flow = load_flow(path)
    (finding,) = lint_flow(flow)
    assert finding.one_line() == (
        f"{path}:1: warning: flow 'shop' has no slo: binding; its failures count against no "
        "error budget [no-slo]"
    )
    assert finding.as_dict()["rule"] == "no-slo" and finding.rule in RULES
    # the parsed document can be passed in instead of being read again
    raw = read_documents(path)[0].data
    assert lint_flow(flow, raw) == [finding]
    assert lint_flows([flow, flow]) == [finding]


def test_finding_order_is_by_file_and_line() -> None:
    a = Finding("a.yaml", 9, "no-slo", "x")
    b = Finding("a.yaml", 10, "no-slo", "x")
    assert sorted([b, a]) == [a, b]
