"""The Kubernetes JSONPath subset used by the web provider."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coalmine.metrics.jsonpath import compile_path, find

DOC: dict[str, Any] = {
    "status": "ok",
    "data": {
        "ok": True,
        "rate": "0.25",
        "items": [
            {"name": "a", "value": 1, "tags": ["x"]},
            {"name": "b", "value": 5.5, "tags": []},
            {"name": "c", "value": 3, "flag": None},
        ],
        "a.b": 7,
        "kebab-key": "k",
    },
    "list": [[1, 2], [3, 4]],
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{$.data.ok}", [True]),
        ("$.data.ok", [True]),
        ("{.data.ok}", [True]),
        ("{ .data.ok }", [True]),
        ("{$}", [DOC]),
        ("$", [DOC]),
        ("{.}", [DOC]),
        ("{.status}", ["ok"]),
        ("{.data.rate}", ["0.25"]),
        ("{$['data']['ok']}", [True]),
        ('{$["data"]["rate"]}', ["0.25"]),
        ("{.data['a.b']}", [7]),
        ("{.data.a\\.b}", [7]),
        ("{.data.kebab-key}", ["k"]),
        ("{.data.items[0].name}", ["a"]),
        ("{.data.items[-1].name}", ["c"]),
        ("{.data.items[-3].name}", ["a"]),
        ("{.data.items[3]}", []),
        ("{.data.items[-4]}", []),
        ("{.data.items[*].name}", ["a", "b", "c"]),
        ("{.data.items.*.name}", ["a", "b", "c"]),
        ("{.list[*][0]}", [1, 3]),
        ("{.list[1][1]}", [4]),
        ("{.data.items[0:2].name}", ["a", "b"]),
        ("{.data.items[1:].name}", ["b", "c"]),
        ("{.data.items[:1].name}", ["a"]),
        ("{.data.items[-2:].name}", ["b", "c"]),
        ("{.data.items[::2].name}", ["a", "c"]),
        ("{.data.items[::-1].name}", ["c", "b", "a"]),
        ("{.data.items[0,2].name}", ["a", "c"]),
        ("{.data['ok','rate']}", [True, "0.25"]),
        ("{..name}", ["a", "b", "c"]),
        ("{..items[1].name}", ["b"]),
        ("{.data..value}", [1, 5.5, 3]),
        ("{..tags[*]}", ["x"]),
        ("{.data.items[?(@.name == 'b')].value}", [5.5]),
        ('{.data.items[?(@.name == "b")].value}', [5.5]),
        ("{.data.items[?(@.name != 'b')].name}", ["a", "c"]),
        ("{.data.items[?(@.value > 2)].name}", ["b", "c"]),
        ("{.data.items[?(@.value >= 3)].name}", ["b", "c"]),
        ("{.data.items[?(@.value < 3)].name}", ["a"]),
        ("{.data.items[?(@.value <= 3)].name}", ["a", "c"]),
        ("{.data.items[?(@.value == 1.0)].name}", ["a"]),
        ("{.data.items[?(@.name > 'a')].name}", ["b", "c"]),
        ("{.data.items[?(@.name < 2)].name}", []),  # a string never orders against a number
        ("{.data.items[?(@.value == '1')].name}", []),  # nor equals one
        ("{.data.items[?(@.flag)].name}", ["c"]),  # the field exists (even when null)
        ("{.data.items[?(@.flag == null)].name}", ["c"]),
        ("{.data.items[?(@.tags[0] == 'x')].name}", ["a"]),
        ("{.data.items[?(@.value > @.missing)].name}", []),
        ("{.missing}", []),
        ("{.missing.deeper[0]}", []),
        ("{.status.field}", []),  # a field of a string
        ("{.data[0]}", []),  # an index of a mapping
        ("{.data.ok[*]}", []),
    ],
)
def test_find(expr: str, expected: list[Any]) -> None:
    assert find(expr, DOC) == expected


def test_booleans_are_not_numbers_in_filters() -> None:
    doc = [{"v": True}, {"v": 1}]
    assert find("{[?(@.v == 1)]}", doc) == [{"v": 1}]
    assert find("{[?(@.v == true)]}", doc) == [{"v": True}]
    assert find("{$[0].v}", doc) == [True]


@pytest.mark.parametrize(
    ("expr", "position", "why"),
    [
        ("", None, "empty"),
        ("{.data", 0, "never closed"),
        ("data.ok", 0, "expected '$', '.' or '['"),
        ("{.data[}", 7, "expected an index"),
        ("{.data[0}", 8, "expected ']' or ','"),
        ("$.data[0", 6, "never closed"),
        ("{.items[1:2:0]}", 13, "step cannot be zero"),
        ("{.items[1:2:3:4]}", 15, "at most three parts"),
        ("{..}", 3, "'..' must be followed"),
        ("{.a[?(@.x ==)]}", 12, "expected a string, a number"),
        ("{.a[?(@.x == 1 && @.y)]}", 15, "not supported"),
        ("{.a[?(@.x == 'y')}", 17, "expected ']'"),
        ("{.a['x]}", 4, "unterminated string"),
        ("{.a b}", 4, "unexpected whitespace"),
        ("{.a}x", 4, "unexpected text"),
        ("{.a(b)}", 3, "unexpected '('"),
        ("{.a[?@.x]}", 5, "expected '('"),
    ],
)
def test_invalid_expressions_name_the_position(expr: str, position: int | None, why: str) -> None:
    with pytest.raises(ValueError) as info:
        compile_path(expr)
    assert why in str(info.value)
    if position is not None:
        assert f"at position {position}:" in str(info.value)
    assert repr(expr) in str(info.value)


def test_nothing_is_evaluated_as_code() -> None:
    with pytest.raises(ValueError):
        compile_path("{.a[?(__import__('os').system('true'))]}")


# --------------------------------------------------------------------------- round trips

_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ_0123456789-", min_size=1, max_size=8)
_ODD_KEYS = st.text(min_size=1, max_size=6)  # any characters: written as ['...'] with escapes
_LEAVES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.booleans(),
)


def _documents(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        _LEAVES,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=4),
            st.dictionaries(keys, children, min_size=1, max_size=4),
        ),
        max_leaves=20,
    )


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [(path, node)]


def _quote(key: str) -> str:
    return "'" + key.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _render(path: tuple[Any, ...], style: int, length: int) -> str:
    parts = []
    for step in path:
        if isinstance(step, int):
            index = step - length if style == 2 else step  # negative indexes too
            parts.append(f"[{index}]")
            continue
        parts.append(f"[{_quote(step)}]" if style == 1 else f".{step}")
    return "{$" + "".join(parts) + "}"


@settings(max_examples=150, deadline=None)
@given(doc=_documents(_KEYS), pick=st.integers(0, 10**6), style=st.integers(0, 2))
def test_a_path_to_any_leaf_finds_exactly_that_leaf(doc: Any, pick: int, style: int) -> None:
    leaves = _leaves(doc)
    path, leaf = leaves[pick % len(leaves)]
    # For negative indexes, the length of the list each index step applies to.
    node, rendered = doc, []
    for step in path:
        length = len(node) if isinstance(node, list) else 0
        rendered.append(_render((step,), style, length)[2:-1])
        node = node[step]
    expr = "{$" + "".join(rendered) + "}"
    assert find(expr, doc) == [leaf]


@settings(max_examples=100, deadline=None)
@given(doc=_documents(_ODD_KEYS), pick=st.integers(0, 10**6))
def test_bracketed_names_with_any_characters(doc: Any, pick: int) -> None:
    leaves = _leaves(doc)
    path, leaf = leaves[pick % len(leaves)]
    expr = "$" + "".join(f"[{s}]" if isinstance(s, int) else f"[{_quote(s)}]" for s in path)
    assert find(expr, doc) == [leaf]
    assert find("{" + expr + "}", doc) == [leaf]


@settings(max_examples=100, deadline=None)
@given(doc=_documents(_KEYS))
def test_recursive_wildcard_finds_every_leaf_once(doc: Any) -> None:
    found = [v for v in find("{..*}", doc) if not isinstance(v, dict | list)]
    if isinstance(doc, dict | list):
        assert sorted(map(repr, found)) == sorted(repr(leaf) for _, leaf in _leaves(doc))
    else:
        assert found == []


def test_recursive_descent_order() -> None:
    # A node's own matches come before those of its descendants (RFC 9535's order).
    doc = {"a": {"name": 1, "sub": {"name": 2}}, "name": 3}
    assert find("{..name}", doc) == [3, 1, 2]


@pytest.mark.parametrize(
    ("expr", "position", "found"),
    [
        ("{$.items[" + "0" * 4999 + "1]}", 9, 5000),
        ("{.items[-" + "9" * 5000 + "]}", 9, 5000),
        ("{.items[1:" + "7" * 19 + "]}", 10, 19),
        ("{.items[0," + "1" * 4301 + "]}", 10, 4301),
    ],
    ids=["leading-zeros", "negative", "slice-stop", "union"],
)
def test_an_index_with_too_many_digits_is_a_syntax_error_naming_the_position(
    expr: str, position: int, found: int
) -> None:
    with pytest.raises(ValueError) as info:
        compile_path(expr)
    message = str(info.value)
    assert f"at position {position}: an index has at most 18 digits, found {found}" in message
    assert "4300" not in message and "integer string conversion" not in message
    assert len(message) < 200  # the expression is quoted, not all of it


def test_an_index_of_18_digits_still_works_and_non_ascii_digits_are_refused() -> None:
    big = "9" * 18
    assert compile_path(f"{{.items[{big}]}}").find({"items": [1]}) == []
    assert find(f"{{.items[-{big}:]}}", {"items": [1, 2]}) == [1, 2]
    with pytest.raises(ValueError, match="at position 8: expected an index"):
        compile_path("{.items[²]}")
