"""The exported JSON Schemas are valid and accept the project's examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from coalmine.errors import SpecError
from coalmine.spec.schema import KINDS, json_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def errors(kind: str, doc: Any) -> list[str]:
    return [e.message for e in Draft202012Validator(json_schema(kind)).iter_errors(doc)]


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_valid_draft_2020_12(kind: str) -> None:
    schema = json_schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_examples_validate() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "rollouts.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Rollout", "AnalysisTemplate", "AnalysisTemplate"]
    for doc in docs:
        kind = "rollout" if doc["kind"] == "Rollout" else "analysis-template"
        assert errors(kind, doc) == []
    config = yaml.safe_load((EXAMPLES / "coalmine.yaml").read_text())
    assert errors("config", config) == []


def test_schema_rejects_what_the_loader_rejects() -> None:
    rollout = yaml.safe_load((EXAMPLES / "rollouts.yaml").read_text().split("---")[0])
    rollout["metadata"]["annotations"]["coalmine.dev/versoin"] = "x"
    rollout["spec"]["strategy"]["canary"]["steps"].append({"setWeight": 120})
    rollout["spec"]["strategy"]["blueGreen"] = {}
    assert len(errors("rollout", rollout)) == 3


def test_router_plugin_config_is_described() -> None:
    template = yaml.safe_load((EXAMPLES / "rollouts.yaml").read_text().split("---")[1])
    (metric,) = [m for m in template["spec"]["metrics"] if "coalmine/router" in str(m)]
    router = metric["provider"]["plugin"]["coalmine/router"]
    router["query"] = "p99"
    assert len(errors("analysis-template", template)) == 1


def test_unknown_schema_kind() -> None:
    with pytest.raises(SpecError, match="unknown schema"):
        json_schema("pipeline")
