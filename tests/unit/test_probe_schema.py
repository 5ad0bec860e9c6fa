"""The published JSON Schemas of probe flows and libraries agree with the loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from coalmine.cli import spec_cmds
from coalmine.errors import SpecError
from coalmine.probes.loader import load_flow
from coalmine.spec.schema import json_schema
from coalmine.spec.yamlpos import parse_documents, read_documents, to_plain
from tests.support.cli_env import command_app
from tests.unit.test_probe_loader import FLOW, LIB

SYNTHETICS = Path(__file__).resolve().parents[2] / "examples" / "synthetics"


def as_coalmine_reads_it(text: str) -> Any:
    """Plain data as coalmine's YAML reader builds it (``on:`` stays the string "on")."""
    return to_plain(parse_documents(text, "<test>")[0].data)


def errors(kind: str, doc: Any) -> list[str]:
    validator = Draft202012Validator(json_schema(kind))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize("kind", ["probe-flow", "probe-library"])
def test_schemas_are_valid_draft_2020_12(kind: str) -> None:
    schema = json_schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    ("file", "kind"),
    [
        ("maestro-api-canary.yaml", "probe-flow"),
        ("rollback-chaos-lite.yaml", "probe-flow"),
        ("lib/maestro-auth.yaml", "probe-library"),
    ],
)
def test_examples_validate(file: str, kind: str) -> None:
    doc = to_plain(read_documents(SYNTHETICS / file)[0].data)
    assert errors(kind, doc) == []


def test_the_loader_test_files_validate() -> None:
    assert errors("probe-flow", as_coalmine_reads_it(FLOW)) == []
    assert errors("probe-library", as_coalmine_reads_it(LIB)) == []
    # and a library is not a flow
    assert errors("probe-flow", as_coalmine_reads_it(LIB)) != []


def _flow() -> dict[str, Any]:
    return copy.deepcopy(as_coalmine_reads_it(FLOW))


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split("/")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("steps/0/asert", ["status == 200"], "steps/0"),
        ("steps/1/request/form", {"a": "b"}, "steps/1/request"),  # json and form
        ("schedule/versions", ["stable", "canry"], "schedule/versions/1"),
        ("schedule/interval", "1 minute", "schedule/interval"),
        ("steps/1/extract/loc", {"header": "L", "cookie": "c"}, "steps/1/extract/loc"),
        ("steps/0/assert/3", "latncy < 500ms", "steps/0/assert/3"),
        ("steps/0/retry/on", "anything", "steps/0/retry/on"),
        ("steps/0/request/method", "FETCH", "steps/0/request/method"),
        ("auth", "none", "auth"),
        ("secrets/api_key", "hunter2", "secrets/api_key"),
        ("variables/uuid", "x", "variables"),
        ("steps", [], "steps"),
        ("environments", {}, "environments"),
        ("metadata/name", "Shop Canary", "metadata/name"),
    ],
)
def test_bad_flows_fail_the_schema_and_the_loader(
    tmp_path: Path, path: str, value: Any, where: str
) -> None:
    doc = _flow()
    _set(doc, path, value)
    found = errors("probe-flow", doc)
    assert found, f"the schema accepts {path} = {value!r}"
    assert any(f.startswith(f"{where}:") for f in found), found
    # the loader rejects the same document
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "auth.yaml").write_text(LIB)
    (tmp_path / "flow.yaml").write_text(json.dumps(doc))
    with pytest.raises(SpecError):
        load_flow(tmp_path / "flow.yaml")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("auth/shop-key/type", "apikey"),
        ("auth/shop-oauth/scope", ["x"]),
        ("auth/none", {"type": "bearer", "token": "x"}),
        ("sessions/web-login/steps", []),
        ("metadata/name", None),
    ],
)
def test_bad_libraries_fail_the_schema(path: str, value: Any) -> None:
    doc = copy.deepcopy(as_coalmine_reads_it(LIB))
    _set(doc, path, value)
    assert errors("probe-library", doc) != []


def test_schema_command_prints_the_probe_schemas() -> None:
    app = command_app(spec_cmds.register)
    for kind, title in (("probe-flow", "ProbeFlow"), ("probe-library", "ProbeLibrary")):
        result = CliRunner().invoke(app, ["schema", kind])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["title"] == f"coalmine {title}"
