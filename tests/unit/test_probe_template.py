"""Rendering probe templates: variables, secrets, env, generators, types, errors."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

import pytest

from coalmine.probes.template import Scope, TemplateError, render, render_json, render_value

NOW = 1_700_000_000.25


def scope(*layers: Mapping[str, object], seed: int = 7) -> Scope:
    secrets = {"api_key": "k-123456789"}

    def secret(name: str) -> str:
        if name not in secrets:
            raise TemplateError(f"unknown secret '{name}'")
        return secrets[name]

    return Scope(
        list(layers),
        secret=secret,
        environ={"REGION": "eu-west-1"},
        clock=lambda: NOW,
        rng=random.Random(seed),
    )


def test_variables_secrets_and_env_are_substituted() -> None:
    s = scope({"base_url": "http://h:1", "order_id": "ord-1"})
    out = render("{{ base_url }}/orders/{{order_id}}?k={{ secrets.api_key }}&r={{ env.REGION }}", s)
    assert out == "http://h:1/orders/ord-1?k=k-123456789&r=eu-west-1"


def test_the_first_layer_that_has_a_name_wins() -> None:
    captures = {"user": "from-capture"}
    s = scope(captures, {"user": "from-env", "region": "env"}, {"region": "flow", "x": 1})
    assert render("{{ user }} {{ region }} {{ x }}", s) == "from-capture env 1"


def test_a_lone_placeholder_keeps_the_value_type_in_json_bodies() -> None:
    s = scope({"qty": 3, "ok": True, "ids": [1, 2], "name": "pen"})
    body = {
        "quantity": "{{ qty }}",
        "flag": "{{ ok }}",
        "ids": "{{ ids }}",
        "label": "{{ name }} x{{ qty }}",
        "nested": [{"{{ name }}": "{{ qty }}"}],
        "plain": 4.5,
    }
    assert render_json(body, s) == {
        "quantity": 3,
        "flag": True,
        "ids": [1, 2],
        "label": "pen x3",
        "nested": [{"pen": 3}],
        "plain": 4.5,
    }
    # inside text, non-strings are written as JSON
    assert render("{{ ok }}/{{ ids }}", s) == "true/[1,2]"
    assert render_value("{{ qty }}", s) == 3


def test_generators_are_deterministic_with_an_injected_clock_and_rng() -> None:
    a = scope()
    b = scope()
    text = "{{ uuid }} {{ random_int }} {{ random_hex }}"
    assert render(text, a) == render(text, b)  # same seed, same values
    assert render_value("{{ timestamp }}", a) == 1_700_000_000
    assert render_value("{{ timestamp_ms }}", a) == 1_700_000_000_250
    assert render_value("{{ iso_now }}", a) == "2023-11-14T22:13:20.250Z"
    value = render_value("{{ uuid }}", a)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value
    )
    assert re.fullmatch(r"[0-9a-f]{16}", render_value("{{ random_hex }}", a))
    number = render_value("{{ random_int }}", a)
    assert isinstance(number, int) and 0 <= number < 2**31


def test_each_generator_reference_is_fresh_but_a_variable_is_rendered_once_per_run() -> None:
    s = scope({"ref": "order-{{ uuid }}"})
    first, second = render("{{ uuid }}", s), render("{{ uuid }}", s)
    assert first != second
    assert render("{{ ref }}", s) == render("{{ ref }}", s)
    assert render("{{ ref }}", s).startswith("order-")


def test_variables_can_use_other_variables_but_not_themselves() -> None:
    s = scope(
        {"host": "h", "url": "http://{{ host }}/x", "loop": "{{ loop2 }}", "loop2": "{{ loop }}"}
    )
    assert render("{{ url }}", s) == "http://h/x"
    with pytest.raises(TemplateError, match="refers to itself"):
        render("{{ loop }}", s)


def test_unknown_names_raise_template_errors_naming_them() -> None:
    s = scope({"known": 1})
    with pytest.raises(TemplateError, match="unknown variable 'order_id'"):
        render("/orders/{{ order_id }}", s)
    with pytest.raises(TemplateError, match="HOME_REGION is not set"):
        render("{{ env.HOME_REGION }}", s)
    with pytest.raises(TemplateError, match="unknown secret 'nope'"):
        render("{{ secrets.nope }}", s)
    with pytest.raises(TemplateError, match="never closed"):
        render("{{ known", s)
    with pytest.raises(TemplateError, match="not a name"):
        render("{{ a b }}", s)


def test_text_without_placeholders_is_unchanged() -> None:
    s = scope()
    assert render("plain } { text", s) == "plain } { text"
    assert render_json({"a": [1, None, "x"]}, s) == {"a": [1, None, "x"]}
