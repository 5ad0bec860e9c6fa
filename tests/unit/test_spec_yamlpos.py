"""YAML with line numbers: positions, duplicate keys, malformed input."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


# --------------------------------------------------------------------------- nasty input

ROOT = Path(__file__).resolve().parents[2]
COALMINE = ROOT / ".venv" / "bin" / "coalmine"
DEEP_FLOW = "slos: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_BLOCK = "a:\n" + "".join("  " * i + "- \n" for i in range(1, 5000))


def one_line(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_documents(text, "f.yaml")
    return info.value.one_line()


SELF_HINT = "(hint: a YAML value cannot contain itself; copy the part you need instead)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("slos:\n  - &a [*a]\n", f"f.yaml:2: the alias *a is inside its own anchor &a {SELF_HINT}"),
        ("a: &a {<<: *a}\n", f"f.yaml:1: the alias *a is inside its own anchor &a {SELF_HINT}"),
        (
            "a: 1\nb: &b\n  c:\n    - *b\n",
            f"f.yaml:4: the alias *b is inside its own anchor &b {SELF_HINT}",
        ),
    ],
)
def test_a_value_containing_itself_is_refused_at_the_alias(text: str, expected: str) -> None:
    assert one_line(text) == expected


DEPTH = "nested more than 100 levels deep (hint: coalmine's files need only a few levels; flatten"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (DEEP_FLOW, 1),
        (DEEP_BLOCK, 101),  # the 101st level starts on line 101
        # aliases nest what is under their anchor: 5 x 30 levels, each anchor only 31 deep
        (
            "a0: &a0 1\n"
            + "".join(
                f"a{i}: &a{i} " + "[" * 30 + f"*a{i - 1}" + "]" * 30 + "\n" for i in range(1, 6)
            ),
            2,
        ),
    ],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str, line: int) -> None:
    assert one_line(text).startswith(f"f.yaml:{line}: {DEPTH}")


def test_100_levels_are_fine_and_101_are_not() -> None:
    (doc,) = parse_documents("[" * 99 + "1" + "]" * 99, "f.yaml")  # 99 lists and a scalar
    assert doc.data is not None
    assert one_line("[" * 100 + "1" + "]" * 100).startswith(f"f.yaml:1: {DEPTH}")


def test_aliases_that_expand_without_end_are_refused() -> None:
    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef", strict=True)
    )
    assert one_line(text).startswith("f.yaml:1: more than 100000 values once its aliases")


def test_merged_mappings_can_be_reused_and_the_first_merge_wins() -> None:
    text = (
        "base: &base {x: 1, y: 1}\n"
        "other: &other {x: 2, z: 2}\n"
        "a: &a {<<: [*base, *other], y: 3}\n"
        "b: *a\n"
    )
    (doc,) = parse_documents(text, "f.yaml")
    assert doc.data["a"] == doc.data["b"] == {"x": 1, "y": 3, "z": 2}
    assert doc.data["a"].key_lines == {"x": 1, "z": 2, "y": 3}
    assert one_line("a: &a [1]\nb: {<<: *a}\n").startswith(
        "f.yaml:1: '<<' merges a mapping or a list of mappings"
    )


def test_numbers_and_durations_that_overflow_are_errors() -> None:
    for value in (float("inf"), float("nan"), 10**400):
        with pytest.raises(SpecError, match="expected a finite number"):
            Cursor(value, "f", 3, "x").number()
    for value in ("9" * 400 + "h", 10**400, float("inf")):
        with pytest.raises(SpecError, match="too large to use") as info:
            Cursor(value, "f", 3, "x").duration()
        assert info.value.one_line().startswith("f:3: x: the duration ")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("slos:\n  - &a [*a]\n", 2, "the alias *a is inside its own anchor &a"),
        (DEEP_FLOW, 1, "nested more than 100 levels deep"),
    ],
)
def test_every_loader_reports_the_same_clean_error(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    from coalmine.spec.loader import load_bundle

    path = tmp_path / "nasty.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_bundle([path])  # rollouts, as `coalmine validate` reads them
    assert info.value.one_line().startswith(f"{path}:{line}: {message} (hint: ")
    for args in (["validate", str(path)], ["slo", "validate", str(path)]):
        done = subprocess.run(
            [str(COALMINE), *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr
        assert f"{path}:{line}: {message} (hint: " in done.stderr + done.stdout
