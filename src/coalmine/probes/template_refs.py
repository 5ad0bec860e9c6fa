"""Finding the ``{{ ... }}`` references in a probe template string (parsing only, no rendering).

Three forms, each with optional spaces inside the braces:

- ``{{ name }}``: a flow, environment or library variable, a capture of an earlier step,
  ``base_url``, or a generator (:data:`GENERATORS`);
- ``{{ secrets.name }}``: a declared secret (its value is redacted from every output);
- ``{{ env.NAME }}``: a variable of the probe process's environment.

Names are identifiers (``[A-Za-z_][A-Za-z0-9_]*``). Text outside the braces is literal; a lone
``}}`` is literal too. An unclosed ``{{`` or anything else inside the braces is a
:class:`ValueError` naming the position, so mistakes are caught when the file is loaded rather
than sent to a server. The renderer (``coalmine.probes.template``) uses :func:`spans` to
substitute and the loader uses :func:`references` to check that every name is defined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "GENERATORS",
    "IDENTIFIER",
    "Ref",
    "has_template",
    "references",
    "spans",
]

GENERATORS: tuple[str, ...] = (
    "uuid",  # a random UUID4
    "timestamp",  # Unix seconds (integer)
    "timestamp_ms",  # Unix milliseconds (integer)
    "iso_now",  # ISO 8601 UTC time
    "random_int",  # a random non-negative integer
    "random_hex",  # 16 random hex digits
)
NAMESPACES: tuple[str, ...] = ("secrets", "env")

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INSIDE = re.compile(r"\s*(?:(secrets|env)\.)?([A-Za-z_][A-Za-z0-9_]*)\s*")


@dataclass(frozen=True)
class Ref:
    """One ``{{ ... }}`` in a string: ``text[start:end]`` is the whole placeholder.

    ``namespace`` is ``"secrets"``, ``"env"`` or ``""``; ``name`` is the part after it.
    """

    namespace: str
    name: str
    start: int
    end: int

    @property
    def qualified(self) -> str:
        """``secrets.x``, ``env.X`` or ``x``: what :func:`references` returns."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name


def spans(text: str) -> list[Ref]:
    """Every placeholder of ``text`` in order. Raises ``ValueError`` on malformed braces."""
    out: list[Ref] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            return out
        close = text.find("}}", start + 2)
        nested = text.find("{{", start + 2)
        if close < 0 or (0 <= nested < close):
            raise ValueError(f"'{{{{' at position {start} is never closed; write {{{{ name }}}}")
        inner = text[start + 2 : close]
        match = _INSIDE.fullmatch(inner)
        if match is None:
            shown = inner.strip() or "nothing"
            raise ValueError(
                f"invalid placeholder {{{{{inner}}}}} at position {start}: {shown!r} is not a "
                "name; use {{ name }}, {{ secrets.name }} or {{ env.NAME }}"
            )
        out.append(Ref(match.group(1) or "", match.group(2), start, close + 2))
        pos = close + 2


def references(text: str) -> list[str]:
    """The names ``text`` refers to, in order, with repeats: ``["base_url", "secrets.token"]``.

    >>> references("{{ base_url }}/orders/{{order_id}}?k={{ secrets.key }}&u={{ env.USER }}")
    ['base_url', 'order_id', 'secrets.key', 'env.USER']
    """
    return [ref.qualified for ref in spans(text)]


def has_template(text: str) -> bool:
    """Whether ``text`` contains a ``{{`` (well-formed or not)."""
    return "{{" in text
