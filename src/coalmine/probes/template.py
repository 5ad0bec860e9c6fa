"""Rendering ``{{ ... }}`` templates in probe requests (the parser is ``template_refs``).

Names resolve through a :class:`Scope`: ``{{ secrets.x }}`` from the run's secrets,
``{{ env.NAME }}`` from the process environment, generators (``uuid``, ``timestamp``,
``timestamp_ms``, ``iso_now``, ``random_int``, ``random_hex``) from the injected clock and random
generator, and any other name from the scope's variables. Each generator reference produces a
fresh value; a variable whose value is itself a template (``order_ref: "{{ uuid }}"``) is
rendered once per run and then keeps that value.

A string that is exactly one placeholder keeps the value's type in JSON bodies
(``"{{ order_id }}"`` with a captured ``17`` sends the number 17); inside longer text a
non-string value is written as JSON (``true``, ``1.5``, ``[1, 2]``). An unknown name is a
:class:`TemplateError` naming it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from coalmine.errors import CoalmineError
from coalmine.probes.template_refs import GENERATORS, Ref, spans

__all__ = ["Scope", "TemplateError", "render", "render_json", "render_value", "to_text"]


class TemplateError(CoalmineError):
    """A placeholder that cannot be resolved (the probe reason ``template``)."""


# Per-run memo of variables that were templates themselves, keyed by name.
_RENDERING = object()


class Scope:
    """What names mean during one flow run.

    ``variables`` is looked up in order (the first mapping that has the name wins): pass
    ``[captures, environment, flow, libraries, builtins]``. ``secret`` returns a secret's value or
    raises (the caller decides how missing secrets are reported).
    """

    def __init__(
        self,
        variables: list[Mapping[str, Any]],
        *,
        secret: Callable[[str], str] | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.layers = variables
        self._secret = secret
        self.environ: Mapping[str, str] = environ if environ is not None else {}
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self._rendered: dict[str, Any] = {}

    # ---------------------------------------------------------------- lookups

    def lookup(self, ref: Ref) -> Any:
        if ref.namespace == "secrets":
            if self._secret is None:
                raise TemplateError(f"unknown secret '{ref.name}'", field="secrets")
            return self._secret(ref.name)
        if ref.namespace == "env":
            if ref.name not in self.environ:
                raise TemplateError(
                    f"environment variable {ref.name} is not set",
                    hint=f"export {ref.name} in the probe's environment",
                )
            return self.environ[ref.name]
        return self.variable(ref.name)

    def variable(self, name: str) -> Any:
        for layer in self.layers:
            if name in layer:
                return self._once(name, layer[name])
        if name in GENERATORS:
            return self.generate(name)
        raise TemplateError(
            f"unknown variable '{name}'",
            hint="define it under variables:, in the environment, or capture it in an earlier step",
        )

    def _once(self, name: str, value: Any) -> Any:
        """A variable's value with its own templates rendered (once per run, cycles refused)."""
        if not _has_template(value):
            return value
        done = self._rendered.get(name)
        if done is _RENDERING:
            raise TemplateError(f"variable '{name}' refers to itself")
        if name in self._rendered:
            return done
        self._rendered[name] = _RENDERING
        try:
            result = render_json(value, self)
        except BaseException:
            del self._rendered[name]
            raise
        self._rendered[name] = result
        return result

    def generate(self, name: str) -> Any:
        now = self.clock()
        if name == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if name == "timestamp":
            return int(now)
        if name == "timestamp_ms":
            return int(now * 1000)
        if name == "iso_now":
            stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
            return stamp.replace("+00:00", "Z")
        if name == "random_int":
            return self.rng.randrange(0, 2**31)
        if name == "random_hex":
            return f"{self.rng.getrandbits(64):016x}"
        raise TemplateError(f"unknown generator '{name}'")  # pragma: no cover - GENERATORS


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False


def _parse(text: str) -> list[Ref]:
    try:
        return spans(text)
    except ValueError as err:
        raise TemplateError(str(err)) from None


def to_text(value: Any) -> str:
    """How a value is written inside text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"))


def render(text: str, scope: Scope) -> str:
    """``text`` with every placeholder replaced by its value written as text."""
    refs = _parse(text)
    if not refs:
        return text
    out: list[str] = []
    pos = 0
    for ref in refs:
        out.append(text[pos : ref.start])
        out.append(to_text(scope.lookup(ref)))
        pos = ref.end
    out.append(text[pos:])
    return "".join(out)


def render_value(text: str, scope: Scope) -> Any:
    """Like :func:`render`, but a string that is exactly one placeholder keeps its type."""
    refs = _parse(text)
    if len(refs) == 1 and refs[0].start == 0 and refs[0].end == len(text):
        return scope.lookup(refs[0])
    return render(text, scope) if refs else text


def render_json(value: Any, scope: Scope) -> Any:
    """Render every string inside a JSON-like value (keys included, as text)."""
    if isinstance(value, str):
        return render_value(value, scope)
    if isinstance(value, list):
        return [render_json(v, scope) for v in value]
    if isinstance(value, tuple):
        return [render_json(v, scope) for v in value]
    if isinstance(value, dict):
        return {render(str(k), scope): render_json(v, scope) for k, v in value.items()}
    return value
