"""Synthetic probe flows and their results, as plain frozen data.

A flow file (``synthetics/*.yaml``, ``kind: ProbeFlow``) describes one user journey: requests in
order, what to capture from each response, what to assert, retries, and ``finally`` steps that
always run. Libraries (``synthetics/lib/*.yaml``, ``kind: ProbeLibrary``) hold auth schemes,
session (login) steps and variables that many flows share through ``uses:``.

Strings in requests, auth settings and variables are templates: ``{{ name }}`` is replaced at run
time (see ``coalmine.probes.template``). Nothing here does I/O; ``loader`` builds these objects,
``runner`` executes them and returns :class:`FlowResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# --------------------------------------------------------------------------- where in the file


@dataclass(frozen=True)
class Where:
    """The file and line something was declared at (for errors and lint findings)."""

    file: str = ""
    line: int = 0


# --------------------------------------------------------------------------- secrets


@dataclass(frozen=True)
class SecretRef:
    """A secret value read at run time from an environment variable or a file (never inline).

    ``{{ secrets.<name> }}`` in a template gives its value; the value is redacted from every
    output.
    """

    name: str
    env: str | None = None  # exactly one of env / file
    file: str | None = None  # resolved relative to the declaring YAML file
    where: Where = Where()


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class TLSOptions:
    verify: bool = True
    ca_file: str | None = None  # PEM bundle, resolved relative to the flow file


NO_AUTH = "none"  # request ``auth: none``: no auth for this request, whatever the default


@dataclass(frozen=True)
class Request:
    method: str  # upper case: GET POST PUT PATCH DELETE HEAD OPTIONS
    url: str  # template; relative URLs ("/api/x") are joined to the environment's base_url
    headers: dict[str, str] = field(default_factory=dict)  # templates
    query: dict[str, str] = field(default_factory=dict)  # templates
    json: Any = None  # templates in every string inside
    form: dict[str, str] | None = None
    body: str | None = None  # raw body (template)
    timeout_s: float | None = None  # None: the flow's schedule.timeout
    follow_redirects: bool = True
    tls: TLSOptions = TLSOptions()
    auth: str | None = None  # an AuthScheme's name, NO_AUTH, or None: the flow's default


# --------------------------------------------------------------------------- captures


ExtractSource = Literal["jsonpath", "regex", "header", "cookie", "status"]


@dataclass(frozen=True)
class Extract:
    """Capture one value from a response into the variable ``name``.

    ``jsonpath``: ``expr`` is a JSONPath (``$.data.token``; first match); ``regex``: ``expr`` is
    matched against the body, ``group`` (default 1, or 0 without groups); ``header`` /
    ``cookie``: ``expr`` is the header or cookie name; ``status``: the status code.
    """

    name: str
    source: ExtractSource
    expr: str = ""
    group: int | None = None
    secret: bool = False
    where: Where = Where()


# --------------------------------------------------------------------------- assertions


AssertSubject = Literal[
    "status", "header", "body", "jsonpath", "schema", "latency", "flow_latency", "cookie"
]
AssertOperator = Literal[
    "==", "!=", "<", "<=", ">", ">=", "contains", "matches", "exists", "isEmpty", "in", "valid"
]
OPERATORS: tuple[str, ...] = (
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "contains",
    "matches",
    "exists",
    "isEmpty",
    "in",
)


@dataclass(frozen=True)
class Assertion:
    """One check on a response, written ``<subject> [<arg>] [not] <operator> [<value>]``.

    Examples: ``status == 200``, ``header "Content-Type" contains "json"``, ``jsonpath
    "$.items" not isEmpty``, ``latency < 500ms``, ``flow_latency <= 2s``, ``status in [200,
    204]``. ``schema`` assertions come from the mapping form ``{schema: {...}}`` or ``{schema:
    file.json}`` and use the operator ``valid``. ``arg`` is the header, cookie or JSONPath;
    ``value`` is a JSON/YAML literal (latencies are seconds); ``text`` is what the user wrote.
    """

    subject: AssertSubject
    operator: AssertOperator
    text: str
    arg: str | None = None
    value: Any = None
    negate: bool = False
    where: Where = Where()


# --------------------------------------------------------------------------- steps


RetryOn = Literal["network", "any"]


@dataclass(frozen=True)
class Retry:
    """Re-run a step until its assertions pass. ``count`` is the number of re-runs after the
    first attempt; the wait before re-run ``k`` (1-based) is ``interval_s * backoff**(k-1)``.
    ``on: network`` retries only connection errors and timeouts; ``any`` also failed
    assertions."""

    count: int = 0
    interval_s: float = 1.0
    backoff: float = 1.0
    on: RetryOn = "network"


@dataclass(frozen=True)
class Step:
    name: str
    request: Request
    extract: tuple[Extract, ...] = ()
    asserts: tuple[Assertion, ...] = ()
    retry: Retry = Retry()
    allow_failure: bool = False  # a failure is reported but does not fail the flow
    critical: bool = True  # a failing critical step stops the flow (``finally`` still runs)
    where: Where = Where()


# --------------------------------------------------------------------------- auth, sessions


AuthType = Literal["oauth2_client_credentials", "bearer", "api_key", "basic"]


@dataclass(frozen=True)
class AuthScheme:
    """How requests authenticate. Settings are templates (usually ``{{ secrets.x }}``).

    - ``oauth2_client_credentials``: ``token_url``, ``client_id``, ``client_secret``,
      optional ``scopes`` and ``audience``; the token is cached per resolved configuration
      and fetched again when it expires or a request gets 401.
    - ``bearer``: ``token``; ``api_key``: ``value`` with ``header`` (default ``X-API-Key``)
      or ``query`` (a parameter name); ``basic``: ``username`` and ``password``.
    """

    name: str
    type: AuthType
    settings: dict[str, Any] = field(default_factory=dict)
    where: Where = Where()


@dataclass(frozen=True)
class Session:
    """Steps (a login) that run at the start of every flow run using this session, in the
    run's own cookie jar; their captures are visible to the flow's steps. Reported as steps
    named ``<session>/<step>``."""

    name: str
    steps: tuple[Step, ...]
    where: Where = Where()


@dataclass(frozen=True)
class Library:
    """A shared file (``kind: ProbeLibrary``) of auth schemes, sessions and variables."""

    name: str
    file: str
    auth: dict[str, AuthScheme] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, SecretRef] = field(default_factory=dict)


# --------------------------------------------------------------------------- flows


@dataclass(frozen=True)
class Environment:
    """One target environment (``staging``, ``pre-prod``, ``prod``...) of a flow."""

    name: str
    base_url: str
    variables: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    where: Where = Where()


Version = Literal["stable", "canary"]


@dataclass(frozen=True)
class Schedule:
    """``versions`` pins each scheduled run to the router's stable and/or canary version (one
    run per listed version per tick, through the router's override header); empty: unpinned."""

    interval_s: float = 60.0
    jitter_s: float = 0.0
    timeout_s: float = 30.0  # a whole flow run, and the default per request
    locations: tuple[str, ...] = ("local",)
    versions: tuple[Version, ...] = ()


@dataclass(frozen=True)
class SLOBinding:
    """The SLO this flow's final results count against (``slo: name`` or a mapping)."""

    name: str
    objective: float | None = None  # percent, e.g. 99.9 (optional here; the SLO file owns it)


@dataclass(frozen=True)
class Flow:
    name: str
    service: str
    file: str
    steps: tuple[Step, ...]
    environments: dict[str, Environment]
    owner: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    slo: SLOBinding | None = None
    schedule: Schedule = Schedule()
    uses: tuple[Library, ...] = ()
    variables: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    auth: str | None = None  # default auth scheme for every request
    session: str | None = None  # a Session from ``uses`` run before the steps
    finally_steps: tuple[Step, ...] = ()
    where: Where = Where()

    @property
    def slo_name(self) -> str | None:
        """The name of the SLO this flow's runs count against (its ``slo:``), if any."""
        return self.slo.name if self.slo is not None else None

    def auth_schemes(self) -> dict[str, AuthScheme]:
        out: dict[str, AuthScheme] = {}
        for lib in self.uses:
            out.update(lib.auth)
        return out

    def sessions(self) -> dict[str, Session]:
        out: dict[str, Session] = {}
        for lib in self.uses:
            out.update(lib.sessions)
        return out


# --------------------------------------------------------------------------- results

# Failure reasons (the ``reason`` label of the metrics). "" means success.
REASONS: tuple[str, ...] = (
    "",
    "assertion",  # an assertion failed
    "timeout",  # the request or the flow ran out of time
    "connect",  # connection refused / reset / DNS failure
    "tls",  # certificate or handshake failure
    "template",  # a variable could not be resolved
    "extract",  # a capture found nothing
    "auth",  # the auth scheme could not get credentials (token endpoint failed)
    "error",  # anything else (an unexpected response the step could not read)
)


@dataclass(frozen=True)
class Timing:
    """Phases of one HTTP exchange in seconds, named as blackbox_exporter's
    ``probe_http_duration_seconds{phase}``: resolve, connect, tls, processing (request sent
    until first response byte), transfer (first byte until the body is read)."""

    resolve: float = 0.0
    connect: float = 0.0
    tls: float = 0.0
    processing: float = 0.0
    transfer: float = 0.0

    @property
    def total(self) -> float:
        return self.resolve + self.connect + self.tls + self.processing + self.transfer

    def as_dict(self) -> dict[str, float]:
        return {
            "resolve": self.resolve,
            "connect": self.connect,
            "tls": self.tls,
            "processing": self.processing,
            "transfer": self.transfer,
        }


@dataclass(frozen=True)
class AssertionResult:
    text: str  # the assertion as written
    passed: bool
    actual: str  # what was seen, redacted and shortened to 200 characters
    message: str = ""  # why it failed, one line


@dataclass(frozen=True)
class Attempt:
    """One try of a step. ``status`` None: no response (``error`` says why)."""

    started_at: float  # wall clock (epoch seconds)
    duration_s: float  # wall time of the exchange, request start to body read
    status: int | None
    timing: Timing
    assertions: tuple[AssertionResult, ...] = ()
    error: str = ""  # redacted, one line
    reason: str = ""  # one of REASONS
    passed: bool = False


@dataclass(frozen=True)
class StepResult:
    name: str
    method: str
    url: str  # redacted
    attempts: tuple[Attempt, ...]
    allow_failure: bool = False
    is_finally: bool = False
    skipped: bool = False  # not run because an earlier critical step failed

    @property
    def first_passed(self) -> bool:
        return bool(self.attempts) and self.attempts[0].passed

    @property
    def passed(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].passed

    @property
    def final(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True)
class FlowResult:
    """One run of a flow. ``success`` is the final result (after retries): the one that counts
    against the SLO; ``first_attempt_success`` is what the run would have been without
    retries, kept apart so that retries cannot hide flakiness. ``slo`` is the flow's bound SLO
    (its ``slo:``), carried so that the SLO engine can count the run against it."""

    flow: str
    service: str
    environment: str
    location: str
    version: Version | None  # the pinned version, None when unpinned
    started_at: float  # wall clock (epoch seconds)
    duration_s: float
    steps: tuple[StepResult, ...]
    success: bool
    first_attempt_success: bool
    reason: str = ""  # one of REASONS, of the step that failed the flow
    failed_step: str | None = None
    scheduled_at: float | None = None  # when the scheduler meant it to start (serve only)
    error: str = ""  # redacted one-line summary of the failure
    slo: str | None = None  # the SLO the flow is bound to (``slo:``), None when unbound
