"""`coalmine validate` and `coalmine schema`, called in-process."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from coalmine.cli import spec_cmds
from tests.support.cli_env import command_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def make_app() -> typer.Typer:
    return command_app(spec_cmds.register)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(make_app(), list(args))
    return result.exit_code, result.output


def test_validate_examples_ok() -> None:
    code, out = run(
        "validate", str(EXAMPLES / "rollouts.yaml"), "--config", str(EXAMPLES / "coalmine.yaml")
    )
    assert (code, out) == (0, "ok: 1 rollouts, 2 templates\n")


def test_validate_prints_one_line_per_problem(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: a}\n"
        "spec:\n  strategy:\n    canary:\n      steps:\n        - setWeight: 120\n"
    )
    b = tmp_path / "b.yaml"
    b.write_text("kind: [\n")
    code, out = run("validate", str(a), str(b))
    assert code == 2
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{b}:2: malformed YAML")
    assert lines[1].startswith(f"{a}:8: spec.strategy.canary.steps[0].setWeight: ")
    assert "(hint: " in lines[1]
    assert "Traceback" not in out


def test_validate_reports_runnable_problems_as_json(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\n"
        "metadata: {name: t}\nspec:\n  metrics:\n    - name: m\n"
        "      provider: {job: {spec: {}}}\n"
    )
    code, out = run("validate", str(path), "--json")
    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False
    (problem,) = report["problems"]
    assert problem["file"] == str(path)
    assert problem["line"] == 6
    assert problem["message"] == "provider 'job' is not supported yet"
    assert problem["notSupported"] is True


def test_validate_checks_the_service_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "coalmine.yaml"
    config.write_text((EXAMPLES / "coalmine.yaml").read_text().replace("shop:", "cart:"))
    code, out = run("validate", str(EXAMPLES / "rollouts.yaml"), "--config", str(config))
    assert code == 2
    assert "service 'shop' is not in environment 'local'" in out


def test_missing_file(tmp_path: Path) -> None:
    code, out = run("validate", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert out == f"{tmp_path / 'nope.yaml'}: file not found (hint: check the path)\n"


def test_schema_command(tmp_path: Path) -> None:
    code, out = run("schema", "config")
    assert code == 0
    assert json.loads(out)["title"] == "coalmine.yaml"
    target = tmp_path / "rollout.json"
    code, _ = run("schema", "rollout", "--output", str(target))
    assert code == 0
    assert json.loads(target.read_text())["title"] == "coalmine Rollout"
    code, out = run("schema", "pipeline")
    assert code == 2
    assert "unknown schema 'pipeline'" in out
    assert "Traceback" not in out


def test_schema_help_lists_every_kind_it_prints() -> None:
    code, out = run("schema", "--help")
    flat = " ".join(out.replace("│", " ").split())
    assert code == 0
    for kind in ("rollout", "analysis-template", "config", "replay-data", "probe-flow", "slos"):
        assert kind in flat
        assert run("schema", kind)[0] == 0
