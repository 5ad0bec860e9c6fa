"""Drift risks in a loaded probe flow: valid files that will hurt later.

Rules (:data:`RULES`):

- ``no-assertions``: a step without ``assert`` passes whatever the server answers.
- ``no-timeout``: a step with no ``request.timeout`` in a flow with no explicit
  ``schedule.timeout`` runs on the built-in 30s default, which nobody chose. Either one set
  explicitly is enough; session steps count as the flow's steps.
- ``no-slo``: the flow has no ``slo:``, so its failures count against nothing.
- ``plaintext-secret``: a credential written into the file or taken from somewhere that is not
  redacted: an ``Authorization`` / ``Cookie`` / ``*-Token`` / ``*-Key`` header, a variable,
  form field, query parameter, JSON field or auth setting whose name looks like a password,
  secret, token or API key, or the ``user:password@`` or such a query parameter
  (``?token=...``) of a URL, whose value does not come
  from ``{{ secrets.x }}`` or a capture marked ``secret: true`` (directly or through a
  variable).
- ``unused-capture``: a capture that no later step, ``finally`` step, variable or auth setting
  uses (session captures are exempt: a library serves many flows).
- ``retry-masks-latency``: ``retry.on: any`` with a latency assertion re-runs a slow request
  until a fast one passes; the SLO then never sees the slowness.
- ``retry-not-idempotent``: a retried POST or PATCH may be applied twice by the server.
- ``tls-verify-off``: ``tls.verify: false`` accepts any certificate.
- ``step-timeout-exceeds-flow``: a request timeout longer than the whole run's timeout never
  applies.

Line numbers of headers, variables and settings come from the YAML (``raw``, read from the
flow's and libraries' files when not given); findings fall back to the step's line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from coalmine.errors import SpecError
from coalmine.probes.loader import load_flows_with_errors
from coalmine.probes.model import Flow, Library, Step
from coalmine.probes.template_refs import spans
from coalmine.spec.yamlpos import Cursor, read_documents

__all__ = ["RULES", "Finding", "lint_flow", "lint_flows", "lint_paths"]

Severity = Literal["error", "warning"]

RULES: dict[str, str] = {
    "no-assertions": "a step has no assertions",
    "no-timeout": "neither the request nor the schedule sets a timeout",
    "no-slo": "the flow is not bound to an SLO",
    "plaintext-secret": "a credential that does not come from secrets: or a secret capture",
    "unused-capture": "a captured value is never used",
    "retry-masks-latency": "retry on any failure hides slow responses",
    "retry-not-idempotent": "a POST or PATCH is retried",
    "tls-verify-off": "TLS certificates are not verified",
    "step-timeout-exceeds-flow": "a request timeout longer than the run's timeout",
}
SEVERITY: dict[str, Severity] = {"plaintext-secret": "error"}

_SENSITIVE_NAME = re.compile(
    r"(password|passwd|passphrase|secret|token|api[-_]?key|apikey|credentials?|private[-_]?key)$",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#@\s]*:[^/?#@\s]*)@")
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# Auth settings that hold the credential itself, per scheme type.
_AUTH_SECRET_SETTINGS = {
    "oauth2_client_credentials": ("client_secret",),
    "bearer": ("token",),
    "api_key": ("value",),
    "basic": ("password",),
}


@dataclass(frozen=True, order=True)
class Finding:
    """One lint finding, printable as ``file:line: severity: message [rule]``."""

    file: str
    line: int
    rule: str
    message: str
    severity: Severity = "warning"

    def one_line(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
        }


def _finding(file: str, line: int, rule: str, message: str) -> Finding:
    return Finding(file, line, rule, message, SEVERITY.get(rule, "warning"))


# --------------------------------------------------------------------------- public API


def lint_paths(paths: Sequence[str | Path]) -> tuple[list[Finding], list[SpecError]]:
    """Load ``paths`` (as ``load_flows``) and lint every flow that loads; load errors apart."""
    flows, errors = load_flows_with_errors(paths)
    return lint_flows(flows), errors


def lint_flows(flows: Sequence[Flow]) -> list[Finding]:
    """Findings of every flow, sorted, each once (flows sharing a library report it once)."""
    return sorted({f for flow in flows for f in lint_flow(flow)})


def lint_flow(flow: Flow, raw: Any = None) -> list[Finding]:
    """Findings of one flow (and the parts of its libraries it uses), sorted by file and line.

    ``raw`` is the flow file's parsed document (a ``yamlpos.YMap``); when None it is read from
    ``flow.file`` (missing or unreadable: lines fall back to the model's).
    """
    ctx = _Context(flow, raw)
    out: list[Finding] = []
    if flow.slo is None:
        out.append(
            _finding(
                flow.file,
                flow.where.line or 1,
                "no-slo",
                f"flow '{flow.name}' has no slo: binding; its failures count "
                "against no error budget",
            )
        )
    for item in ctx.steps():
        out.extend(_step_findings(ctx, item))
    out.extend(_variable_findings(ctx))
    out.extend(_auth_findings(ctx))
    out.extend(_unused_captures(ctx))
    return sorted(set(out))


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class _StepAt:
    step: Step
    file: str
    cur: Cursor | None  # the step's YAML mapping, when known
    in_session: bool
    in_finally: bool


def _read(file: str) -> Cursor | None:
    try:
        docs = [d for d in read_documents(file) if d.data is not None]
    except SpecError:
        return None
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        return None
    return Cursor(docs[0].data, file, docs[0].line, "")


def _at(cur: Cursor | None, *path: str | int) -> Cursor | None:
    """The cursor at ``path`` under ``cur``, or None when any part is missing."""
    for part in path:
        if cur is None:
            return None
        if isinstance(part, int):
            if not isinstance(cur.value, list):
                return None
            items = cur.sequence()
            cur = items[part] if part < len(items) else None
        else:
            cur = cur.get(part) if isinstance(cur.value, dict) else None
    return cur


def _line(cur: Cursor | None, fallback: int, *path: str | int) -> int:
    found = _at(cur, *path)
    return found.line if found is not None else fallback


class _Context:
    def __init__(self, flow: Flow, raw: Any) -> None:
        self.flow = flow
        if raw is not None:
            self.raw: Cursor | None = Cursor(raw, flow.file, getattr(raw, "line", 1), "")
        else:
            self.raw = _read(flow.file)
        self.lib_raw: dict[str, Cursor | None] = {lib.file: _read(lib.file) for lib in flow.uses}
        self.secret_captures = {
            ex.name for item in self.steps() for ex in item.step.extract if ex.secret
        }
        self.variables: dict[str, Any] = {}
        for lib in flow.uses:
            self.variables.update(lib.variables)
        self.variables.update(flow.variables)
        for env in flow.environments.values():
            for name, value in env.variables.items():
                self.variables.setdefault(name, value)

    def session_library(self) -> Library | None:
        for lib in self.flow.uses:
            if self.flow.session in lib.sessions:
                return lib
        return None

    def steps(self) -> Iterator[_StepAt]:
        lib = self.session_library()
        if lib is not None and self.flow.session is not None:
            raw = self.lib_raw.get(lib.file)
            for i, step in enumerate(lib.sessions[self.flow.session].steps):
                cur = _at(raw, "sessions", self.flow.session, "steps", i)
                yield _StepAt(step, lib.file, cur, True, False)
        for i, step in enumerate(self.flow.steps):
            yield _StepAt(step, self.flow.file, _at(self.raw, "steps", i), False, False)
        for i, step in enumerate(self.flow.finally_steps):
            yield _StepAt(step, self.flow.file, _at(self.raw, "finally", i), False, True)

    def schedule_timeout_explicit(self) -> bool:
        if self.raw is None:
            return True  # no file to tell: assume it was chosen
        return _at(self.raw, "schedule", "timeout") is not None

    def secret_backed(self, text: Any, depth: int = 0) -> bool | None:
        """True: the value comes from a secret; False: from something not redacted (env,
        a plain capture or variable); None: a literal with no reference at all."""
        if not isinstance(text, str):
            return None
        try:
            refs = spans(text)
        except ValueError:
            return None
        if not refs:
            return None
        for ref in refs:
            if ref.namespace == "secrets" or ref.name in self.secret_captures:
                return True
            if (
                not ref.namespace
                and ref.name in self.variables
                and depth < 5
                and self.secret_backed(self.variables[ref.name], depth + 1)
            ):
                return True
        return False


# --------------------------------------------------------------------------- rules


def _where(item: _StepAt) -> str:
    return f"session step '{item.step.name}'" if item.in_session else f"step '{item.step.name}'"


def _step_findings(ctx: _Context, item: _StepAt) -> Iterator[Finding]:
    step, file, line = item.step, item.file, item.step.where.line
    req = step.request
    if not step.asserts:
        yield _finding(
            file,
            line,
            "no-assertions",
            f"{_where(item)} has no assertions; it passes whatever the server "
            "answers (add at least: status == 200)",
        )
    if req.timeout_s is None and not ctx.schedule_timeout_explicit():
        yield _finding(
            file,
            line,
            "no-timeout",
            f"{_where(item)} has no request timeout and the flow sets no "
            "schedule.timeout; the 30s default applies (set one of them)",
        )
    flow_timeout = ctx.flow.schedule.timeout_s
    if req.timeout_s is not None and req.timeout_s > flow_timeout:
        yield _finding(
            file,
            _line(item.cur, line, "request", "timeout"),
            "step-timeout-exceeds-flow",
            f"{_where(item)} waits up to {req.timeout_s:g}s but the whole run is cut "
            f"at {flow_timeout:g}s (schedule.timeout)",
        )
    if not req.tls.verify:
        yield _finding(
            file,
            _line(item.cur, line, "request", "tls", "verify"),
            "tls-verify-off",
            f"{_where(item)} accepts any TLS certificate; give tls.ca instead",
        )
    if step.retry.count > 0:
        if step.retry.on == "any" and any(
            a.subject in ("latency", "flow_latency") for a in step.asserts
        ):
            yield _finding(
                file,
                _line(item.cur, line, "retry", "on"),
                "retry-masks-latency",
                f"{_where(item)} retries on any failure and asserts latency: a slow "
                "response is retried until a fast one passes (use on: network)",
            )
        if req.method in ("POST", "PATCH"):
            yield _finding(
                file,
                _line(item.cur, line, "retry"),
                "retry-not-idempotent",
                f"{_where(item)} retries a {req.method}; the server may apply it "
                "twice (remove retry:, or make the request idempotent)",
            )
    yield from _request_secrets(ctx, item)


def _request_secrets(ctx: _Context, item: _StepAt) -> Iterator[Finding]:
    req = item.step.request
    places: list[tuple[str, str, Any, tuple[str | int, ...]]] = []
    for name, value in req.headers.items():
        if name.lower() in _SENSITIVE_HEADERS or _SENSITIVE_NAME.search(name):
            places.append(("header", name, value, ("request", "headers", name)))
    for section, mapping in (("query parameter", req.query), ("form field", req.form or {})):
        key = "query" if section.startswith("query") else "form"
        for name, value in mapping.items():
            if _SENSITIVE_NAME.search(name):
                places.append((section, name, value, ("request", key, name)))
    for path, name, value in _json_fields(req.json, ()):
        if _SENSITIVE_NAME.search(name):
            places.append(("JSON field", name, value, ("request", "json", *path)))
    for what, name, value in _url_secrets(req.url):
        places.append((what, name, value, ("request", "url")))
    for what, name, value, path in places:
        line = _line(item.cur, item.step.where.line, *path)
        found = _secret_problem(ctx, f"{_where(item)}: {what} '{name}'", value)
        if found:
            yield _finding(item.file, line, "plaintext-secret", found)


def _url_secrets(url: str) -> list[tuple[str, str, str]]:
    """(what, name, value) of each credential written into a URL: its ``user:password@`` and
    the query parameters named like one (``?token=...``, ``?api_key=...``)."""
    out: list[tuple[str, str, str]] = []
    userinfo = _URL_USERINFO.match(url)
    if userinfo:
        out.append(("URL", "user:password", userinfo.group(1)))
    query = url.partition("?")[2].partition("#")[0]
    for name, value in parse_qsl(query, keep_blank_values=True):
        if value and _SENSITIVE_NAME.search(name):
            out.append(("URL query parameter", name, value))
    return out


def _json_fields(
    value: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, dict | list):
                yield from _json_fields(child, (*path, key))
            else:
                yield (*path, key), str(key), child
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _json_fields(child, (*path, i))


def _secret_problem(ctx: _Context, what: str, value: Any) -> str | None:
    backed = ctx.secret_backed(value)
    if backed is True:
        return None
    if backed is None:
        return (
            f"{what} is written in plain text; declare it under secrets: and use "
            "{{ secrets.name }}"
        )
    return (
        f"{what} does not come from a secret, so it is not redacted; use {{{{ secrets.name }}}} "
        "or capture it with secret: true"
    )


def _variable_findings(ctx: _Context) -> Iterator[Finding]:
    flow = ctx.flow
    sources: list[tuple[str, dict[str, Any], Cursor | None, tuple[str, ...]]] = [
        (flow.file, flow.variables, ctx.raw, ("variables",))
    ]
    for env in flow.environments.values():
        sources.append((flow.file, env.variables, ctx.raw, ("environments", env.name, "variables")))
    for lib in flow.uses:
        sources.append((lib.file, lib.variables, ctx.lib_raw.get(lib.file), ("variables",)))
    for env in flow.environments.values():
        for what, name, value in _url_secrets(env.base_url):
            found = _secret_problem(
                ctx, f"environment '{env.name}': base_url {what} '{name}'", value
            )
            if found:
                line = _line(ctx.raw, env.where.line, "environments", env.name, "base_url")
                yield _finding(flow.file, line, "plaintext-secret", found)
    for file, variables, raw, path in sources:
        for name, value in variables.items():
            if not _SENSITIVE_NAME.search(name):
                continue
            found = _secret_problem(ctx, f"variable '{name}'", value)
            if found:
                line = _line(raw, 1, *path, name)
                yield _finding(file, line, "plaintext-secret", found)


def _used_auth(flow: Flow, steps: list[_StepAt]) -> set[str]:
    used = {flow.auth} if flow.auth else set()
    used.update(s.step.request.auth for s in steps if s.step.request.auth)
    return used


def _auth_findings(ctx: _Context) -> Iterator[Finding]:
    used = _used_auth(ctx.flow, list(ctx.steps()))
    for lib in ctx.flow.uses:
        raw = ctx.lib_raw.get(lib.file)
        for name, scheme in lib.auth.items():
            if name not in used:
                continue
            for key in _AUTH_SECRET_SETTINGS[scheme.type]:
                found = _secret_problem(ctx, f"auth '{name}' {key}", scheme.settings.get(key))
                if found:
                    line = _line(raw, scheme.where.line, "auth", name, key)
                    yield _finding(lib.file, line, "plaintext-secret", found)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for child in value.values():
            yield from _strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child)


def _step_templates(step: Step) -> Iterator[str]:
    req = step.request
    yield req.url
    yield from req.headers.values()
    yield from req.query.values()
    yield from _strings(req.json)
    yield from (req.form or {}).values()
    if req.body is not None:
        yield req.body
    for a in step.asserts:
        if a.subject != "schema":
            yield from _strings(a.value)


def _unused_captures(ctx: _Context) -> Iterator[Finding]:
    flow = ctx.flow
    texts: list[str] = []
    for item in ctx.steps():
        texts.extend(_step_templates(item.step))
    texts.extend(_strings(flow.variables))
    for env in flow.environments.values():
        texts.extend(_strings(env.variables))
    for lib in flow.uses:
        texts.extend(_strings(lib.variables))
        for scheme in lib.auth.values():
            texts.extend(_strings(scheme.settings))
    used: set[str] = set()
    for text in texts:
        try:
            used.update(r.name for r in spans(text) if not r.namespace)
        except ValueError:
            continue
    for item in ctx.steps():
        if item.in_session:
            continue
        for ex in item.step.extract:
            if ex.name not in used:
                yield _finding(
                    item.file,
                    ex.where.line,
                    "unused-capture",
                    f"{_where(item)} captures '{ex.name}' but nothing uses "
                    "{{ " + ex.name + " }}; remove it or use it",
                )
