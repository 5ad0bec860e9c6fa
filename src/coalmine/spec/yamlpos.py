"""YAML with line numbers, and a cursor that reads it and reports errors at ``file:line``.

Documents are composed with PyYAML's safe loader and built into :class:`YMap` / :class:`YSeq`
(plain ``dict`` / ``list`` subclasses that remember the line of every key and item). Scalars are
built by the safe constructor, except timestamps, which stay strings as in Kubernetes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coalmine.durations import parse_duration
from coalmine.errors import NotSupportedError, SpecError

DURATION_HINT = "use 30s, 5m or 1h"


class YMap(dict[str, Any]):
    """A mapping that knows its own line and the line of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines = {}


class YSeq(list[Any]):
    """A sequence that knows its own line and the line of each item."""

    line: int = 0
    item_lines: list[int]

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines = []


@dataclass(frozen=True)
class Document:
    """One YAML document of a file; ``data`` is None for an empty document."""

    file: str
    line: int
    data: Any


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


class _Builder:
    """Turns composed nodes into YMap/YSeq/scalars, rejecting duplicate keys."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.scalars = SafeConstructor()

    def build(self, node: Node) -> Any:
        if node.tag not in _PLAIN_TAGS:
            raise SpecError(
                f"unsupported YAML tag {node.tag!r}",
                file=self.file,
                line=_line(node),
                hint="remove the tag; plain YAML values only",
            )
        if isinstance(node, MappingNode):
            return self._mapping(node)
        if isinstance(node, SequenceNode):
            seq = YSeq(_line(node))
            for item in node.value:
                seq.append(self.build(item))
                seq.item_lines.append(_line(item))
            return seq
        assert isinstance(node, ScalarNode)
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value
        return self.scalars.construct_object(node, deep=True)

    def _mapping(self, node: MappingNode) -> YMap:
        own = {id(k) for k, _ in node.value}
        self.scalars.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        out = YMap(_line(node))
        merged: set[str] = set()  # keys from a merge, which the mapping's own keys override
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise SpecError(
                    "a mapping key must be a plain string",
                    file=self.file,
                    line=_line(key_node),
                    hint="use a simple word as the key",
                )
            key = str(key_node.value)
            if id(key_node) not in own:
                merged.add(key)
            elif key in merged:
                merged.discard(key)
                del out[key]
            if key in out:
                raise SpecError(
                    f"duplicate key '{key}'",
                    file=self.file,
                    line=_line(key_node),
                    hint=f"'{key}' is already set on line {out.key_lines[key]}; keep one",
                )
            out[key] = self.build(value_node)
            out.key_lines[key] = _line(key_node)
        return out


def parse_documents(text: str, file: str) -> list[Document]:
    """Every document of ``text``; empty ones have ``data`` None. Raises SpecError."""
    builder = _Builder(file)
    docs: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            data = builder.build(node)
            docs.append(Document(file, _line(node), data))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = err.problem or err.context or "invalid YAML"
        raise SpecError(
            f"malformed YAML: {problem}",
            file=file,
            line=line,
            hint="check the indentation and quoting near this line",
        ) from None
    except yaml.YAMLError as err:
        raise SpecError(f"malformed YAML: {err}", file=file, hint="check the file") from None
    return docs


def read_documents(path: str | Path) -> list[Document]:
    """Read and parse one file. Raises SpecError when it is missing or malformed."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=file, hint="check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read file: {err}", file=file) from None
    return parse_documents(text, file)


def to_plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name``, if any is close enough."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"the number {value!r}"


@dataclass(frozen=True)
class Cursor:
    """A value in a document, with where it is: its file, line and dotted field path."""

    value: Any
    file: str
    line: int
    path: str
    key: str = ""

    # ----------------------------------------------------------------- errors

    def error(self, message: str, hint: str | None = None) -> SpecError:
        return SpecError(message, file=self.file, line=self.line, field=self.path, hint=hint)

    def fail(self, message: str, hint: str | None = None) -> NoReturn:
        raise self.error(message, hint)

    def not_supported(self, what: str, hint: str | None = None) -> NoReturn:
        raise NotSupportedError(
            f"{what} is not supported yet",
            file=self.file,
            line=self.line,
            field=self.path,
            hint=hint,
        )

    # ----------------------------------------------------------------- navigation

    def mapping(self) -> YMap:
        if not isinstance(self.value, YMap):
            self.fail(f"expected a mapping, got {_type_name(self.value)}")
        return self.value

    def sequence(self) -> list[Cursor]:
        """The items of a list (``None`` reads as an empty list)."""
        if self.value is None:
            return []
        if not isinstance(self.value, YSeq):
            self.fail(f"expected a list, got {_type_name(self.value)}")
        seq = self.value
        return [
            Cursor(item, self.file, seq.item_lines[i], f"{self.path}[{i}]", self.key)
            for i, item in enumerate(seq)
        ]

    def get(self, key: str) -> Cursor | None:
        data = self.mapping()
        if key not in data:
            return None
        if "." in key or "/" in key:
            sub = f'{self.path}["{key}"]'
        else:
            sub = f"{self.path}.{key}" if self.path else key
        return Cursor(data[key], self.file, data.key_lines[key], sub, key)

    def require(self, key: str, hint: str | None = None) -> Cursor:
        found = self.get(key)
        if found is None:
            self.fail(f"missing required field '{key}'", hint)
        return found

    def fields(self) -> Iterator[Cursor]:
        for key in self.mapping():
            found = self.get(key)
            assert found is not None
            yield found

    def check_fields(
        self,
        known: Iterable[str],
        not_supported: Iterable[str] = (),
        what: str = "field",
    ) -> None:
        """Reject keys outside ``known``; ``not_supported`` keys raise NotSupportedError."""
        known_set = set(known)
        unsupported = set(not_supported)
        for key in self.mapping():
            child = self.get(key)
            assert child is not None
            if key in unsupported:
                child.not_supported(f"{child.path}")
            if key not in known_set:
                guess = closest(key, known_set | unsupported)
                hint = f"did you mean '{guess}'?" if guess else None
                if hint is None and known_set:
                    hint = "known fields: " + ", ".join(sorted(known_set))
                child.fail(f"unknown {what} '{key}'", hint)

    # ----------------------------------------------------------------- scalars

    def string(self, hint: str | None = None) -> str:
        if not isinstance(self.value, str):
            quote = "quote it" if isinstance(self.value, int | float | bool) else None
            self.fail(f"expected a string, got {_type_name(self.value)}", hint or quote)
        return self.value

    def nonempty_string(self) -> str:
        text = self.string()
        if not text.strip():
            self.fail("must not be empty")
        return text

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, got {_type_name(self.value)}")
        return self.value

    def integer(
        self, low: int | None = None, high: int | None = None, hint: str | None = None
    ) -> int:
        """An integer in [low, high]; int-or-string digits ("5") are accepted."""
        value = self.value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"expected an integer, got {_type_name(self.value)}", hint)
        if (low is not None and value < low) or (high is not None and value > high):
            lo = "" if low is None else str(low)
            hi = "" if high is None else str(high)
            rng = (
                f"from {lo} to {hi}"
                if low is not None and high is not None
                else (f"of at least {lo}" if low is not None else f"of at most {hi}")
            )
            self.fail(f"must be an integer {rng}, got {value}", hint)
        return value

    def number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            self.fail(f"expected a number, got {_type_name(self.value)}")
        return float(self.value)

    def duration(self) -> float:
        try:
            return parse_duration(self.value)
        except ValueError as err:
            self.fail(str(err), DURATION_HINT)

    def string_map(self) -> dict[str, str]:
        """A mapping of strings to strings, such as annotations or labels."""
        if self.value is None:
            return {}
        out: dict[str, str] = {}
        for child in Cursor(self.mapping(), self.file, self.line, self.path).fields():
            out[child.key] = child.string()
        return out


def root_cursor(doc: Document) -> Cursor:
    return Cursor(doc.data, doc.file, doc.line, "")
