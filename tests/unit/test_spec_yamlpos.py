"""YAML with line numbers: positions, duplicate keys, malformed input."""

from __future__ import annotations

import pytest

from coalmine.errors import SpecError
from coalmine.spec.yamlpos import Cursor, YMap, YSeq, parse_documents, root_cursor

TEXT = """\
# comment
a: 1
b:
  - x
  - y: 2
    z: 2024-01-01
---
---
c: {d: true}
"""


def test_every_key_and_item_has_its_line() -> None:
    docs = parse_documents(TEXT, "f.yaml")
    assert [d.line for d in docs if d.data is not None] == [2, 9]
    docs = [d for d in docs if d.data is not None]
    first = docs[0].data
    assert isinstance(first, YMap)
    assert first.key_lines == {"a": 2, "b": 3}
    assert isinstance(first["b"], YSeq)
    assert first["b"].item_lines == [4, 5]
    assert first["b"][1].key_lines == {"y": 5, "z": 6}
    assert first["b"][1]["z"] == "2024-01-01"  # timestamps stay strings, as in Kubernetes
    assert docs[1].data == {"c": {"d": True}}


def test_cursor_reports_path_and_line() -> None:
    doc = root_cursor(parse_documents(TEXT, "f.yaml")[0])
    item = doc.require("b").sequence()[1].require("y")
    assert (item.path, item.line, item.value) == ("b[1].y", 5, 2)
    with pytest.raises(SpecError) as info:
        item.string()
    assert (
        info.value.one_line()
        == "f.yaml:5: b[1].y: expected a string, got the number 2 (hint: quote it)"
    )


def test_duplicate_key_is_an_error_at_the_second_key() -> None:
    with pytest.raises(SpecError) as info:
        parse_documents("a: 1\nb: 2\na: 3\n", "dup.yaml")
    err = info.value
    assert (err.file, err.line) == ("dup.yaml", 3)
    assert "duplicate key 'a'" in err.message
    assert "line 1" in (err.hint or "")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3),
        ("a:\n  b: 1\n c: 2\n", 3),
        ("a: 'unterminated\n", 2),
    ],
)
def test_malformed_yaml_names_file_and_line(text: str, line: int) -> None:
    with pytest.raises(SpecError) as info:
        parse_documents(text, "bad.yaml")
    err = info.value
    assert (err.file, err.line) == ("bad.yaml", line)
    assert err.message.startswith("malformed YAML")
    assert err.hint
    assert "\n" not in err.one_line()


def test_unknown_fields_suggest_the_closest_name() -> None:
    doc = root_cursor(parse_documents("nmae: x\n", "f.yaml")[0])
    with pytest.raises(SpecError) as info:
        doc.check_fields(("name", "namespace"))
    assert info.value.message == "unknown field 'nmae'"
    assert info.value.hint == "did you mean 'name'?"


def test_python_tags_are_refused() -> None:
    with pytest.raises(SpecError, match="unsupported YAML tag"):
        parse_documents("a: !!python/object:os.system {}\n", "f.yaml")


def test_cursor_types() -> None:
    cur = Cursor(True, "f", 1, "x")
    with pytest.raises(SpecError, match="expected an integer"):
        cur.integer()
    assert Cursor("12", "f", 1, "x").integer(0, 20) == 12
    with pytest.raises(SpecError, match="from 0 to 10"):
        Cursor(11, "f", 1, "x").integer(0, 10)
    with pytest.raises(SpecError) as info:
        Cursor("5 minutes", "f", 1, "x").duration()
    assert info.value.hint == "use 30s, 5m or 1h"
