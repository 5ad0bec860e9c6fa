"""Conformance with Argo Rollouts: its examples load, and our examples satisfy its CRD schemas.

The Argo files live outside the repository (``../shared/conformance`` beside the repository
root, or ``$COALMINE_CONFORMANCE_DIR``); the tests skip when they are absent.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from coalmine.errors import NotSupportedError
from coalmine.spec.loader import load_bundle
from coalmine.spec.resolve import check_runnable

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = Path(
    os.environ.get("COALMINE_CONFORMANCE_DIR") or ROOT / "../shared/conformance"
).resolve()
ARGO = CONFORMANCE / "argo-rollouts"
EXAMPLES = sorted(ARGO.glob("example-*.yaml"))

pytestmark = pytest.mark.skipif(not EXAMPLES, reason=f"no Argo conformance files in {ARGO}")

CRDS = {
    "Rollout": "rollout-crd.yaml",
    "AnalysisTemplate": "analysis-template-crd.yaml",
    "ClusterAnalysisTemplate": "cluster-analysis-template-crd.yaml",
}


@cache
def crd_validator(kind: str) -> Draft202012Validator:
    crd = yaml.safe_load((ARGO / CRDS[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    return Draft202012Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def crd_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.path)}: {e.message}" for e in crd_validator(doc["kind"]).iter_errors(doc)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_argo_example_loads_alone(path: Path) -> None:
    bundle = load_bundle([path])
    assert len(bundle.rollouts) + len(bundle.templates) >= 1


def test_argo_examples_load_together() -> None:
    bundle = load_bundle(EXAMPLES)
    assert set(bundle.rollouts) == {
        "rollout-canary",
        "rollout-background-analysis",
        "rollout-analysis-step",
    }
    assert set(bundle.templates) == {"pass", "random-fail"}
    canary = bundle.rollouts["rollout-canary"]
    assert len(canary.steps) == 8
    assert canary.canary_version == "blue"
    background = bundle.rollouts["rollout-background-analysis"].background
    assert background is not None and background.starting_step == 0


def test_argo_examples_report_what_coalmine_cannot_run() -> None:
    problems = check_runnable(load_bundle(EXAMPLES))
    text = [p.one_line() for p in problems]
    job = [p for p in problems if p.message == "provider 'job' is not supported yet"]
    assert job, text
    assert all(isinstance(p, NotSupportedError) for p in job)
    templates_file = str(ARGO / "example-analysis-templates.yaml")
    assert {(p.file, p.line) for p in job} == {(templates_file, 12), (templates_file, 38)}
    missing = [p for p in problems if "'always-pass' not found" in p.message]
    assert len(missing) == 1, text
    assert missing[0].message == "ClusterAnalysisTemplate 'always-pass' not found"
    assert missing[0].file == str(ARGO / "example-rollout-analysis-step.yaml")
    assert missing[0].line == 35
    assert len(problems) == 3, text


def test_argo_examples_satisfy_argo_crds() -> None:
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert crd_errors(doc) == [], path


def test_our_examples_satisfy_argo_crds() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "examples/rollouts.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == {"Rollout", "AnalysisTemplate"}
    for doc in docs:
        assert crd_errors(doc) == [], doc["metadata"]["name"]


def test_crd_schema_catches_a_wrong_field() -> None:
    """The CRD check is real: a wrongly typed field fails it."""
    doc = next(yaml.safe_load_all((ROOT / "examples/rollouts.yaml").read_text()))
    doc["spec"]["strategy"]["canary"]["steps"][0] = {"setWeight": "five"}
    assert crd_errors(doc)
