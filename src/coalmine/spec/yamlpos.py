"""YAML with line numbers, and a cursor that reads it and reports errors at ``file:line``.

Documents are composed with PyYAML's safe loader and built into :class:`YMap` / :class:`YSeq`
(plain ``dict`` / ``list`` subclasses that remember the line of every key and item). Scalars are
built by the safe constructor, except timestamps, which stay strings as in Kubernetes.

Input that would make composing or building recurse without end is refused with a SpecError:
an alias inside its own anchor, nesting deeper than :data:`MAX_DEPTH` (aliases and merges
included), and aliases that expand to more than :data:`MAX_VALUES` values.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coalmine.durations import parse_duration
from coalmine.errors import NotSupportedError, SpecError

DURATION_HINT = "use 30s, 5m or 1h"
MAX_DEPTH = 100  # levels of nesting; coalmine's files need fewer than 15
MAX_VALUES = 100_000  # values of one document once aliases are expanded
_DEPTH_HINT = "coalmine's files need only a few levels; flatten the structure"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


class _Composer(yaml.SafeLoader):
    """PyYAML's safe composer, refusing an alias inside its own anchor (a value that contains
    itself) and nesting deeper than MAX_DEPTH, before PyYAML's recursion overflows."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.depth = 0
        self.open_anchors: set[str] = set()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, AliasEvent):
            if event.anchor in self.open_anchors:
                raise SpecError(
                    f"the alias *{event.anchor} is inside its own anchor &{event.anchor}",
                    file=self.file,
                    line=line,
                    hint="a YAML value cannot contain itself; copy the part you need instead",
                )
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise _too_deep(self.file, line)
        anchor = event.anchor if isinstance(event, NodeEvent) else None
        self.depth += 1
        if anchor:
            self.open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1
            self.open_anchors.discard(anchor or "")


def _too_deep(file: str, line: int) -> SpecError:
    return SpecError(
        f"nested more than {MAX_DEPTH} levels deep", file=file, line=line, hint=_DEPTH_HINT
    )


class _Builder:
    """Turns one document's nodes into YMap/YSeq/scalars, rejecting duplicate keys.

    Aliases share nodes, so nodes are never changed (``<<`` merges are resolved here, not by
    PyYAML's in-place ``flatten_mapping``), and depth and size are counted as expanded."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.scalars = SafeConstructor()
        self.values = 0

    def _count(self, node: Node, depth: int, values: int = 1) -> None:
        if depth > MAX_DEPTH:
            raise _too_deep(self.file, _line(node))
        self.values += values
        if self.values > MAX_VALUES:
            raise SpecError(
                f"more than {MAX_VALUES} values once its aliases are expanded",
                file=self.file,
                line=_line(node),
                hint="use fewer aliases; each one copies the whole value of its anchor",
            )

    def build(self, node: Node, depth: int = 1) -> Any:
        self._count(node, depth)
        if node.tag not in _PLAIN_TAGS:
            raise SpecError(
                f"unsupported YAML tag {node.tag!r}",
                file=self.file,
                line=_line(node),
                hint="remove the tag; plain YAML values only",
            )
        if isinstance(node, MappingNode):
            out = YMap(_line(node))
            for key, (key_node, value_node) in self._pairs(node, depth).items():
                out[key] = self.build(value_node, depth + 1)
                out.key_lines[key] = _line(key_node)
            return out
        if isinstance(node, SequenceNode):
            seq = YSeq(_line(node))
            for item in node.value:
                seq.append(self.build(item, depth + 1))
                seq.item_lines.append(_line(item))
            return seq
        assert isinstance(node, ScalarNode)
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value
        return self.scalars.construct_object(node, deep=True)

    def _pairs(self, node: MappingNode, depth: int) -> dict[str, tuple[Node, Node]]:
        """The mapping's keys with ``<<`` merges resolved: its own keys win over merged ones,
        and an earlier merged mapping wins over a later one."""
        self._count(node, depth, len(node.value))
        own: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise SpecError(
                    "a mapping key must be a plain string",
                    file=self.file,
                    line=_line(key_node),
                    hint="use a simple word as the key",
                )
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        raise SpecError(
                            "'<<' merges a mapping or a list of mappings",
                            file=self.file,
                            line=_line(source),
                            hint="write <<: *name, where &name marks a mapping",
                        )
                    for key, pair in self._pairs(source, depth + 1).items():
                        merged.setdefault(key, pair)
                continue
            key = str(key_node.value)
            if key in own:
                raise SpecError(
                    f"duplicate key '{key}'",
                    file=self.file,
                    line=_line(key_node),
                    hint=f"'{key}' is already set on line {_line(own[key][0])}; keep one",
                )
            own[key] = (key_node, value_node)
        return {**{k: v for k, v in merged.items() if k not in own}, **own}


def parse_documents(text: str, file: str) -> list[Document]:
    """Every document of ``text``; empty ones have ``data`` None. Raises SpecError."""
    docs: list[Document] = []
    composer = _Composer(text, file)
    try:
        while composer.check_node():
            node = composer.get_node()
            if node is None:
                continue
            docs.append(Document(file, _line(node), _Builder(file).build(node)))
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
    finally:
        composer.dispose()
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


def map_strings(value: Any, fn: Callable[[str], Any]) -> Any:
    """A copy of ``value`` with ``fn`` applied to every string in it; YMap and YSeq copies
    keep their lines, so errors found after the change still point at the right line."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        items = {k: map_strings(v, fn) for k, v in value.items()}
        if not isinstance(value, YMap):
            return items
        out = YMap(value.line)
        out.update(items)
        out.key_lines = dict(value.key_lines)
        return out
    if isinstance(value, list):
        copied = [map_strings(v, fn) for v in value]
        if not isinstance(value, YSeq):
            return copied
        seq = YSeq(value.line)
        seq.extend(copied)
        seq.item_lines = list(value.item_lines)
        return seq
    return value


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

    def mapping(self, hint: str | None = None) -> YMap:
        if not isinstance(self.value, YMap):
            self.fail(f"expected a mapping, got {_type_name(self.value)}", hint)
        return self.value

    def sequence(self, hint: str | None = None) -> list[Cursor]:
        """The items of a list (``None`` reads as an empty list)."""
        if self.value is None:
            return []
        if not isinstance(self.value, YSeq):
            self.fail(f"expected a list, got {_type_name(self.value)}", hint)
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

    def number(self, hint: str | None = None) -> float:
        """A finite int or float (not a boolean, not .inf or .nan)."""
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            self.fail(f"expected a number, got {_type_name(self.value)}", hint)
        try:
            value = float(self.value)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not math.isfinite(value):
            self.fail(f"expected a finite number, got {self.value!r}", hint)
        return value

    def duration(self) -> float:
        try:
            value = parse_duration(self.value)
        except ValueError as err:
            self.fail(str(err), DURATION_HINT)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value):
            self.fail(f"the duration {self.value!r} is too large to use", DURATION_HINT)
        return value

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
