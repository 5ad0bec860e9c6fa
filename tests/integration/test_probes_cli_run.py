"""What users run: ``syntheticsctl run|replay`` and ``coalmine probes serve`` as subprocesses,
against the real probe application on loopback, with the examples of ``examples/synthetics``."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.probe_app import ProbeApp

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "synthetics"
BIN = Path(sys.executable).parent
SYNTHETICSCTL = str(BIN / "syntheticsctl")
COALMINE = str(BIN / "coalmine")
EXAMPLE_URL = "http://127.0.0.1:8080"


# --------------------------------------------------------------------------- helpers


def secret_env(app: ProbeApp) -> dict[str, str]:
    """Fresh secrets for this test, known to the app and exported as the examples expect."""
    values = {
        "MAESTRO_CLIENT_SECRET": "cs-" + secrets.token_hex(12),
        "MAESTRO_API_KEY": "ak-" + secrets.token_hex(12),
        "MAESTRO_WEB_PASSWORD": "pw-" + secrets.token_hex(12),
    }
    app.state.client_id = "maestro-probes"  # examples/synthetics/lib/maestro-auth.yaml
    app.state.client_secret = values["MAESTRO_CLIENT_SECRET"]
    app.state.api_key = values["MAESTRO_API_KEY"]
    app.state.users = {"probe-bot": values["MAESTRO_WEB_PASSWORD"]}
    return values


def example_flows(tmp_path: Path, app: ProbeApp) -> Path:
    """A copy of the examples whose staging base_url points at the app."""
    flows = tmp_path / "synthetics"
    shutil.copytree(EXAMPLES, flows)
    for path in flows.rglob("*.yaml"):
        text = path.read_text()
        path.write_text(text.replace(EXAMPLE_URL, app.url))
    return flows


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, exe: str = SYNTHETICSCTL
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}), "NO_COLOR": "1"}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=60
    )


def leaked(app: ProbeApp, env: dict[str, str]) -> set[str]:
    """Every secret value of this test: the exported ones and what the app handed out
    (OAuth tokens, session cookies, CSRF tokens captured with ``secret: true``)."""
    values = set(env.values()) | set(app.state.tokens)
    for session_id, (_, csrf) in app.state.sessions.items():
        values |= {session_id, csrf}
    return values


def assert_no_secrets(text: str, values: set[str]) -> None:
    assert values, "the test should know some secrets"
    for value in values:
        assert value not in text, f"a secret ({value[:3]}…) leaked"


def one_line_error(done: subprocess.CompletedProcess[str], prefix: str = "syntheticsctl") -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{prefix}: error: "), lines[0]
    return lines[0]


FAILING_FLOW = """\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {name: failing-checkout, service: maestro-api, owner: team-maestro}
slo: maestro-api-availability
schedule: {interval: 1m, timeout: 10s}
environments:
  staging: {base_url: "URL"}
steps:
  - name: checkout
    request: {url: /fail, query: {status: "500"}, timeout: 2s}
    assert: ["status == 200", "latency < 2s"]
  - name: receipt
    request: {url: /slow, query: {ms: "1"}, timeout: 2s}
    assert: ["status == 200"]
"""


# --------------------------------------------------------------------------- run


def test_run_the_example_flows_prints_steps_phases_and_assertions(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    env = secret_env(probe_app)
    flows = example_flows(tmp_path, probe_app)
    done = cli(
        "run",
        str(flows / "maestro-api-canary.yaml"),
        str(flows / "rollback-chaos-lite.yaml"),
        "--env",
        "staging",
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "maestro-api-canary on staging: passed" in out
    assert "rollback-chaos-lite on staging: passed" in out
    header = next(line for line in out.splitlines() if line.startswith("step "))
    for column in ("result", "status", "resolve", "connect", "tls", "processing", "transfer"):
        assert column in header
    # table rows: step, result, status, five phases and the total, all shown in full
    rows = {p[0]: p for line in out.splitlines() if len(p := line.split()) == 9}
    for step in ("list-orders", "create-order", "get-order", "web-login/login", "baseline"):
        assert rows[step][1:3] in (["ok", "200"], ["ok", "201"]), rows[step]
        assert all(float(ms) >= 0 for ms in rows[step][3:]), rows[step]
    assert float(rows["slow-dependency"][6]) >= 300  # processing: /slow?ms=300
    assert "finally: delete-order" in out
    assert "✓ schema schemas/order.schema.json" in out
    assert '✓ header "Content-Type" contains "json"' in out
    assert '✓ cookie "session" exists' in out
    assert "✓ latency >= 300ms" in out  # the slow dependency, really slow
    # the flows did their job against the app: one token for both runs, orders cleaned up
    assert probe_app.state.token_calls == 1
    assert probe_app.state.orders == {}
    assert_no_secrets(done.stdout + done.stderr, leaked(probe_app, env))


def test_run_json_parses_and_keeps_secrets_out(probe_app: ProbeApp, tmp_path: Path) -> None:
    env = secret_env(probe_app)
    flows = example_flows(tmp_path, probe_app)
    done = cli("run", str(flows), "--env", "staging", "--json", env=env)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert {r["flow"] for r in results} == {"maestro-api-canary", "rollback-chaos-lite"}
    for result in results:
        assert result["success"] is True and result["environment"] == "staging"
        for step in result["steps"]:
            final = step["attempts"][-1]
            assert final["status"] is not None and set(final["timing"]) >= {"connect", "tls"}
    chaos = next(r for r in results if r["flow"] == "rollback-chaos-lite")
    assert chaos["steps"][0]["name"] == "web-login/login"
    assert_no_secrets(done.stdout + done.stderr, leaked(probe_app, env))


def test_a_failing_flow_exits_1_and_shows_the_failed_assertion(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flow = tmp_path / "failing.yaml"
    flow.write_text(FAILING_FLOW.replace("URL", probe_app.url))
    done = cli("probes", "run", str(flow), "--env", "staging", exe=COALMINE)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failing-checkout on staging: FAILED (assertion)" in done.stdout
    assert "✗ status == 200 — got 500" in done.stdout
    assert "✓ latency < 2s" in done.stdout
    receipt = next(line for line in done.stdout.splitlines() if line.startswith("receipt"))
    assert "skipped" in receipt  # a failed critical step stops the journey
    report = json.loads(cli("run", str(flow), "--env", "staging", "--json").stdout)
    assert report[0]["success"] is False
    assert report[0]["failed_step"] == "checkout" and report[0]["reason"] == "assertion"


def test_run_pinned_to_a_version_sends_the_override_header(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flow = tmp_path / "pinned.yaml"
    flow.write_text(
        FAILING_FLOW.replace("URL", probe_app.url).split("steps:")[0]
        + "steps:\n  - name: which\n    request: {url: /version, timeout: 2s}\n"
        + '    assert: [\'jsonpath "$.version" == "canary"\']\n'
    )
    done = cli("run", str(flow), "--env", "staging", "--version", "canary")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failing-checkout on staging, pinned to canary: passed" in done.stdout
    assert probe_app.state.versions_seen == ["canary"]


# --------------------------------------------------------------------------- record / replay


def test_record_then_replay_reports_drift(probe_app: ProbeApp, tmp_path: Path) -> None:
    env = secret_env(probe_app)
    flow = str(example_flows(tmp_path, probe_app) / "maestro-api-canary.yaml")
    rec = tmp_path / "rec.json"
    done = cli("run", flow, "--env", "staging", "--record", str(rec), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    recording = json.loads(rec.read_text())
    assert set(recording["steps"]) == {"list-orders", "create-order", "get-order", "delete-order"}
    assert recording["steps"]["list-orders"]["body"]["orders"] == []
    assert_no_secrets(rec.read_text() + done.stderr, leaked(probe_app, env))

    # an order somebody else made: the list is no longer empty, yet its shape did not drift
    probe_app.state.orders["ord-other"] = {"id": "ord-other", "sku": "x", "quantity": 2}
    done = cli("replay", flow, "--env", "staging", "--recording", str(rec), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no drift: 4 step(s) match the recording" in done.stdout

    # the API changed under the probes: quantity became a string, status is new
    get_order = recording["steps"]["get-order"]["body"]
    get_order["quantity"] = "1"
    del recording["steps"]["create-order"]["body"]["status"]
    rec.write_text(json.dumps(recording))
    done = cli("replay", flow, "--env", "staging", "--recording", str(rec), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert "get-order: $.quantity changed from string to number" in lines
    assert "create-order: $.status appeared (string)" in lines
    assert len(lines) == 2, lines
    report = json.loads(
        cli("replay", flow, "-e", "staging", "--recording", str(rec), "--json", env=env).stdout
    )
    assert {(c["step"], c["kind"], c["path"]) for c in report["drift"]} == {
        ("get-order", "type-changed", "$.quantity"),
        ("create-order", "appeared", "$.status"),
    }


def test_bad_recordings_and_flags_are_one_line_errors(probe_app: ProbeApp, tmp_path: Path) -> None:
    env = secret_env(probe_app)
    flow = str(example_flows(tmp_path, probe_app) / "maestro-api-canary.yaml")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"version": 1, "steps": {"list-orders": ')
    line = one_line_error(cli("replay", flow, "-e", "staging", "--recording", str(corrupt)))
    assert f"cannot read recording {corrupt}" in line
    other = tmp_path / "other.json"
    other.write_text('{"hello": "world"}')
    line = one_line_error(cli("replay", flow, "-e", "staging", "--recording", str(other)))
    assert "is not a probe recording" in line and "run --record" in line

    line = one_line_error(cli("run", flow, "--env", "qa", env=env))
    assert "no environment 'qa'" in line and "pre-prod, prod, staging" in line
    line = one_line_error(cli("run", flow, "--env", "staging", "--version", "blue", env=env))
    assert "--version must be stable or canary" in line
    line = one_line_error(
        cli("probes", "replay", flow, "-e", "staging", "--recording", "no.json", exe=COALMINE),
        prefix="coalmine",
    )
    assert "recording no.json not found" in line
    assert probe_app.state.requests == 0  # bad input never reaches the service
    unknown = cli("run", flow, "--env", "staging", "--frobnicate", env=env)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "--frobnicate" in unknown.stderr


# --------------------------------------------------------------------------- serve


SERVE_FLOW = """\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {name: heartbeat, service: maestro-api, owner: team-maestro}
slo: maestro-api-availability
schedule: {interval: 2s, jitter: 0s, timeout: 2s, versions: [stable, canary]}
secrets: {api_key: {env: MAESTRO_API_KEY}}
environments:
  staging: {base_url: "URL"}
steps:
  - name: list
    request:
      url: /api/orders
      headers: {X-API-Key: "{{ secrets.api_key }}"}
      timeout: 1s
    assert: ["status == 200"]
  - name: slow
    request: {url: /slow, query: {ms: "SLOW_MS"}, timeout: 1500ms}
    assert: ["status == 200"]
"""
INTERVAL = 2.0
SLOW_MS = 300
TARGETS = {("heartbeat", "stable"), ("heartbeat", "canary")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """``coalmine probes serve`` in a subprocess."""

    def __init__(self, flows: Path, db: Path, jsonl: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = jsonl.with_suffix(f".{self.port}.log")
        args = [COALMINE, "probes", "serve", str(flows), "--env", "staging"]
        args += ["--listen", f"127.0.0.1:{self.port}", "--database-url", f"sqlite:///{db}"]
        args += ["--jsonl", str(jsonl)]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
            )

    def wait_healthy(self, timeout: float = 15.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.time()
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve did not become healthy: {self.log.read_text()}")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5)

    def terminate(self, timeout: float = 5.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@contextmanager
def serving(flows: Path, db: Path, jsonl: Path, env: dict[str, str]) -> Iterator[Serve]:
    serve = Serve(flows, db, jsonl, env)
    try:
        yield serve
    finally:
        serve.kill()


def jsonl_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def serve_setup(probe_app: ProbeApp, tmp_path: Path, slow_ms: int) -> tuple[Path, dict[str, str]]:
    env = secret_env(probe_app)
    flows = tmp_path / "synthetics"
    flows.mkdir()
    text = SERVE_FLOW.replace("URL", probe_app.url).replace("SLOW_MS", str(slow_ms))
    (flows / "heartbeat.yaml").write_text(text)
    return flows, env


def test_serve_exports_results_and_resumes_after_restart_and_kill_without_a_burst(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flows, env = serve_setup(probe_app, tmp_path, slow_ms=SLOW_MS)
    db, out = tmp_path / "probes.db", tmp_path / "results.jsonl"
    with serving(flows, db, out, env) as serve:
        serve.wait_healthy()
        wait_for(
            lambda: {(r["flow"], r["version"]) for r in jsonl_results(out)} == TARGETS,
            3 * INTERVAL,
            "a run of each target",
        )
        check_metrics(serve)
        results = serve.get("/results?flow=heartbeat").json()
        assert results["source"] == "store" and results["results"]
        assert all(r["success"] for r in results["results"])
        sli = serve.get("/sli").json()
        assert sli["scheduled"] >= 2 and sli["on_time"] == sli["scheduled"]
        secret = env["MAESTRO_API_KEY"]
        assert secret not in serve.get("/metrics").text + json.dumps(results) + out.read_text()
        stopped = time.monotonic()
        assert serve.terminate() == 0
        assert time.monotonic() - stopped < 3.0
        assert "scheduled runs started on time" in serve.log.read_text()
    before = len(jsonl_results(out))
    time.sleep(2 * INTERVAL)  # slots fall while serve is down

    with serving(flows, db, out, env) as serve:
        serve.wait_healthy()
        wait_for(lambda: len(jsonl_results(out)) >= before + 2, 2 * INTERVAL, "resumed runs")
        time.sleep(0.8)  # a burst of catch-up runs would have shown by now
        assert_no_burst(jsonl_results(out)[before:])
        metrics = samples(serve.get("/metrics").text)
        missed = {k["reason"]: v for k, v in metrics["coalmine_probe_scheduler_runs_missed_total"]}
        assert missed["restart"] >= len(TARGETS)  # every target missed a slot or more
        assert missed["overlap"] == 0 and missed["late"] == 0
        # kill -9 while a run is going (it waits SLOW_MS for /slow after its first request)
        seen = probe_app.state.requests
        wait_for(lambda: probe_app.state.requests > seen, 2 * INTERVAL, "the next run to start")
        serve.kill()
    before = len(jsonl_results(out))

    with serving(flows, db, out, env) as serve:
        serve.wait_healthy()
        wait_for(lambda: len(jsonl_results(out)) >= before + 2, 2 * INTERVAL, "resumed runs")
        resumed = jsonl_results(out)[before:]
        assert all(r["success"] for r in resumed)
        assert_no_burst(resumed)
        assert serve.get("/healthz").status_code == 200
        assert serve.terminate() == 0


def check_metrics(serve: Serve) -> None:
    """blackbox_exporter's names and coalmine's counters, labelled per target."""
    metrics = samples(serve.get("/metrics").text)
    labels = {"flow": "heartbeat", "environment": "staging", "location": "local"}
    for version in ("stable", "canary"):
        mine = {**labels, "version": version}
        assert (mine, 1.0) in metrics["probe_success"]
        assert (mine, 200.0) in metrics["probe_http_status_code"]
        duration = [v for k, v in metrics["probe_duration_seconds"] if k == mine]
        assert duration and SLOW_MS / 1000 <= duration[0] < 2.0  # the slow step included
        phases = {
            k["phase"]: v
            for k, v in metrics["probe_http_duration_seconds"]
            if {n: k[n] for n in mine} == mine
        }
        assert set(phases) == {"resolve", "connect", "tls", "processing", "transfer"}
        assert phases["processing"] >= SLOW_MS / 1000  # /slow waits before its first byte
        assert next(v for k, v in metrics["coalmine_probe_runs_total"] if k == mine) >= 1
        assert [v for k, v in metrics["coalmine_probe_runs_failed_total"] if k == mine] == [0]
        steps = {
            k["step"] for k, _ in metrics["coalmine_probe_step_success"] if k["version"] == version
        }
        assert steps == {"list", "slow"}


def assert_no_burst(resumed: list[dict[str, Any]]) -> None:
    """After a restart each target runs at most once in its first second back, and its runs
    keep to the grid."""
    first = min(r["started_at"] for r in resumed)
    for target in TARGETS:
        starts = sorted(r["started_at"] for r in resumed if (r["flow"], r["version"]) == target)
        assert starts, f"{target} did not resume"
        assert sum(1 for s in starts if s < first + 1.0) <= 1, starts
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(g > 0.5 * INTERVAL for g in gaps), gaps
