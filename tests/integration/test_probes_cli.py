"""``coalmine probes ...`` and the ``syntheticsctl`` console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "synthetics"
SYNTHETICSCTL = Path(sys.executable).parent / "syntheticsctl"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYNTHETICSCTL), *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_validate_the_examples_with_syntheticsctl() -> None:
    done = run("validate", str(EXAMPLES / "maestro-api-canary.yaml"))
    assert done.returncode == 0, done.stderr
    assert "ok: 1 flow(s) valid: maestro-api-canary" in done.stdout


def test_validate_names_file_line_and_field_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: coalmine.dev/v1\nkind: ProbeFlow\nmetadata: {name: x, service: s}\n"
        "environments: {staging: {base_url: 'http://127.0.0.1:1'}}\n"
        "steps:\n  - name: a\n    request: {method: GET, url: /}\n"
        "    assert: ['status =! 200']\n"
    )
    done = run("validate", str(bad))
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith(f"{bad}:8: steps[0].assert[0]:"), line
    assert "Traceback" not in done.stderr
    report = json.loads(run("validate", "--json", str(bad)).stdout)
    assert report["ok"] is False and report["errors"][0]["line"] == 8


def test_lint_findings_exit_1_and_clean_examples_exit_0(tmp_path: Path) -> None:
    assert run("lint", str(EXAMPLES)).returncode == 0
    flow = tmp_path / "loose.yaml"
    flow.write_text(
        "apiVersion: coalmine.dev/v1\nkind: ProbeFlow\nmetadata: {name: loose, service: s}\n"
        "environments: {staging: {base_url: 'http://127.0.0.1:1'}}\n"
        "steps:\n  - name: a\n    request:\n      method: GET\n      url: /\n"
        "      headers: {Authorization: 'Bearer abc123secret'}\n"
    )
    done = run("lint", str(flow))
    assert done.returncode == 1
    rules = {f["rule"] for f in json.loads(run("lint", "--json", str(flow)).stdout)["findings"]}
    assert {"no-assertions", "no-slo", "plaintext-secret"} <= rules
    assert "abc123secret" not in done.stdout  # lint never repeats the secret it found
