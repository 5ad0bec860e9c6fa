"""Probe drift: shapes of recorded and live responses."""

from __future__ import annotations

import json

from coalmine.probes.drift import StepRecording, compare, shape


def rec(body: object, status: int = 200, **headers: str) -> StepRecording:
    head = {"Content-Type": "application/json", "Date": "today", **headers}
    return StepRecording.from_response(status, head, json.dumps(body))


def test_shape_merges_list_items_and_names_paths() -> None:
    got = shape({"orders": [{"id": 1}, {"id": "x", "note": None}]})
    assert got["$.orders"] == {"array"}
    assert got["$.orders[*].id"] == {"number", "string"}
    assert got["$.orders[*].note"] == {"null"}


def test_same_shape_with_other_values_is_no_drift() -> None:
    before = {"list": rec({"orders": [{"id": 1, "total": 3.5}]})}
    after = {"list": rec({"orders": [{"id": 7, "total": 9}, {"id": 8, "total": 1.25}]})}
    assert compare(before, after) == []


def test_appeared_vanished_and_type_changed_fields() -> None:
    before = {"get": rec({"id": 1, "price": 10, "tags": ["a"]})}
    after = {"get": rec({"id": "1", "tags": ["a"], "meta": {"v": 2, "w": 3}})}
    changes = {(c.kind, c.path) for c in compare(before, after)}
    assert changes == {
        ("type-changed", "$.id"),
        ("vanished", "$.price"),
        ("appeared", "$.meta"),  # only the top of a new subtree
    }
    sentences = [c.sentence() for c in compare(before, after)]
    assert "get: $.id changed from number to string" in sentences


def test_status_headers_and_missing_steps_are_reported() -> None:
    before = {"a": rec({}, 200, **{"X-Trace": "1"}), "b": rec({})}
    after = {"a": rec({}, 503, **{"Retry-After": "5"})}
    kinds = [(c.kind, c.path) for c in compare(before, after)]
    assert ("status-changed", "status") in kinds
    assert ("header-appeared", "retry-after") in kinds
    assert ("header-vanished", "x-trace") in kinds
    assert ("step-missing", "") in kinds
    assert all(p != "date" for _, p in kinds)  # volatile headers are ignored


def test_non_json_body_is_a_string_shape() -> None:
    before = {"s": StepRecording.from_response(200, {"Content-Type": "text/plain"}, "ok")}
    after = {"s": rec({"ok": True})}
    assert [(c.kind, c.path, c.recorded, c.live) for c in compare(before, after)] == [
        ("type-changed", "$", "string", "object"),
        ("appeared", "$.ok", "", "boolean"),
    ]


def test_a_step_that_ran_but_was_not_recorded_is_drift() -> None:
    before = {"a": rec({"id": 1})}
    after = {"a": rec({"id": 2}), "b": rec({"ok": True})}
    changes = compare(before, after)
    assert [(c.step, c.kind) for c in changes] == [("b", "step-unrecorded")]
    assert changes[0].sentence() == "b: step ran now but is not in the recording"
