"""Probe drift: how a live response's shape differs from a recorded one.

``run --record FILE`` keeps, per step, the status, the header names and the (redacted) body.
``replay FILE`` runs the flow again and compares: JSON fields that appeared, vanished or changed
type, a status that changed, headers that came or went. Values are not compared (they change
from run to run); shapes are what a flow's assertions and captures depend on.

A JSON field is named by its path: ``$.orders[*].id``. Items of a list are merged into one
``[*]`` shape, so a list of ten orders and a list of two give the same paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RECORDING_VERSION = 1

# Headers that differ between any two responses and say nothing about the API's shape.
VOLATILE_HEADERS = frozenset(
    {"date", "content-length", "server", "set-cookie", "etag", "last-modified", "age", "expires"}
)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape(value: Any, path: str = "$") -> dict[str, set[str]]:
    """Every path in ``value`` with the JSON types seen there (a set: list items may differ)."""
    out: dict[str, set[str]] = {path: {json_type(value)}}
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        children = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[*]", item) for item in value]
    for child_path, item in children:
        for key, types in shape(item, child_path).items():
            out.setdefault(key, set()).update(types)
    return out


@dataclass(frozen=True)
class StepRecording:
    """What one step's response looked like."""

    status: int | None
    headers: tuple[str, ...]  # lower-case names, volatile ones left out
    content_type: str
    body: Any  # parsed JSON, or the (redacted) text when the body is not JSON

    @classmethod
    def from_response(
        cls, status: int | None, headers: dict[str, str], body_text: str
    ) -> StepRecording:
        lower = {k.lower(): v for k, v in headers.items()}
        content_type = lower.get("content-type", "").split(";")[0].strip()
        body: Any = body_text
        if "json" in content_type or body_text.lstrip().startswith(("{", "[")):
            try:
                body = json.loads(body_text)
            except ValueError:
                body = body_text
        names = tuple(sorted(k for k in lower if k not in VOLATILE_HEADERS))
        return cls(status=status, headers=names, content_type=content_type, body=body)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "headers": list(self.headers),
            "content_type": self.content_type,
            "body": self.body,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecording:
        return cls(
            status=data.get("status"),
            headers=tuple(data.get("headers", ())),
            content_type=str(data.get("content_type", "")),
            body=data.get("body"),
        )


@dataclass(frozen=True)
class Change:
    """One difference: ``kind`` is appeared, vanished, type-changed, status-changed,
    header-appeared, header-vanished, step-missing (recorded, did not run now) or
    step-unrecorded (ran now, not in the recording)."""

    step: str
    kind: str
    path: str
    recorded: str
    live: str

    def sentence(self) -> str:
        if self.kind == "appeared":
            return f"{self.step}: {self.path} appeared ({self.live})"
        if self.kind == "vanished":
            return f"{self.step}: {self.path} vanished (was {self.recorded})"
        if self.kind == "step-missing":
            return f"{self.step}: recorded step did not run now"
        if self.kind == "step-unrecorded":
            return f"{self.step}: step ran now but is not in the recording"
        if self.kind.startswith("header-"):
            return f"{self.step}: header {self.path} {self.kind.removeprefix('header-')}"
        return f"{self.step}: {self.path} changed from {self.recorded} to {self.live}"


def _types(types: set[str]) -> str:
    return "|".join(sorted(types))


def compare_step(step: str, recorded: StepRecording, live: StepRecording) -> list[Change]:
    changes: list[Change] = []
    if recorded.status != live.status:
        changes.append(
            Change(step, "status-changed", "status", str(recorded.status), str(live.status))
        )
    for name in sorted(set(live.headers) - set(recorded.headers)):
        changes.append(Change(step, "header-appeared", name, "", "present"))
    for name in sorted(set(recorded.headers) - set(live.headers)):
        changes.append(Change(step, "header-vanished", name, "present", ""))
    before, after = shape(recorded.body), shape(live.body)
    for path in sorted(set(before) | set(after)):
        if _inside_empty_list(path, before) or _inside_empty_list(path, after):
            continue  # an empty list says nothing about the shape of its items
        if path not in before:
            if _parent(path) in after and _parent(path) not in before:
                continue  # only the top of a new subtree is reported
            changes.append(Change(step, "appeared", path, "", _types(after[path])))
        elif path not in after:
            if _parent(path) in before and _parent(path) not in after:
                continue
            changes.append(Change(step, "vanished", path, _types(before[path]), ""))
        elif before[path] != after[path]:
            changes.append(
                Change(step, "type-changed", path, _types(before[path]), _types(after[path]))
            )
    return changes


def _inside_empty_list(path: str, seen: dict[str, set[str]]) -> bool:
    """``path`` lies under ``X[*]`` where ``X`` is only ever an empty list in ``seen``."""
    at = path.find("[*]")
    while at != -1:
        items, listed = path[: at + 3], path[:at]
        if items not in seen and seen.get(listed) == {"array"}:
            return True
        at = path.find("[*]", at + 3)
    return False


def _parent(path: str) -> str:
    if path.endswith("[*]"):
        return path[:-3]
    head, _, _ = path.rpartition(".")
    return head or "$"


def compare(recorded: dict[str, StepRecording], live: dict[str, StepRecording]) -> list[Change]:
    """Differences between a recording and a live run, step by step, in recorded order, then
    the steps that ran now but were not recorded (their shape is unknown: that is drift too)."""
    changes: list[Change] = []
    for step, before in recorded.items():
        after = live.get(step)
        if after is None:
            changes.append(Change(step, "step-missing", "", "recorded", "not run"))
            continue
        changes.extend(compare_step(step, before, after))
    for step in live:
        if step not in recorded:
            changes.append(Change(step, "step-unrecorded", "", "not recorded", "ran"))
    return changes
