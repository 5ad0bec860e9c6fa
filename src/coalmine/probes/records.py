"""What a probe step saw: the response as assertions and captures read it, and as recorded.

:class:`Observed` is the in-memory view (not redacted: captures need the real values; it never
leaves the run). :class:`ResponseRecord` is what a run hands to ``on_response`` (``run
--record`` and ``replay`` build their recordings from it): redacted headers and body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NotJSON", "Observed", "ResponseRecord"]


class NotJSON(ValueError):
    """The body is not JSON (for a JSONPath, a schema or a capture)."""


_UNSET = object()


@dataclass
class Observed:
    """One response with the step's and the flow's latency so far (seconds)."""

    status: int
    headers: list[tuple[str, str]]
    text: str
    cookies: Mapping[str, str] = field(default_factory=dict)  # this response's, then the jar's
    latency_s: float = 0.0
    flow_latency_s: float = 0.0
    _json: Any = field(default=_UNSET, repr=False)

    def header(self, name: str) -> str | None:
        """The header's value (several occurrences joined with ``, ``); None when absent."""
        low = name.lower()
        values = [v for k, v in self.headers if k.lower() == low]
        return ", ".join(values) if values else None

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        """The parsed body; :class:`NotJSON` when it is not JSON (parsed once)."""
        if self._json is _UNSET:
            try:
                self._json = json.loads(self.text)
            except ValueError:
                shown = self.content_type or "no content type"
                raise NotJSON(f"the body is not JSON ({shown})") from None
        return self._json


@dataclass(frozen=True)
class ResponseRecord:
    """One response of one step attempt, redacted (``body`` is the redacted text)."""

    step: str
    attempt: int  # 1-based
    method: str
    url: str
    status: int | None
    headers: dict[str, str]
    body: str
