"""Secret values: reading them, and keeping them out of everything a probe run outputs.

A :class:`Redactor` belongs to one flow run. It learns secret values as they appear:

- *declared* secrets — resolved ``SecretRef`` values, captures marked ``secret: true``, auth
  credentials and tokens, URL user-info passwords — are always redacted. Values of four
  characters or more are replaced wherever they occur; shorter ones only where they stand alone
  (not inside a longer word or number), so a 3-character secret cannot turn every ``abc`` of a
  response into ``***``;
- *observed* values — of sensitive headers (``Authorization``, ``Cookie``, ``Set-Cookie``,
  ``X-API-Key`` and names containing token/secret/password/session/api-key) and of string
  fields with such names in JSON response bodies — are redacted when at least
  :data:`MIN_OBSERVED` characters long (shorter ones are rarely credentials, and redacting them
  would shred ordinary output).

Each value is also redacted in its URL-encoded and JSON-escaped forms. :meth:`Redactor.redact`
replaces the longest match first with ``***``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from coalmine.errors import CoalmineError
from coalmine.probes.model import SecretRef

__all__ = [
    "MASK",
    "MIN_OBSERVED",
    "Redactor",
    "SecretError",
    "SecretStore",
    "is_sensitive_header",
    "read_secret",
]

MASK = "***"
MIN_SUBSTRING = 4  # declared secrets shorter than this are redacted as whole tokens only
MIN_OBSERVED = 8  # observed (heuristic) values shorter than this are left alone

_SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-csrf-token",
        "x-xsrf-token",
    }
)
_SENSITIVE_PART = re.compile(r"token|secret|passw|session|api-?key|credential", re.IGNORECASE)
_SENSITIVE_FIELD = re.compile(
    r"passw|secret|token|api_?key|apikey|authorization|credential|session|csrf|xsrf",
    re.IGNORECASE,
)
_NOT_SENSITIVE_FIELDS = frozenset({"token_type", "expires_in", "session_expires", "tokens_used"})


class SecretError(CoalmineError):
    """A secret cannot be read. The message names the secret, never its value."""


def is_sensitive_header(name: str) -> bool:
    low = name.lower()
    return low in _SENSITIVE_HEADERS or bool(_SENSITIVE_PART.search(low))


def _error(ref: SecretRef, message: str, hint: str | None = None) -> SecretError:
    return SecretError(
        f"secret '{ref.name}': {message}",
        file=ref.where.file or None,
        line=ref.where.line or None,
        field=f"secrets.{ref.name}",
        hint=hint,
    )


def read_secret(ref: SecretRef, environ: Mapping[str, str]) -> str:
    """The value of ``ref`` from its environment variable or file (one trailing newline off)."""
    if ref.env is not None:
        value = environ.get(ref.env)
        if value is None:
            raise _error(
                ref,
                f"environment variable {ref.env} is not set",
                f"export {ref.env} where the probes run",
            )
        source = f"environment variable {ref.env}"
    elif ref.file is not None:
        try:
            value = Path(ref.file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _error(
                ref,
                f"file {ref.file} does not exist",
                "create it where the probes run (paths are relative to the YAML file)",
            ) from None
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "unreadable"
            raise _error(ref, f"cannot read {ref.file}: {reason}") from None
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
        source = f"file {ref.file}"
    else:
        raise _error(ref, "has neither env nor file")
    if value == "":
        raise _error(ref, f"{source} is empty")
    return value


class Redactor:
    """Replaces every known secret value in text with ``***`` (see the module docstring)."""

    def __init__(self) -> None:
        self._long: set[str] = set()
        self._short: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._dirty = False

    # ---------------------------------------------------------------- learning

    def add(self, value: Any) -> None:
        """A declared secret: always redacted (short values as whole tokens)."""
        if value is None or isinstance(value, bool):
            return
        text = value if isinstance(value, str) else json.dumps(value)
        if not text:
            return
        for form in _forms(text):
            target = self._long if len(form) >= MIN_SUBSTRING else self._short
            if form not in target:
                target.add(form)
                self._dirty = True

    def observe(self, value: str) -> None:
        """A value that looks like a credential: redacted when long enough."""
        if len(value) >= MIN_OBSERVED:
            self.add(value)

    def observe_header(self, name: str, value: str) -> None:
        if not is_sensitive_header(name):
            return
        low = name.lower()
        if low in ("cookie", "set-cookie"):
            pairs = value.split(";") if low == "cookie" else value.split(";")[:1]
            for pair in pairs:
                _, eq, val = pair.partition("=")
                if eq:
                    self.observe(val.strip().strip('"'))
            return
        _, space, rest = value.partition(" ")
        if space and low in ("authorization", "proxy-authorization") and rest.strip():
            self.observe(rest.strip())
        self.observe(value.strip())

    def observe_headers(self, headers: Iterable[tuple[str, str]]) -> None:
        for name, value in headers:
            self.observe_header(name, value)

    def observe_json(self, data: Any) -> None:
        """String values of fields named like credentials, anywhere in a JSON document."""
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and _is_sensitive_field(str(key)):
                    self.observe(value)
                else:
                    self.observe_json(value)
        elif isinstance(data, list):
            for item in data:
                self.observe_json(item)

    def observe_body(self, text: str, content_type: str = "") -> None:
        stripped = text.lstrip()
        if "json" not in content_type and not stripped.startswith(("{", "[")):
            return
        try:
            self.observe_json(json.loads(text))
        except ValueError:
            return

    # ---------------------------------------------------------------- redacting

    def _compiled(self) -> re.Pattern[str] | None:
        if self._dirty or (self._pattern is None and (self._long or self._short)):
            parts = [re.escape(v) for v in sorted(self._long, key=len, reverse=True)]
            parts += [
                rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])"
                for v in sorted(self._short, key=len, reverse=True)
            ]
            self._pattern = re.compile("|".join(parts)) if parts else None
            self._dirty = False
        return self._pattern

    def redact(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def redact_url(self, url: str) -> str:
        """The URL with any user-info replaced and known secrets redacted."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.redact(url)
        if parts.username is not None or parts.password is not None:
            if parts.password:
                self.add(parts.password)
            host = parts.netloc.rpartition("@")[2]
            url = urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))
        return self.redact(url)

    def redact_header(self, name: str, value: str) -> str:
        """A header value for display: sensitive ones masked (cookie names and attributes kept)."""
        low = name.lower()
        if not is_sensitive_header(low):
            return self.redact(value)
        if low == "cookie":
            return "; ".join(_mask_pair(p.strip()) for p in value.split(";") if p.strip())
        if low == "set-cookie":
            first, sep, attrs = value.partition(";")
            return _mask_pair(first.strip()) + (sep + self.redact(attrs) if sep else "")
        scheme, space, rest = value.partition(" ")
        if space and low in ("authorization", "proxy-authorization") and rest:
            return f"{scheme} {MASK}"
        return MASK

    def redact_headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(name, self.redact_header(name, value)) for name, value in headers]


def _mask_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    return f"{name}={MASK}" if eq else MASK


def _is_sensitive_field(key: str) -> bool:
    return key.lower() not in _NOT_SENSITIVE_FIELDS and bool(_SENSITIVE_FIELD.search(key))


def _forms(value: str) -> set[str]:
    """The value as it may appear in URLs, form bodies and JSON text."""
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    return {f for f in forms if f}


class SecretStore:
    """The secrets a run may use. Every readable one is added to the redactor up front (so it
    is redacted even where it was never sent); an unreadable one fails only when used."""

    def __init__(
        self, refs: Mapping[str, SecretRef], environ: Mapping[str, str], redactor: Redactor
    ) -> None:
        self._values: dict[str, str] = {}
        self._errors: dict[str, SecretError] = {}
        for name, ref in refs.items():
            try:
                value = read_secret(ref, environ)
            except SecretError as err:
                self._errors[name] = err
                continue
            self._values[name] = value
            redactor.add(value)

    def get(self, name: str) -> str:
        if name in self._values:
            return self._values[name]
        if name in self._errors:
            raise self._errors[name]
        raise SecretError(f"unknown secret '{name}'", field=f"secrets.{name}")
