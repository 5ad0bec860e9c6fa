"""The coalmine/judge plug-in's configuration and how its verdicts become measurements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coalmine.analysis.judge import JudgeVerdict
from coalmine.analysis.types import Phase
from coalmine.metrics.judge import JudgeConfigError, parse_judge_config, to_result
from coalmine.spec.loader import load_bundle, load_text
from coalmine.spec.resolve import check_runnable

TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: t}}
spec:
  metrics:
    - name: judge
      interval: 10s
      provider:
        plugin:
          coalmine/judge:
{body}
"""


def test_camel_case_fields_become_the_spec() -> None:
    spec = parse_judge_config(
        {
            "alpha": 0.005,
            "passScore": 80,
            "earlyPass": True,
            "groupWeights": {"errors": 2},
            "capWindowSeconds": 30,
            "metrics": [
                {
                    "name": "e",
                    "kind": "ratio",
                    "relativeTolerance": 2,
                    "critical": True,
                    "minSamples": 10,
                    "noData": "fail",
                },
                {
                    "name": "l",
                    "kind": "latency",
                    "quantile": None,
                    "worse": "higher",
                    "alphaWeight": 0.5,
                },
            ],
        }
    )
    assert spec.alpha == 0.005 and spec.pass_score == 80 and spec.early_pass
    assert spec.group_weights == {"errors": 2.0} and spec.cap_window_seconds == 30.0
    errors, latency = spec.metrics
    assert (errors.relative_tolerance, errors.critical, errors.min_samples) == (2.0, True, 10)
    assert errors.no_data == "fail"
    assert latency.quantile is None and latency.alpha_weight == 0.5


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"metrics": []}, "at least one metric"),
        ({"metrics": [{"name": "e"}]}, "'kind' is required"),
        (
            {"metrics": [{"name": "e", "kind": "ratio", "relativeTolerence": 2}]},
            "did you mean 'relativeTolerance'",
        ),
        ({"metrics": [{"name": "e", "kind": "median"}]}, "is not one of ratio, latency"),
        (
            {"alpha": "low", "metrics": [{"name": "e", "kind": "ratio"}]},
            "alpha: expected a number, got 'low'",
        ),
        ({"metrics": [{"name": "e", "kind": "ratio"}, {"name": "e", "kind": "ratio"}]}, "unique"),
    ],
)
def test_bad_configs_name_the_field(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_judge_config(config)


RATIO = {"name": "e", "kind": "ratio"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"alpha": 0}, "alpha must be in (0, 1), got 0"),
        ({"alpha": -1}, "alpha must be in (0, 1), got -1"),
        ({"alpha": float("nan")}, "alpha must be in (0, 1), got nan"),
        ({"passScore": 500}, "pass_score must be from 0 to 100, got 500"),
        ({"marginalScore": -5}, "marginal_score must be from 0 to 100, got -5"),
        ({"metrics": [{**RATIO, "weight": 0}]}, "the weights sum to zero"),
        ({"groupWeights": {"default": 0}}, "the weights sum to zero"),
        ({"groupWeights": {"default": -1}}, "groupWeights.default: must be >= 0, got -1"),
        ({"metrics": [{**RATIO, "weight": float("nan")}]}, "weight must be a finite number"),
        ({"metrics": [{**RATIO, "relativeTolerance": -2}]}, "must be > 0, got -2"),
        ({"metrics": [{**RATIO, "absoluteTolerance": -2}]}, "must be >= 0, got -2"),
        ({"metrics": [{**RATIO, "minSamples": -3}]}, "min_samples must be >= 1, got -3"),
        ({"metrics": [{**RATIO, "bound": float("inf")}]}, "bound must be a finite number"),
        ({"capWindowSeconds": 0}, "cap_window_seconds must be > 0"),
    ],
)
def test_values_the_judge_cannot_use_are_refused_with_the_value(
    config: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        parse_judge_config({"metrics": [RATIO], **config})
    assert message in str(caught.value)


def test_a_zero_weight_is_fine_while_another_metric_counts() -> None:
    spec = parse_judge_config(
        {"metrics": [{**RATIO, "weight": 0}, {"name": "l", "kind": "latency", "group": "lat"}]}
    )
    assert [m.weight for m in spec.metrics] == [0.0, 1.0]


def test_validate_reports_a_bad_judge_config_with_file_and_line() -> None:
    body = "            metrics:\n              - {name: e, kind: ratio, minSample: 5}"
    bundle = load_text(TEMPLATE.format(body=body), file="t.yaml")
    (problem,) = check_runnable(bundle)
    assert (problem.file, problem.line) == ("t.yaml", 12)  # the field's own line, file or not
    assert problem.hint == "did you mean 'minSamples'?"


def verdict(kind: str) -> JudgeVerdict:
    return JudgeVerdict(verdict=kind, score=50.0, metrics=(), reason=f"because {kind}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "final", "phase"),
    [
        ("fail", False, Phase.FAILED),
        ("pass", True, Phase.SUCCESSFUL),
        ("marginal", True, Phase.INCONCLUSIVE),
        ("continue", False, Phase.RUNNING),
        ("no-data", False, Phase.RUNNING),
        ("no-data", True, Phase.INCONCLUSIVE),
    ],
)
def test_verdicts_become_measurement_phases(kind: str, final: bool, phase: Phase) -> None:
    result = to_result(verdict(kind), final)
    assert result.phase == phase
    assert result.message == f"because {kind}" and result.value == 50.0
    assert result.details["verdict"] == kind


# --------------------------------------------------------------------------- field lines

COALMINE = Path(sys.executable).with_name("coalmine")
FIELD = "spec.metrics[0].provider.plugin.coalmine/judge"
RATIO_ITEM = "              - {name: e, kind: ratio}"
BAD_FIELDS = [
    # (the plug-in config's lines from line 11 on, the bad field's line, field, message)
    (
        ["            groupWeights:", '              x: "abc"', "            metrics:", RATIO_ITEM],
        12,
        "groupWeights.x",
        "expected a number, got 'abc' (hint: a weight is a number such as 1 or 0.5;",
    ),
    (
        ["            metrics:", "              - name: e", "                kind: ratio",
         "                minSample: 5"],
        14,
        "metrics[0].minSample",
        "unknown field 'minSample' (hint: did you mean 'minSamples'?)",
    ),
    (
        ["            metrics:", RATIO_ITEM, "            passScore: 500"],
        13,
        "passScore",
        "pass_score must be from 0 to 100, got 500 (hint: see docs/judge.md",
    ),
    (
        ["            metrics:", "              - {name: e, kind: ratio, weight: true}"],
        12,
        "metrics[0].weight",
        "expected a number, got True (hint: a weight is a number",
    ),
    (
        ["            prometheus:", "              address: http://127.0.0.1:9090",
         "              timeout: soon", "            metrics:",
         '              - {name: cpu, kind: gauge, query: \'up{v="{{version}}"}\'}'],
        13,
        "prometheus.timeout",
        "",
    ),
]  # fmt: skip
BAD_IDS = ["group-weight-word", "unknown-field", "pass-score", "bool-weight", "prometheus"]


def judge_template(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE.format(body="\n".join(lines)))
    return path


@pytest.mark.parametrize(("lines", "line", "field", "message"), BAD_FIELDS, ids=BAD_IDS)
def test_validate_points_at_the_bad_judge_field_s_own_line(
    tmp_path: Path, lines: list[str], line: int, field: str, message: str
) -> None:
    path = judge_template(tmp_path, lines)
    done = subprocess.run(
        [str(COALMINE), "validate", path.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out and out.count("\n") == 1, out  # validate lists on stdout
    assert out.startswith(f"t.yaml:{line}: {FIELD}.{field}: {message}"), out
    assert out.count("coalmine/judge") == 1, out


@pytest.mark.parametrize(("lines", "line", "field", "message"), BAD_FIELDS, ids=BAD_IDS)
def test_check_runnable_gives_the_judge_field_and_its_line(
    tmp_path: Path, lines: list[str], line: int, field: str, message: str
) -> None:
    path = judge_template(tmp_path, lines)
    (problem,) = check_runnable(load_bundle([path]))
    assert (problem.file, problem.line, problem.field) == (str(path), line, f"{FIELD}.{field}")
    assert problem.one_line().startswith(f"{path}:{line}: {FIELD}.{field}: {message}")
    assert problem.one_line().count("coalmine/judge") == 1


def test_a_quoted_group_weight_still_counts_and_a_word_is_refused_with_a_hint() -> None:
    spec = parse_judge_config({"metrics": [RATIO], "groupWeights": {"default": "2"}})
    assert spec.group_weights == {"default": 2.0}  # e.g. from {{args.weight}}
    for bad in ("abc", None, [1], True, 10**400):
        with pytest.raises(JudgeConfigError) as caught:
            parse_judge_config({"metrics": [RATIO], "groupWeights": {"x": bad}})
        assert caught.value.path == ("groupWeights", "x")
        assert "could not convert" not in str(caught.value)
        assert caught.value.hint and "a weight is a number" in caught.value.hint
