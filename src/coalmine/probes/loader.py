"""Probe flow and library files (``kind: ProbeFlow`` / ``kind: ProbeLibrary``) -> the model.

Loading checks the structure (unknown keys get a did-you-mean), every value (durations, methods,
JSONPaths, regular expressions, JSON Schemas, assertion syntax) and every reference: ``uses``
files, auth scheme and session names, ``{{ secrets.x }}`` names and template variables. Each
problem is a :class:`SpecError` naming ``file:line``, the dotted field and a hint.

Where a template name may come from (checked in this order):

- generators (``uuid``, ``timestamp``...), ``base_url`` and ``env.NAME`` (the process
  environment, not checked);
- flow variables, library variables, and environment variables declared in *every*
  environment (a name missing from one environment would fail there at run time);
- captures of earlier steps, the session's captures included; ``finally`` steps see every
  capture of ``steps``;
- ``secrets.x``: flow secrets, library secrets, or secrets declared in every environment.

Library templates (auth settings, session steps) are checked in the scope of each flow that
uses them, so a library may rely on names the flows provide (per-environment credentials, for
instance). ``load_library`` alone checks a library's structure.

Request ``auth: none`` turns the flow's default auth off for one request (:data:`NO_AUTH`).
Secret files are not read at load time (they may exist only where probes run); JSON Schema
files and TLS CA files are, since they are part of the flow's definition.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from jsonschema import SchemaError
from jsonschema.validators import validator_for

from coalmine.durations import parse_duration
from coalmine.errors import SpecError
from coalmine.metrics.jsonpath import compile_path
from coalmine.probes.model import (
    NO_AUTH,
    OPERATORS,
    Assertion,
    AuthScheme,
    Environment,
    Extract,
    Flow,
    Library,
    Request,
    Retry,
    Schedule,
    SecretRef,
    Session,
    SLOBinding,
    Step,
    TLSOptions,
    Where,
)
from coalmine.probes.template_refs import GENERATORS, IDENTIFIER, references, spans
from coalmine.spec.yamlpos import Cursor, closest, read_documents, root_cursor, to_plain

__all__ = [
    "API_VERSION",
    "FLOW_KIND",
    "LIBRARY_KIND",
    "NO_AUTH",
    "collect_flow_errors",
    "load_flow",
    "load_flows",
    "load_flows_with_errors",
    "load_library",
    "parse_assertion",
]

API_VERSION = "coalmine.dev/v1"
FLOW_KIND = "ProbeFlow"
LIBRARY_KIND = "ProbeLibrary"

FLOW_FIELDS = (
    "apiVersion",
    "kind",
    "metadata",
    "slo",
    "schedule",
    "uses",
    "auth",
    "session",
    "variables",
    "secrets",
    "environments",
    "steps",
    "finally",
)
LIBRARY_FIELDS = ("apiVersion", "kind", "metadata", "auth", "sessions", "variables", "secrets")
FLOW_METADATA_FIELDS = ("name", "service", "owner", "labels")
LIBRARY_METADATA_FIELDS = ("name", "owner", "labels")
SLO_FIELDS = ("name", "objective")
SCHEDULE_FIELDS = ("interval", "jitter", "timeout", "locations", "versions")
ENVIRONMENT_FIELDS = ("base_url", "variables", "secrets")
SECRET_FIELDS = ("env", "file")
STEP_FIELDS = ("name", "request", "extract", "assert", "retry", "allow_failure", "critical")
REQUEST_FIELDS = (
    "method",
    "url",
    "headers",
    "query",
    "json",
    "form",
    "body",
    "timeout",
    "follow_redirects",
    "tls",
    "auth",
)
BODY_FIELDS = ("json", "form", "body")
TLS_FIELDS = ("verify", "ca")
EXTRACT_SOURCES = ("jsonpath", "regex", "header", "cookie", "status")
EXTRACT_FIELDS = (*EXTRACT_SOURCES, "group", "secret")
RETRY_FIELDS = ("count", "interval", "backoff", "on")
RETRY_ON = ("network", "any")
SESSION_FIELDS = ("steps",)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
VERSIONS = ("stable", "canary")
# Auth scheme type -> (required settings, optional settings).
AUTH_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "oauth2_client_credentials": (
        ("token_url", "client_id", "client_secret"), ("scopes", "audience", "client_auth"),
    ),
    "bearer": (("token",), ()),
    "api_key": (("value",), ("header", "query")),
    "basic": (("username", "password"), ()),
}  # fmt: skip
SUBJECTS = ("status", "header", "cookie", "body", "jsonpath", "latency", "flow_latency")
SUBJECTS_WITH_ARG = ("header", "cookie", "jsonpath")
ORDERING = ("<", "<=", ">", ">=")
# Operators each subject accepts (the rest make no sense for it).
SUBJECT_OPERATORS: dict[str, tuple[str, ...]] = {
    "status": ("==", "!=", *ORDERING, "in"),
    "latency": ORDERING,
    "flow_latency": ORDERING,
    "body": ("==", "!=", "contains", "matches", "isEmpty"),
    "header": OPERATORS,
    "cookie": OPERATORS,
    "jsonpath": OPERATORS,
}
BUILTINS = ("base_url", *GENERATORS)
RESERVED = ("secrets", "env", *BUILTINS)

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[a-z0-9]([-a-z0-9_]*[a-z0-9])?")
_SYMBOLS = ("==", "!=", "<=", ">=", "<", ">")
_WORD_OPS = ("contains", "matches", "exists", "isEmpty", "in")
_OPERATOR_MISTAKES = {
    "=": "==", "===": "==", "eq": "==", "equals": "==", "is": "==", "ne": "!=", "<>": "!=",
    "=<": "<=", "=>": ">=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "has": "contains",
    "includes": "contains", "match": "matches", "matching": "matches", "exist": "exists",
    "empty": "isEmpty", "isempty": "isEmpty", "is_empty": "isEmpty", "oneof": "in",
}  # fmt: skip
_NAME_HINT = "use lower-case letters, digits and '-', starting and ending with a letter or digit"


# --------------------------------------------------------------------------- public API


def load_flow(path: str | Path) -> Flow:
    """Load and check one flow file. Raises the first :class:`SpecError`."""
    return _Loader().flow(path)


def load_flows(paths: Sequence[str | Path]) -> list[Flow]:
    """Load every flow of ``paths`` (files, or directories: their ``*.yaml``/``*.yml`` files,
    except libraries under ``lib/``). Raises the first error."""
    flows, errors = load_flows_with_errors(paths)
    if errors:
        raise errors[0]
    return flows


def load_flows_with_errors(paths: Sequence[str | Path]) -> tuple[list[Flow], list[SpecError]]:
    """The flows that load, and the errors of the others (one per file, duplicates removed).

    Library files named explicitly, and those under a directory's ``lib/``, are checked as
    libraries, so ``validate synthetics/`` also reports a broken library no flow uses yet.
    """
    loader = _Loader()
    flows: list[Flow] = []
    errors: list[SpecError] = []
    seen: set[str] = set()

    def keep(err: SpecError) -> None:
        if err.one_line() not in seen:
            seen.add(err.one_line())
            errors.append(err)

    files = _expand(paths)
    if not any(not lib and _kind_of(f) != LIBRARY_KIND for f, lib in files):
        where = ", ".join(map(str, paths)) or "no path"
        errors.append(
            SpecError(
                f"no flows found in {where}",
                hint="flows are the .yaml/.yml files named, or those directly inside the "
                "directories named (lib/ holds libraries)",
            )
        )
    for file, as_library in files:
        try:
            if as_library:
                loader.library(Path(file))
                continue
            kind = _kind_of(file)
            if kind == LIBRARY_KIND:
                loader.library(Path(file))
                continue
            flow = loader.flow(file)
            first = next((f for f in flows if f.name == flow.name), None)
            if first is not None:
                raise SpecError(
                    f"flow name '{flow.name}' is already used",
                    file=flow.file,
                    line=flow.where.line,
                    field="metadata.name",
                    hint=f"{first.file} has the same name; results and metrics are per name",
                )
            flows.append(flow)
        except SpecError as err:
            keep(err)
    return flows, errors


def collect_flow_errors(paths: Sequence[str | Path]) -> list[SpecError]:
    """Every load error of ``paths`` (see :func:`load_flows_with_errors`); empty when valid."""
    return load_flows_with_errors(paths)[1]


def load_library(path: str | Path) -> Library:
    """Load and check one library file (structure only; names are checked by using flows)."""
    return _Loader().library(Path(path)).library


# --------------------------------------------------------------------------- files


def _expand(paths: Sequence[str | Path]) -> list[tuple[str | Path, bool]]:
    """(file, is a library by location) for every path; directories are expanded. A file
    reached twice (named twice, or named and inside a directory named) is listed once."""
    out: list[tuple[str | Path, bool]] = []
    seen: set[Path] = set()

    def add(file: str | Path, as_library: bool) -> None:
        key = Path(file).resolve()
        if key not in seen:
            seen.add(key)
            out.append((file, as_library))

    for path in paths:
        p = Path(path)
        if not p.is_dir():
            add(path, False)
            continue
        for f in _yaml_files(p):
            add(f, False)
        lib = p / "lib"
        if lib.is_dir():
            for f in _yaml_files(lib):
                add(f, True)
    return out


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(f for f in directory.iterdir() if f.is_file() and f.suffix in (".yaml", ".yml"))


def _kind_of(file: str | Path) -> str | None:
    """The ``kind`` of a one-document file, or None when it cannot be read (load reports it)."""
    try:
        docs = read_documents(file)
    except SpecError:
        return None
    if len(docs) == 1 and isinstance(docs[0].data, dict):
        kind = docs[0].data.get("kind")
        return kind if isinstance(kind, str) else None
    return None


def _document(path: str | Path, kind: str) -> Cursor:
    """The single document of a file, its apiVersion and kind checked."""
    docs = [d for d in read_documents(path) if d.data is not None]
    if not docs:
        raise SpecError("the file is empty", file=str(path), hint=f"start with kind: {kind}")
    if len(docs) > 1:
        raise SpecError(
            "more than one YAML document",
            file=str(path),
            line=docs[1].line,
            hint="put one flow or library per file",
        )
    doc = root_cursor(docs[0])
    if not isinstance(doc.value, dict):
        doc.fail("a document must be a mapping with apiVersion and kind")
    kinds = (FLOW_KIND, LIBRARY_KIND)
    kind_cur = doc.require("kind", f"add kind: {kind}")
    found = kind_cur.string()
    if found not in kinds:
        guess = closest(found, kinds)
        kind_cur.fail(
            f"unknown kind '{found}'",
            f"did you mean '{guess}'?" if guess else f"use kind: {FLOW_KIND} or {LIBRARY_KIND}",
        )
    if found != kind:
        kind_cur.fail(f"expected kind {kind}, found {found}", _kind_hint(kind))
    api = doc.require("apiVersion", f"add apiVersion: {API_VERSION}")
    if api.value != API_VERSION:
        api.fail(f"unknown apiVersion {api.value!r}", f"use apiVersion: {API_VERSION}")
    return doc


def _kind_hint(kind: str) -> str:
    if kind == LIBRARY_KIND:
        return "uses: lists library files (kind: ProbeLibrary)"
    return "libraries are loaded through a flow's uses: list"


# --------------------------------------------------------------------------- template sites


@dataclass(frozen=True)
class _Site:
    """A template string and where it was written."""

    cur: Cursor
    text: str


@dataclass
class _Sites:
    """Collects the template strings of a part of a file, checking their syntax as it goes."""

    items: list[_Site] = field(default_factory=list)

    def add(self, cur: Cursor, text: str) -> str:
        try:
            spans(text)
        except ValueError as err:
            cur.fail(str(err), "close it with }}, or check the spelling")
        self.items.append(_Site(cur, text))
        return text

    def walk(self, cur: Cursor) -> Any:
        """A plain copy of a JSON value, each string inside registered as a template."""
        if isinstance(cur.value, dict):
            return {c.key: self.walk(c) for c in cur.fields()}
        if isinstance(cur.value, list):
            return [self.walk(c) for c in cur.sequence()]
        if isinstance(cur.value, str):
            self.add(cur, cur.value)
        return cur.value


@dataclass
class _ParsedStep:
    step: Step
    cur: Cursor
    sites: _Sites
    auth_cur: Cursor | None  # request.auth, when named


@dataclass
class _LoadedLibrary:
    library: Library
    file: str
    auth_sites: dict[str, _Sites]
    session_steps: dict[str, list[_ParsedStep]]
    variable_sites: _Sites
    # "auth scheme" / "session" / "variable" / "secret" -> name -> where it is defined
    defined: dict[str, dict[str, Cursor]]


# --------------------------------------------------------------------------- loader


class _Loader:
    """One load: libraries are read once per resolved path."""

    def __init__(self) -> None:
        self.libraries: dict[Path, _LoadedLibrary | SpecError] = {}

    # ----------------------------------------------------------------- libraries

    def library(self, path: Path) -> _LoadedLibrary:
        key = path.resolve()
        cached = self.libraries.get(key)
        if cached is None:
            try:
                cached = _parse_library(path)
            except SpecError as err:
                cached = err
            self.libraries[key] = cached
        if isinstance(cached, SpecError):
            raise cached
        return cached

    # ----------------------------------------------------------------- flows

    def flow(self, path: str | Path) -> Flow:
        file = str(path)
        doc = _document(path, FLOW_KIND)
        doc.check_fields(FLOW_FIELDS)
        base = Path(path).parent
        name, service, owner, labels = _flow_metadata(doc)
        slo_cur = doc.get("slo")
        slo = _slo(slo_cur) if slo_cur is not None else None
        sched_cur = doc.get("schedule")
        schedule = _schedule(sched_cur) if sched_cur is not None else Schedule()
        libs = self._uses(doc.get("uses"), base)

        var_sites = _Sites()
        variables, _ = _variables(doc.get("variables"), var_sites)
        secrets, _ = _secrets(doc.get("secrets"), base)
        envs_cur = doc.require("environments", "add environments: {staging: {base_url: ...}}")
        environments, env_sites = _environments(envs_cur, base)

        scope = _Scope.build(variables, secrets, environments, libs)
        default_auth = self._auth_name(doc.get("auth"), libs, allow_none=False)
        session_name = _session_name(doc.get("session"), libs)

        steps_cur = doc.require("steps", "add steps: [{name: ..., request: {...}}]")
        step_items = steps_cur.sequence()
        if not step_items:
            steps_cur.fail("a flow needs at least one step")
        parsed = [_step(item, base) for item in step_items]
        fin_cur = doc.get("finally")
        finals = [_step(item, base) for item in (fin_cur.sequence() if fin_cur else [])]
        _unique_steps(parsed + finals)

        # references: variables and base URLs, then the session, the steps, finally and auth
        for site in var_sites.items:
            scope.check(site, captures=set(), later={})
        for env_name, sites in env_sites.items():
            for site in sites.items:
                scope.check(site, captures=set(), later={}, in_env=env_name)
        captures: set[str] = set()
        session_captures: set[str] = set()
        session_steps = _find_session(libs, session_name) if session_name else []
        with _for_flow(file):
            self._check_steps(session_steps, scope, captures)
        session_captures = set(captures)
        self._check_steps(parsed, scope, captures)
        self._check_steps(finals, scope, captures, after_all=True)
        used_auth = {default_auth} if default_auth else set()
        for p in [*parsed, *finals, *session_steps]:
            if p.auth_cur is not None:
                with _for_flow(file if p in session_steps else None):
                    name_used = self._auth_name(p.auth_cur, libs, allow_none=True)
                if name_used and name_used != NO_AUTH:
                    used_auth.add(name_used)
        with _for_flow(file):
            for lib in libs:
                for scheme, sites in lib.auth_sites.items():
                    if scheme in used_auth:
                        for site in sites.items:
                            scope.check(site, captures=session_captures, later={})

        return Flow(
            name=name,
            service=service,
            file=file,
            steps=tuple(p.step for p in parsed),
            environments=environments,
            owner=owner,
            labels=labels,
            slo=slo,
            schedule=schedule,
            uses=tuple(lib.library for lib in libs),
            variables=variables,
            secrets=secrets,
            auth=default_auth,
            session=session_name,
            finally_steps=tuple(p.step for p in finals),
            where=Where(file, doc.line),
        )

    def _uses(self, cur: Cursor | None, base: Path) -> list[_LoadedLibrary]:
        if cur is None:
            return []
        libs: list[_LoadedLibrary] = []
        seen: dict[Path, int] = {}
        for item in cur.sequence():
            rel = item.nonempty_string()
            path = base / rel
            if path.resolve() in seen:
                item.fail(
                    f"'{rel}' is listed twice", f"it is already used on line {seen[path.resolve()]}"
                )
            seen[path.resolve()] = item.line
            if not path.is_file():
                item.fail(
                    f"library file not found: {rel}",
                    f"paths are relative to the flow file's directory ({base or '.'})",
                )
            if _kind_of(path) == FLOW_KIND:
                item.fail(
                    f"'{rel}' is a {FLOW_KIND}, not a {LIBRARY_KIND}", _kind_hint(LIBRARY_KIND)
                )
            libs.append(self.library(path))
        _no_clashes(libs)
        return libs

    def _auth_name(
        self, cur: Cursor | None, libs: list[_LoadedLibrary], *, allow_none: bool
    ) -> str | None:
        if cur is None:
            return None
        name = cur.nonempty_string()
        if name == NO_AUTH:
            if not allow_none:
                cur.fail("'none' is only for one request", "leave auth: out for no default auth")
            return NO_AUTH
        known = {n for lib in libs for n in lib.library.auth}
        if name not in known:
            cur.fail(
                f"unknown auth scheme '{name}'", _known_hint(name, known, "auth schemes", libs)
            )
        return name

    def _check_steps(
        self,
        steps: list[_ParsedStep],
        scope: _Scope,
        captures: set[str],
        after_all: bool = False,
    ) -> None:
        """Check each step's templates against what is defined before it, then add its captures."""
        later: dict[str, str] = {}
        if not after_all:
            for p in steps:
                for ex in p.step.extract:
                    later.setdefault(ex.name, p.step.name)
        for p in steps:
            for ex in p.step.extract:
                scope.check_capture_name(ex, p.cur)
        for p in steps:
            for site in p.sites.items:
                scope.check(site, captures=captures, later=later)
            for ex in p.step.extract:
                if later.get(ex.name) == p.step.name:
                    del later[ex.name]
            captures.update(ex.name for ex in p.step.extract)


@contextmanager
def _for_flow(file: str | None) -> Iterator[None]:
    """Library parts are checked in a flow's scope: say which flow when one fails."""
    try:
        yield
    except SpecError as err:
        if file is not None:
            note = f"checked for the flow {file}, which uses it"
            err.hint = f"{err.hint}; {note}" if err.hint else note
        raise


# --------------------------------------------------------------------------- scope


@dataclass
class _Scope:
    """The names a flow's templates may use."""

    variables: set[str]  # flow + library variables
    env_variables: dict[str, set[str]]
    secrets: set[str]  # flow + library secrets
    env_secrets: dict[str, set[str]]

    @staticmethod
    def build(
        variables: dict[str, Any],
        secrets: dict[str, SecretRef],
        environments: dict[str, Environment],
        libs: list[_LoadedLibrary],
    ) -> _Scope:
        names = set(variables)
        secret_names = set(secrets)
        for lib in libs:
            names.update(lib.library.variables)
            secret_names.update(lib.library.secrets)
        return _Scope(
            variables=names,
            env_variables={n: set(e.variables) for n, e in environments.items()},
            secrets=secret_names,
            env_secrets={n: set(e.secrets) for n, e in environments.items()},
        )

    def check(
        self,
        site: _Site,
        captures: set[str],
        later: dict[str, str],
        in_env: str | None = None,
    ) -> None:
        cur = site.cur
        for ref in spans(site.text):
            if ref.namespace == "env":
                continue
            if ref.namespace == "secrets":
                self._defined(
                    ref.name, self.secrets, self.env_secrets, cur, "secret", in_env, "secrets"
                )
                continue
            name = ref.name
            if name in BUILTINS or name in captures:
                continue
            if name in later:
                cur.fail(
                    f"'{name}' is used before step '{later[name]}' captures it",
                    "a step sees only the captures of the steps before it",
                )
            self._defined(
                name,
                self.variables | captures,
                self.env_variables,
                cur,
                "variable",
                in_env,
                "variables",
            )

    def _defined(
        self,
        name: str,
        always: set[str],
        per_env: dict[str, set[str]],
        cur: Cursor,
        what: str,
        in_env: str | None,
        section: str,
    ) -> None:
        if name in always:
            return
        if in_env is not None and name in per_env.get(in_env, set()):
            return
        having = sorted(e for e, names in per_env.items() if name in names)
        if having and in_env is None:
            missing = sorted(e for e, names in per_env.items() if name not in names)
            if not missing:
                return
            cur.fail(
                f"{what} '{name}' is not declared in every environment",
                f"declared in {', '.join(having)} but not in {', '.join(missing)}; add it "
                f"there or to the flow's {section}:",
            )
        known = set(always)
        for names in per_env.values():
            known |= names
        if what == "variable":
            known |= set(BUILTINS)
        guess = closest(name, known)
        ref = f"secrets.{name}" if what == "secret" else name
        hint = f"did you mean '{guess}'?" if guess else f"declare it under {section}:"
        cur.fail(f"unknown {what} '{{{{ {ref} }}}}'", hint)

    def check_capture_name(self, ex: Extract, step_cur: Cursor) -> None:
        shadowed = ex.name in self.variables or any(
            ex.name in names for names in self.env_variables.values()
        )
        if shadowed:
            cur = _extract_cursor(step_cur, ex.name) or step_cur
            cur.fail(
                f"capture '{ex.name}' has the same name as a variable",
                "rename the capture so that {{ " + ex.name + " }} means one thing",
            )


def _extract_cursor(step_cur: Cursor, name: str) -> Cursor | None:
    ex = step_cur.get("extract")
    return ex.get(name) if ex is not None and isinstance(ex.value, dict) else None


def _known_hint(name: str, known: set[str], what: str, libs: list[_LoadedLibrary]) -> str:
    guess = closest(name, known)
    if guess:
        return f"did you mean '{guess}'?"
    if not libs:
        return f"{what} come from libraries; add uses: [lib/....yaml]"
    if known:
        return f"known {what}: " + ", ".join(sorted(known))
    return f"the used libraries define no {what}"


def _no_clashes(libs: list[_LoadedLibrary]) -> None:
    """Two used libraries may not define the same auth, session, variable or secret name."""
    owner: dict[tuple[str, str], str] = {}
    for lib in libs:
        for kind, names in lib.defined.items():
            for name, cur in names.items():
                first = owner.setdefault((kind, name), lib.file)
                if first != lib.file:
                    cur.fail(
                        f"{kind} '{name}' is defined in two used libraries",
                        f"it is also in {first}; rename one",
                    )


def _find_session(libs: list[_LoadedLibrary], name: str) -> list[_ParsedStep]:
    for lib in libs:
        if name in lib.session_steps:
            return lib.session_steps[name]
    return []


def _session_name(cur: Cursor | None, libs: list[_LoadedLibrary]) -> str | None:
    if cur is None:
        return None
    name = cur.nonempty_string()
    known = {n for lib in libs for n in lib.library.sessions}
    if name not in known:
        cur.fail(f"unknown session '{name}'", _known_hint(name, known, "sessions", libs))
    return name


def _unique_steps(steps: list[_ParsedStep]) -> None:
    first: dict[str, int] = {}
    for p in steps:
        if p.step.name in first:
            name_cur = p.cur.require("name")
            name_cur.fail(
                f"duplicate step name '{p.step.name}'",
                f"already used on line {first[p.step.name]}; step names must be unique",
            )
        first[p.step.name] = p.cur.require("name").line


# --------------------------------------------------------------------------- top-level parts


def _flow_metadata(doc: Cursor) -> tuple[str, str, str | None, dict[str, str]]:
    meta = doc.require("metadata", "add metadata: {name: ..., service: ...}")
    meta.check_fields(FLOW_METADATA_FIELDS)
    name = _dns_name(meta.require("name"))
    service = meta.require("service", "the service this flow probes").nonempty_string()
    owner_cur = meta.get("owner")
    owner = owner_cur.nonempty_string() if owner_cur is not None else None
    labels_cur = meta.get("labels")
    labels = labels_cur.string_map() if labels_cur is not None else {}
    return name, service, owner, labels


def _dns_name(cur: Cursor) -> str:
    name = cur.nonempty_string()
    if len(name) > 63 or not _NAME.fullmatch(name):
        cur.fail(f"invalid name {name!r}", _NAME_HINT)
    return name


def _slo(cur: Cursor) -> SLOBinding:
    if isinstance(cur.value, str):
        return SLOBinding(cur.nonempty_string())
    if not isinstance(cur.value, dict):
        cur.fail("expected an SLO name or {name: ..., objective: ...}")
    cur.check_fields(SLO_FIELDS)
    name = cur.require("name").nonempty_string()
    objective = None
    obj_cur = cur.get("objective")
    if obj_cur is not None:
        objective = obj_cur.number()
        if not 0 < objective < 100:
            obj_cur.fail(
                f"objective must be a percentage between 0 and 100, got {objective:g}", "e.g. 99.9"
            )
    return SLOBinding(name, objective)


def _duration(cur: Cursor, positive: bool = True) -> float:
    value = cur.duration()
    if positive and value <= 0:
        cur.fail("must be greater than zero", "use 30s, 5m or 1h")
    return value


def _schedule(cur: Cursor) -> Schedule:
    cur.check_fields(SCHEDULE_FIELDS)
    default = Schedule()
    c = cur.get("interval")
    interval = _duration(c) if c is not None else default.interval_s
    c = cur.get("jitter")
    jitter = _duration(c, positive=False) if c is not None else default.jitter_s
    if c is not None and jitter >= interval:
        c.fail("jitter must be shorter than the interval", f"the interval is {interval:g}s")
    c = cur.get("timeout")
    timeout = _duration(c) if c is not None else min(default.timeout_s, interval)
    if c is not None and timeout > interval:
        c.fail(
            "timeout must not exceed the interval",
            f"a run may last at most one interval ({interval:g}s); runs of a flow never overlap",
        )
    locations = default.locations
    c = cur.get("locations")
    if c is not None:
        locations = tuple(_unique_strings(c, "location"))
        if not locations:
            c.fail("list at least one location", "e.g. [local]")
    versions: list[str] = []
    c = cur.get("versions")
    if c is not None:
        versions = _unique_strings(c, "version")
        for item, version in zip(c.sequence(), versions, strict=True):
            if version not in VERSIONS:
                guess = closest(version, VERSIONS)
                item.fail(
                    f"unknown version '{version}'",
                    f"did you mean '{guess}'?" if guess else "use stable and/or canary",
                )
    return Schedule(
        interval_s=interval,
        jitter_s=jitter,
        timeout_s=timeout,
        locations=locations,
        versions=cast(Any, tuple(versions)),
    )


def _unique_strings(cur: Cursor, what: str) -> list[str]:
    out: list[str] = []
    for item in cur.sequence():
        text = item.nonempty_string()
        if text in out:
            item.fail(f"{what} '{text}' is listed twice")
        out.append(text)
    return out


def _identifier(cur: Cursor, what: str) -> str:
    name = cur.key
    if not IDENTIFIER.fullmatch(name):
        cur.fail(
            f"invalid {what} name '{name}'",
            "use letters, digits and '_', not starting with a digit, so that {{ name }} works",
        )
    if name in RESERVED:
        cur.fail(f"'{name}' is a reserved name", "reserved: " + ", ".join(RESERVED))
    return name


def _variables(cur: Cursor | None, sites: _Sites) -> tuple[dict[str, Any], dict[str, Cursor]]:
    if cur is None or cur.value is None:
        return {}, {}
    cur.mapping()
    out: dict[str, Any] = {}
    curs: dict[str, Cursor] = {}
    for child in cur.fields():
        name = _identifier(child, "variable")
        value = child.value
        if isinstance(value, str):
            sites.add(child, value)
        elif value is None or isinstance(value, dict | list):
            child.fail(
                "a variable is a string, number or boolean", "quote it, or put lists in a json body"
            )
        out[name] = value
        curs[name] = child
    return out, curs


def _secrets(cur: Cursor | None, base: Path) -> tuple[dict[str, SecretRef], dict[str, Cursor]]:
    if cur is None or cur.value is None:
        return {}, {}
    cur.mapping()
    out: dict[str, SecretRef] = {}
    curs: dict[str, Cursor] = {}
    for child in cur.fields():
        name = _identifier(child, "secret")
        if not isinstance(child.value, dict):
            child.fail(
                "a secret is read from the environment or a file, never written inline",
                f"use {name}: {{env: VARIABLE}} or {name}: {{file: ./path}}",
            )
        child.check_fields(SECRET_FIELDS)
        env_cur, file_cur = child.get("env"), child.get("file")
        if (env_cur is None) == (file_cur is None):
            child.fail("give exactly one of env or file", f"e.g. {name}: {{env: VARIABLE}}")
        env = file = None
        if env_cur is not None:
            env = env_cur.nonempty_string()
            if not IDENTIFIER.fullmatch(env):
                env_cur.fail(f"invalid environment variable name {env!r}")
        if file_cur is not None:
            file = str(base / file_cur.nonempty_string())
        out[name] = SecretRef(name, env=env, file=file, where=Where(child.file, child.line))
        curs[name] = child
    return out, curs


def _environments(cur: Cursor, base: Path) -> tuple[dict[str, Environment], dict[str, _Sites]]:
    cur.mapping()
    if not cur.value:
        cur.fail("a flow needs at least one environment", "e.g. staging: {base_url: ...}")
    envs: dict[str, Environment] = {}
    sites: dict[str, _Sites] = {}
    for child in cur.fields():
        name = child.key
        if not _ENV_NAME.fullmatch(name):
            child.fail(f"invalid environment name '{name}'", _NAME_HINT)
        child.check_fields(ENVIRONMENT_FIELDS)
        env_sites = _Sites()
        url_cur = child.require("base_url", "e.g. base_url: https://staging.example.com")
        url = env_sites.add(url_cur, url_cur.nonempty_string())
        if "base_url" in references(url):
            url_cur.fail("base_url cannot refer to itself", "write the URL, or use {{ env.NAME }}")
        if "{{" not in url and not re.match(r"https?://[^/\s]+", url):
            url_cur.fail(f"invalid base_url {url!r}", "use http://host[:port] or https://...")
        variables, _ = _variables(child.get("variables"), env_sites)
        secrets, _ = _secrets(child.get("secrets"), base)
        envs[name] = Environment(
            name, url.rstrip("/"), variables, secrets, Where(child.file, child.line)
        )
        sites[name] = env_sites
    return envs, sites


# --------------------------------------------------------------------------- libraries


def _parse_library(path: Path) -> _LoadedLibrary:
    file = str(path)
    doc = _document(path, LIBRARY_KIND)
    doc.check_fields(LIBRARY_FIELDS)
    meta = doc.require("metadata", "add metadata: {name: ...}")
    meta.check_fields(LIBRARY_METADATA_FIELDS)
    name = _dns_name(meta.require("name"))
    if meta.get("owner") is not None:
        meta.require("owner").nonempty_string()
    if meta.get("labels") is not None:
        meta.require("labels").string_map()
    base = path.parent
    var_sites = _Sites()
    variables, var_curs = _variables(doc.get("variables"), var_sites)
    secrets, secret_curs = _secrets(doc.get("secrets"), base)

    auth: dict[str, AuthScheme] = {}
    auth_sites: dict[str, _Sites] = {}
    auth_curs: dict[str, Cursor] = {}
    session_curs: dict[str, Cursor] = {}
    auth_cur = doc.get("auth")
    if auth_cur is not None and auth_cur.value is not None:
        auth_cur.mapping()
        for child in auth_cur.fields():
            scheme, sites = _auth_scheme(child)
            auth[scheme.name] = scheme
            auth_sites[scheme.name] = sites
            auth_curs[scheme.name] = child

    sessions: dict[str, Session] = {}
    session_steps: dict[str, list[_ParsedStep]] = {}
    sess_cur = doc.get("sessions")
    if sess_cur is not None and sess_cur.value is not None:
        sess_cur.mapping()
        for child in sess_cur.fields():
            if not _NAME.fullmatch(child.key):
                child.fail(f"invalid session name '{child.key}'", _NAME_HINT)
            child.check_fields(SESSION_FIELDS)
            steps_cur = child.require("steps", "a session is a list of login steps")
            parsed = [_step(item, base) for item in steps_cur.sequence()]
            if not parsed:
                steps_cur.fail("a session needs at least one step")
            _unique_steps(parsed)
            sessions[child.key] = Session(
                child.key, tuple(p.step for p in parsed), Where(child.file, child.line)
            )
            session_steps[child.key] = parsed
            session_curs[child.key] = child
    if not (auth or sessions or variables or secrets):
        doc.fail("the library is empty", "add auth:, sessions:, variables: or secrets:")
    library = Library(name, file, auth, sessions, variables, secrets)
    return _LoadedLibrary(
        library,
        file,
        auth_sites,
        session_steps,
        var_sites,
        {
            "auth scheme": auth_curs,
            "session": session_curs,
            "variable": var_curs,
            "secret": secret_curs,
        },
    )


def _auth_scheme(cur: Cursor) -> tuple[AuthScheme, _Sites]:
    name = cur.key
    if not _NAME.fullmatch(name) or name == NO_AUTH:
        cur.fail(f"invalid auth scheme name '{name}'", _NAME_HINT + " ('none' is reserved)")
    type_cur = cur.require("type", "one of: " + ", ".join(AUTH_TYPES))
    kind = type_cur.nonempty_string()
    if kind not in AUTH_TYPES:
        guess = closest(kind, AUTH_TYPES)
        type_cur.fail(
            f"unknown auth type '{kind}'",
            f"did you mean '{guess}'?" if guess else "one of: " + ", ".join(AUTH_TYPES),
        )
    required, optional = AUTH_TYPES[kind]
    cur.check_fields(("type", *required, *optional), what=f"{kind} setting")
    sites = _Sites()
    settings: dict[str, Any] = {}
    for key in required:
        settings[key] = sites.add(cur.require(key), cur.require(key).nonempty_string())
    for key in optional:
        c = cur.get(key)
        if c is None:
            continue
        if key == "scopes":
            settings[key] = [sites.add(i, i.nonempty_string()) for i in c.sequence()]
        else:
            settings[key] = sites.add(c, c.nonempty_string())
    if kind == "api_key" and "header" in settings and "query" in settings:
        cur.require("query").fail(
            "give header or query, not both", "the default is the X-API-Key header"
        )
    return AuthScheme(name, cast(Any, kind), settings, Where(cur.file, cur.line)), sites


# --------------------------------------------------------------------------- steps


def _step(cur: Cursor, base: Path) -> _ParsedStep:
    cur.check_fields(STEP_FIELDS, what="step field")
    name_cur = cur.require("name", "e.g. name: list-orders")
    name = name_cur.nonempty_string()
    if not _STEP_NAME.fullmatch(name):
        name_cur.fail(f"invalid step name {name!r}", "use letters, digits, '-', '_' and '.'")
    sites = _Sites()
    req_cur = cur.require("request", "e.g. request: {method: GET, url: /health}")
    request = _request(req_cur, sites, base)
    extract: list[Extract] = []
    ex_cur = cur.get("extract")
    if ex_cur is not None and ex_cur.value is not None:
        ex_cur.mapping()
        extract = [_extract(c) for c in ex_cur.fields()]
    asserts: list[Assertion] = []
    as_cur = cur.get("assert")
    if as_cur is not None:
        asserts = [_assertion(c, sites, base) for c in as_cur.sequence()]
    retry_cur = cur.get("retry")
    retry = _retry(retry_cur) if retry_cur is not None else Retry()
    af_cur, crit_cur = cur.get("allow_failure"), cur.get("critical")
    step = Step(
        name=name,
        request=request,
        extract=tuple(extract),
        asserts=tuple(asserts),
        retry=retry,
        allow_failure=af_cur.boolean() if af_cur is not None else False,
        critical=crit_cur.boolean() if crit_cur is not None else True,
        where=Where(cur.file, cur.line),
    )
    req_auth = req_cur.get("auth")
    return _ParsedStep(step, cur, sites, req_auth)


def _scalar_map(cur: Cursor | None, sites: _Sites) -> dict[str, str]:
    """A mapping of names to strings; numbers are accepted and written as text."""
    if cur is None or cur.value is None:
        return {}
    cur.mapping()
    out: dict[str, str] = {}
    for child in cur.fields():
        value = child.value
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            child.string()  # fails with "expected a string"
        out[child.key] = sites.add(child, str(value))
    return out


def _request(cur: Cursor, sites: _Sites, base: Path) -> Request:
    cur.check_fields(REQUEST_FIELDS, what="request field")
    method = "GET"
    m_cur = cur.get("method")
    if m_cur is not None:
        method = m_cur.nonempty_string().upper()
        if method not in METHODS:
            guess = closest(method, METHODS)
            m_cur.fail(
                f"unknown method '{m_cur.value}'",
                f"did you mean '{guess}'?" if guess else "one of: " + ", ".join(METHODS),
            )
    url_cur = cur.require("url", "e.g. url: /api/orders")
    url = sites.add(url_cur, url_cur.nonempty_string())
    if not (url.startswith(("/", "http://", "https://", "{{"))):
        url_cur.fail(f"invalid url {url!r}", "use a path (/api/x), or an http(s):// URL")
    headers = _scalar_map(cur.get("headers"), sites)
    query = _scalar_map(cur.get("query"), sites)
    bodies = [c for c in (cur.get(k) for k in BODY_FIELDS) if c is not None]
    if len(bodies) > 1:
        second = max(bodies, key=lambda c: c.line)
        others = [c.key for c in bodies if c is not second]
        second.fail(
            f"a request has at most one body; '{second.key}' and '{others[0]}' are both set",
            "keep one of json, form or body",
        )
    json_body: Any = None
    form: dict[str, str] | None = None
    body: str | None = None
    j_cur = cur.get("json")
    if j_cur is not None:
        json_body = sites.walk(j_cur)
    f_cur = cur.get("form")
    if f_cur is not None:
        form = _scalar_map(f_cur, sites)
    b_cur = cur.get("body")
    if b_cur is not None:
        body = sites.add(b_cur, b_cur.string())
    t_cur = cur.get("timeout")
    timeout = _duration(t_cur) if t_cur is not None else None
    fr_cur = cur.get("follow_redirects")
    tls = TLSOptions()
    tls_cur = cur.get("tls")
    if tls_cur is not None:
        tls_cur.check_fields(TLS_FIELDS)
        v_cur, ca_cur = tls_cur.get("verify"), tls_cur.get("ca")
        ca = None
        if ca_cur is not None:
            ca_path = base / ca_cur.nonempty_string()
            if not ca_path.is_file():
                ca_cur.fail(f"CA file not found: {ca_cur.value}", "paths are relative to the file")
            ca = str(ca_path)
        tls = TLSOptions(verify=v_cur.boolean() if v_cur is not None else True, ca_file=ca)
    a_cur = cur.get("auth")
    auth = a_cur.nonempty_string() if a_cur is not None else None
    return Request(
        method=method,
        url=url,
        headers=headers,
        query=query,
        json=json_body,
        form=form,
        body=body,
        timeout_s=timeout,
        follow_redirects=fr_cur.boolean() if fr_cur is not None else True,
        tls=tls,
        auth=auth,
    )


def _extract(cur: Cursor) -> Extract:
    name = _identifier(cur, "capture")
    if not isinstance(cur.value, dict):
        cur.fail(
            'expected a mapping such as {jsonpath: "$.id"}', "one of: " + ", ".join(EXTRACT_SOURCES)
        )
    cur.check_fields(EXTRACT_FIELDS, what="extract field")
    sources = [k for k in EXTRACT_SOURCES if k in cur.value]
    if len(sources) != 1:
        found = " and ".join(sources) if sources else "none"
        cur.fail(f"give exactly one source, found {found}", "one of: " + ", ".join(EXTRACT_SOURCES))
    source = sources[0]
    src = cur.require(source)
    expr = ""
    group: int | None = None
    if source == "status":
        if src.value is not True:
            src.fail("write status: true to capture the status code")
    else:
        expr = src.nonempty_string()
    if source == "jsonpath":
        try:
            compile_path(expr)
        except ValueError as err:
            src.fail(str(err), "e.g. $.orders[0].id")
    g_cur = cur.get("group")
    if g_cur is not None and source != "regex":
        g_cur.fail("group is only for regex captures")
    if source == "regex":
        try:
            pattern = re.compile(expr)
        except re.error as err:
            src.fail(
                f"invalid regular expression: {err}",
                "check the escaping (\\\\d in YAML double quotes)",
            )
        group = 1 if pattern.groups else 0
        if g_cur is not None:
            group = g_cur.integer(
                0, pattern.groups, hint=f"the pattern has {pattern.groups} group(s)"
            )
    s_cur = cur.get("secret")
    secret = s_cur.boolean() if s_cur is not None else False
    return Extract(name, cast(Any, source), expr, group, secret, Where(cur.file, cur.line))


def _retry(cur: Cursor) -> Retry:
    cur.check_fields(RETRY_FIELDS, what="retry field")
    c = cur.get("count")
    count = c.integer(0, 20) if c is not None else 0
    c = cur.get("interval")
    interval = _duration(c, positive=False) if c is not None else Retry().interval_s
    backoff = 1.0
    c = cur.get("backoff")
    if c is not None:
        backoff = c.number()
        if not 1 <= backoff <= 10:
            c.fail(
                f"backoff must be from 1 to 10, got {backoff:g}",
                "1 waits the same each time; 2 doubles",
            )
    on = "network"
    c = cur.get("on")
    if c is not None:
        on = c.nonempty_string()
        if on not in RETRY_ON:
            guess = closest(on, RETRY_ON)
            c.fail(
                f"unknown retry condition '{on}'",
                f"did you mean '{guess}'?"
                if guess
                else "network (errors only) or any (failed assertions too)",
            )
    return Retry(count, interval, backoff, cast(Any, on))


# --------------------------------------------------------------------------- assertions


class AssertionSyntaxError(ValueError):
    """An assertion string that cannot be read; ``hint`` says what to write instead."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _assertion(cur: Cursor, sites: _Sites, base: Path) -> Assertion:
    if isinstance(cur.value, dict):
        cur.check_fields(("schema",), what="assertion key")
        return _schema_assertion(cur.require("schema"), base, Where(cur.file, cur.line))
    text = cur.string('write a string such as "status == 200", or {schema: ...}')
    try:
        assertion = parse_assertion(text, Where(cur.file, cur.line))
    except AssertionSyntaxError as err:
        cur.fail(err.message, err.hint)
    for value in assertion.value if isinstance(assertion.value, list) else [assertion.value]:
        if isinstance(value, str) and "{{" in value:
            sites.add(cur, value)
    return assertion


def _schema_assertion(cur: Cursor, base: Path, where: Where) -> Assertion:
    if isinstance(cur.value, str):
        rel = cur.nonempty_string()
        path = base / rel
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            cur.fail(f"schema file not found: {rel}", "paths are relative to the flow file")
        except (OSError, UnicodeDecodeError) as err:
            cur.fail(f"cannot read schema file {rel}: {err}")
        try:
            schema = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (ValueError, yaml.YAMLError) as err:
            cur.fail(f"schema file {rel} is not valid JSON: {err}".splitlines()[0])
        arg: str | None = str(path)
        shown = f"schema {rel}"
    elif isinstance(cur.value, dict):
        schema = to_plain(cur.value)
        arg, shown = None, "schema {inline}"
    else:
        cur.fail("expected an inline JSON Schema (a mapping) or a file path")
    if not isinstance(schema, dict):
        cur.fail("a JSON Schema is an object")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        at = "/".join(str(p) for p in err.absolute_path) or "the top level"
        cur.fail(f"invalid JSON Schema at {at}: {err.message}", "see https://json-schema.org")
    return Assertion("schema", "valid", shown, arg=arg, value=schema, where=where)


def parse_assertion(text: str, where: Where = Where()) -> Assertion:
    """Parse ``<subject> [<arg>] [not] <operator> [<value>]`` (see :class:`Assertion`).

    Raises :class:`AssertionSyntaxError`; the loader turns it into a SpecError at the line.
    """
    s = text.strip()
    m = re.match(r"[A-Za-z_]+", s)
    if m is None:
        raise AssertionSyntaxError(
            f"cannot read assertion {text!r}", "start with a subject: " + ", ".join(SUBJECTS)
        )
    subject = m.group(0)
    rest = s[m.end() :].lstrip()
    if subject not in SUBJECTS:
        if subject == "schema":
            raise AssertionSyntaxError(
                "schema assertions use the mapping form",
                "write {schema: {...}} or {schema: file.json}",
            )
        guess = closest(subject, SUBJECTS)
        raise AssertionSyntaxError(
            f"unknown assertion subject '{subject}'",
            f"did you mean '{guess}'?" if guess else "one of: " + ", ".join(SUBJECTS),
        )
    arg = None
    if subject in SUBJECTS_WITH_ARG:
        if not rest or rest[0] not in "\"'":
            example = {"header": '"Content-Type"', "cookie": '"session"', "jsonpath": '"$.id"'}
            raise AssertionSyntaxError(
                f"'{subject}' needs a quoted {'JSONPath' if subject == 'jsonpath' else 'name'}",
                f"e.g. {subject} {example[subject]} exists",
            )
        arg, used = _quoted(rest)
        rest = rest[used:].lstrip()
        if not arg:
            raise AssertionSyntaxError(f"'{subject}' needs a non-empty name")
        if subject == "jsonpath":
            try:
                compile_path(arg)
            except ValueError as err:
                raise AssertionSyntaxError(str(err), "e.g. $.orders[0].id") from None
    negate = False
    if re.match(r"not(\s|$)", rest):
        negate, rest = True, rest[3:].lstrip()
    op = _operator(rest, subject)
    value_text = rest[len(op) :].strip()
    value = _value(subject, op, value_text)
    return Assertion(
        subject=cast(Any, subject),
        operator=cast(Any, op),
        text=s,
        arg=arg,
        value=value,
        negate=negate,
        where=where,
    )


def _quoted(text: str) -> tuple[str, int]:
    """A double-quoted (JSON escapes) or single-quoted string at the start of ``text``."""
    if text[0] == '"':
        try:
            value, end = json.JSONDecoder().raw_decode(text)
        except ValueError:
            raise AssertionSyntaxError(
                "unterminated or malformed quoted string", 'e.g. "Content-Type"'
            ) from None
        return str(value), end
    end = text.find("'", 1)
    if end < 0:
        raise AssertionSyntaxError("unterminated quoted string", "close the quote")
    return text[1:end], end + 1


def _operator(rest: str, subject: str) -> str:
    op = next((o for o in _SYMBOLS if rest.startswith(o)), None)
    if op is None:
        word = re.match(r"[A-Za-z]+", rest)
        if word and word.group(0) in _WORD_OPS:
            op = word.group(0)
    if op is None:
        token = rest.split()[0] if rest.split() else ""
        if not token:
            raise AssertionSyntaxError("missing operator", "one of: " + ", ".join(OPERATORS))
        guess = _OPERATOR_MISTAKES.get(token.lower()) or closest(token, OPERATORS)
        raise AssertionSyntaxError(
            f"unknown operator '{token}'",
            f"did you mean '{guess}'?" if guess else "one of: " + ", ".join(OPERATORS),
        )
    allowed = SUBJECT_OPERATORS[subject]
    if op not in allowed:
        raise AssertionSyntaxError(
            f"'{subject}' cannot use '{op}'", f"'{subject}' takes: " + ", ".join(allowed)
        )
    return op


def _value(subject: str, op: str, text: str) -> Any:
    if op in ("exists", "isEmpty"):
        if text:
            raise AssertionSyntaxError(
                f"'{op}' takes no value, found {text!r}", f"write {subject} ... {op}"
            )
        return None
    if not text:
        raise AssertionSyntaxError(
            f"'{op}' needs a value", 'e.g. == 200, contains "json", in [200, 204]'
        )
    if subject in ("latency", "flow_latency"):
        if re.fullmatch(r"\d+(\.\d+)?", text):
            raise AssertionSyntaxError(
                f"latency {text!r} has no unit", f"write {text}ms or {text}s"
            )
        try:
            return parse_duration(text)
        except ValueError as err:
            raise AssertionSyntaxError(str(err), "e.g. 500ms or 2s") from None
    value = _literal(text)
    if op in ORDERING and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise AssertionSyntaxError(f"'{op}' compares numbers, got {text}")
    if op == "in" and (not isinstance(value, list) or not value):
        raise AssertionSyntaxError("'in' needs a non-empty list", "e.g. in [200, 204]")
    if op == "matches":
        if not isinstance(value, str):
            raise AssertionSyntaxError(
                "'matches' needs a quoted regular expression", 'e.g. matches "^ord-"'
            )
        try:
            re.compile(value)
        except re.error as err:
            raise AssertionSyntaxError(f"invalid regular expression {value!r}: {err}") from None
    if subject == "status":
        for code in value if isinstance(value, list) else [value]:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise AssertionSyntaxError(
                    f"a status code is a number from 100 to 599, got {code!r}"
                )
    elif subject in ("header", "cookie", "body") and op not in ORDERING:
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                raise AssertionSyntaxError(
                    f"{subject} values are text; quote {json.dumps(item)}", f'e.g. "{item}"'
                )
    return value


def _literal(text: str) -> Any:
    """A JSON/YAML literal: quoted string, number, true/false/null or a flat list of them."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        raise AssertionSyntaxError(
            f"cannot read the value {text!r}", 'quote text ("ok") and write lists as [200, 204]'
        ) from None
    if node is None:
        raise AssertionSyntaxError("missing value")
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for item in items:
        if not isinstance(item, yaml.ScalarNode):
            raise AssertionSyntaxError(
                f"cannot compare with {text!r}",
                "use a string, number, true, false, null or a list of them",
            )
        kind = item.tag.rsplit(":", 1)[-1]
        if kind == "str" and item.style is None:
            raise AssertionSyntaxError(f"unquoted text {item.value!r}", f'quote it: "{item.value}"')
        if kind not in ("str", "int", "float", "bool", "null"):
            raise AssertionSyntaxError(f"cannot read the value {item.value!r}", "quote it")
    return yaml.safe_load(text)
