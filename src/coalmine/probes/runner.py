"""Running one flow once: session steps, steps, ``finally`` steps -> :class:`FlowResult`.

Semantics:

- names resolve, first match wins: captures, the environment's variables, the flow's
  variables, the libraries' variables (later ``uses`` entries win), then ``base_url``;
  secrets likewise (environment < flow < libraries is reversed: environment secrets win over
  the flow's, which win over the libraries');
- the session's steps (``<session>/<step>``) run first, then the steps, in one cookie jar;
- a failing step that is critical and not ``allow_failure`` stops the remaining steps (reported
  as skipped); a non-critical one fails the flow but the run goes on; ``allow_failure`` steps
  never fail it;
- ``finally`` steps always run, after a failure or a flow timeout too, with their own budget
  (:func:`finally_budget`); their failures count like any step's, except that after a failure
  a ``finally`` step that needs a capture which was never made is skipped (nothing to clean
  up);
- a step with no ``status`` assertion must answer below 400 (an implicit ``status < 400``);
- retries follow ``Retry``; ``first_attempt_success`` is what the run would have been without
  them;
- the whole run gets ``schedule.timeout_s``: each request's timeout is cut to what is left, and a
  retry that would start after it is not made;
- a pinned run (``version``) sends ``<override_header>: <version>`` on every request (the
  router pins the request to that version);
- every URL, error, assertion ``actual`` and recorded response is redacted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from coalmine.errors import CoalmineError, SpecError
from coalmine.probes.assertions import evaluate_all, shorten
from coalmine.probes.auth import Applied, Authenticator, AuthError, TokenCache
from coalmine.probes.extract import ExtractError, extract
from coalmine.probes.http import HttpFailure, HttpRequest, HttpResponse, HttpSession
from coalmine.probes.model import (
    NO_AUTH,
    AssertionResult,
    Attempt,
    AuthScheme,
    Environment,
    Flow,
    FlowResult,
    Request,
    RetryOn,
    SecretRef,
    Step,
    StepResult,
    Timing,
    Version,
)
from coalmine.probes.records import Observed, ResponseRecord
from coalmine.probes.secrets import Redactor, SecretError, SecretStore
from coalmine.probes.template import Scope, TemplateError, render, render_json

__all__ = ["NO_AUTH", "ProbeRunner", "ResponseRecord", "finally_budget"]

USER_AGENT = "coalmine-probe/1"
_NETWORK_REASONS = ("timeout", "connect")


def finally_budget(flow_timeout_s: float) -> float:
    """Time ``finally`` steps get after the flow's own budget: a third of it, 1 to 10 s."""
    return max(1.0, min(10.0, flow_timeout_s / 3))


def _retryable(on: RetryOn, reason: str) -> bool:
    if reason in _NETWORK_REASONS:
        return True
    return on == "any" and reason not in ("", "template")


class ProbeRunner:
    """Executes flows. One runner (and its token cache) serves many runs and flows."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        token_cache: TokenCache | None = None,
        override_header: str = "X-Coalmine-Version",
        on_response: Callable[[ResponseRecord], None] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.token_cache = token_cache if token_cache is not None else TokenCache(clock)
        self.override_header = override_header
        self.on_response = on_response
        self.sleep = sleep
        self.environ = environ  # None: os.environ at run time
        self.rng = rng if rng is not None else random.Random()

    async def run(
        self,
        flow: Flow,
        environment: str,
        *,
        location: str = "local",
        version: Version | None = None,
        scheduled_at: float | None = None,
    ) -> FlowResult:
        env = flow.environments.get(environment)
        if env is None:
            known = ", ".join(sorted(flow.environments)) or "none"
            raise SpecError(
                f"flow '{flow.name}' has no environment '{environment}'",
                file=flow.file or None,
                field="environments",
                hint=f"one of: {known}",
            )
        run = _Run(self, flow, env, version)
        return await run.execute(location, scheduled_at)


@dataclass
class _Prepared:
    request: HttpRequest
    shown_url: str
    capped: bool  # the flow's remaining time cut the request's timeout
    headers: list[tuple[str, str]]  # before auth
    params: list[tuple[str, str]]


@dataclass
class _Outcome:
    attempt: Attempt
    url: str = ""


class _Run:
    """The state of one run: variables, captures, secrets, cookies, deadline."""

    def __init__(
        self, runner: ProbeRunner, flow: Flow, env: Environment, version: Version | None
    ) -> None:
        self.r = runner
        self.flow = flow
        self.env = env
        self.version = version
        self.redactor = Redactor()
        environ = runner.environ if runner.environ is not None else os.environ
        refs: dict[str, SecretRef] = {}
        library_vars: dict[str, Any] = {}
        for lib in flow.uses:
            refs.update(lib.secrets)
            library_vars.update(lib.variables)
        refs.update(flow.secrets)
        refs.update(env.secrets)
        self.secrets = SecretStore(refs, environ, self.redactor)
        self.captures: dict[str, Any] = {}
        self.scope = Scope(
            [
                self.captures,
                env.variables,
                flow.variables,
                library_vars,
                {"base_url": env.base_url},
            ],
            secret=self.secrets.get,
            environ=environ,
            clock=runner.clock,
            rng=runner.rng,
        )
        self.auth = Authenticator(runner.token_cache, self.redactor, join_url=self._join)
        self.schemes: dict[str, AuthScheme] = flow.auth_schemes()
        self.http = HttpSession(monotonic=runner.monotonic)
        self.t0 = 0.0

    # ---------------------------------------------------------------- helpers

    def _render(self, value: Any) -> Any:
        return render_json(value, self.scope)

    def _join(self, url: str) -> str:
        if "://" in url:
            return url
        base = str(self.scope.variable("base_url")).rstrip("/")
        return f"{base}/{url.lstrip('/')}"

    def _error(self, err: BaseException) -> str:
        text = err.one_line() if isinstance(err, CoalmineError) else str(err)
        return shorten(self.redactor.redact(text), 300)

    # ---------------------------------------------------------------- the run

    async def execute(self, location: str, scheduled_at: float | None) -> FlowResult:
        started_at = self.r.clock()
        self.t0 = self.r.monotonic()
        timeout = self.flow.schedule.timeout_s
        deadline = self.t0 + timeout
        results: list[StepResult] = []
        main: list[tuple[str, Step]] = []
        if self.flow.session:
            session = self.flow.sessions().get(self.flow.session)
            if session is None:
                raise SpecError(
                    f"flow '{self.flow.name}' uses an unknown session '{self.flow.session}'",
                    file=self.flow.file or None,
                    field="session",
                )
            main += [(f"{session.name}/{s.name}", s) for s in session.steps]
        main += [(s.name, s) for s in self.flow.steps]
        try:
            stopped = False
            for name, step in main:
                if stopped:
                    results.append(_skipped(name, step, self.redactor))
                    continue
                result = await self._step(name, step, deadline, timeout)
                results.append(result)
                if not result.passed and step.critical and not step.allow_failure:
                    stopped = True
            final_deadline = max(deadline, self.r.monotonic()) + finally_budget(timeout)
            failed = any(not r.passed and not r.allow_failure for r in results)
            for step in self.flow.finally_steps:
                result = await self._step(step.name, step, final_deadline, timeout, True)
                if failed and _never_captured(result):
                    result = _skipped(step.name, step, self.redactor, is_finally=True)
                results.append(result)
        finally:
            await self.http.aclose()
        return self._result(results, started_at, location, scheduled_at)

    def _result(
        self,
        steps: list[StepResult],
        started_at: float,
        location: str,
        scheduled_at: float | None,
    ) -> FlowResult:
        counted = [s for s in steps if not s.skipped and not s.allow_failure]
        success = all(s.passed for s in counted) and not any(s.skipped for s in steps)
        first = success and all(s.first_passed for s in counted)
        failed = next((s for s in counted if not s.passed), None)
        reason, error = "", ""
        if failed is not None and failed.final is not None:
            reason = failed.final.reason or "error"
            error = shorten(self.redactor.redact(f"{failed.name}: {failed.final.error}"), 300)
        return FlowResult(
            flow=self.flow.name,
            service=self.flow.service,
            environment=self.env.name,
            location=location,
            version=self.version,
            started_at=started_at,
            duration_s=self.r.monotonic() - self.t0,
            steps=tuple(steps),
            success=success,
            first_attempt_success=first,
            reason=reason,
            failed_step=None if failed is None else failed.name,
            scheduled_at=scheduled_at,
            error=error,
            slo=self.flow.slo_name,
        )

    # ---------------------------------------------------------------- one step

    async def _step(
        self, name: str, step: Step, deadline: float, flow_timeout: float, is_finally: bool = False
    ) -> StepResult:
        attempts: list[Attempt] = []
        url = self.redactor.redact_url(step.request.url)
        retry = step.retry
        for number in range(1, retry.count + 2):
            if number > 1:
                wait = retry.interval_s * retry.backoff ** (number - 2)
                if self.r.monotonic() + wait >= deadline:
                    break  # no time left for another try
                await self.r.sleep(wait)
            outcome = await self._attempt(name, number, step, deadline, flow_timeout)
            attempts.append(outcome.attempt)
            url = outcome.url or url
            if outcome.attempt.passed or not _retryable(retry.on, outcome.attempt.reason):
                break
        return StepResult(
            name=name,
            method=step.request.method,
            url=url,
            attempts=tuple(attempts),
            allow_failure=step.allow_failure,
            is_finally=is_finally,
        )

    def _prepare(self, req: Request, remaining: float) -> _Prepared:
        url = self._join(render(req.url, self.scope))
        headers = [(k, render(v, self.scope)) for k, v in req.headers.items()]
        params = [(k, render(v, self.scope)) for k, v in req.query.items()]
        content: bytes | None = None
        names = {k.lower() for k, _ in headers}
        if req.json is not None:
            content = json.dumps(self._render(req.json)).encode()
            if "content-type" not in names:
                headers.append(("Content-Type", "application/json"))
        elif req.form is not None:
            form = {k: render(v, self.scope) for k, v in req.form.items()}
            content = urlencode(form).encode()
            if "content-type" not in names:
                headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        elif req.body is not None:
            content = render(req.body, self.scope).encode()
        if "user-agent" not in names:
            headers.append(("User-Agent", USER_AGENT))
        if self.version is not None:
            headers = [(k, v) for k, v in headers if k.lower() != self.r.override_header.lower()]
            headers.append((self.r.override_header, self.version))
        wanted = req.timeout_s if req.timeout_s is not None else self.flow.schedule.timeout_s
        timeout = min(wanted, remaining)
        shown = url + (("&" if "?" in url else "?") + urlencode(params) if params else "")
        return _Prepared(
            HttpRequest(
                method=req.method,
                url=url,
                headers=headers,
                params=params,
                content=content,
                timeout_s=timeout,
                follow_redirects=req.follow_redirects,
                tls=req.tls,
            ),
            shown_url=shown,
            capped=remaining < wanted,
            headers=list(headers),
            params=list(params),
        )

    def _scheme(self, req: Request) -> AuthScheme | None:
        name = req.auth if req.auth is not None else self.flow.auth
        if name is None or name == NO_AUTH:
            return None
        scheme = self.schemes.get(name)
        if scheme is None:
            raise AuthError(f"unknown auth scheme '{name}'", hint="declare it in a used library")
        return scheme

    @staticmethod
    def _with_auth(prepared: _Prepared, applied: Applied) -> None:
        """The request's own headers and parameters plus the scheme's (an explicit header of
        the step wins over the scheme's)."""
        present = {k.lower() for k, _ in prepared.headers}
        extra = [(k, v) for k, v in applied.headers if k.lower() not in present]
        prepared.request.headers = prepared.headers + extra
        prepared.request.params = prepared.params + applied.params

    async def _attempt(
        self, name: str, number: int, step: Step, deadline: float, flow_timeout: float
    ) -> _Outcome:
        started_at = self.r.clock()
        begin = self.r.monotonic()
        remaining = deadline - begin

        def failed(reason: str, error: str, **kw: Any) -> Attempt:
            fields: dict[str, Any] = {"duration_s": 0.0, "status": None, "timing": Timing()}
            fields.update(kw)
            return Attempt(started_at=started_at, error=error, reason=reason, **fields)

        if remaining <= 0:
            error = f"the flow's timeout ({flow_timeout:g}s) ran out before this step"
            return _Outcome(failed("timeout", error))
        try:
            prepared = self._prepare(step.request, remaining)
        except (TemplateError, SecretError) as err:
            return _Outcome(failed("template", self._error(err)))
        url = self.redactor.redact_url(prepared.shown_url)
        req = prepared.request
        applied: Applied | None = None
        try:
            scheme = self._scheme(step.request)
            if scheme is not None:
                applied = await self.auth.apply(
                    scheme, self._render, tls=req.tls, timeout_s=req.timeout_s
                )
                self._with_auth(prepared, applied)
        except (TemplateError, SecretError) as err:
            return _Outcome(failed("template", self._error(err)), url)
        except AuthError as err:
            return _Outcome(failed("auth", self._error(err)), url)
        self.redactor.observe_headers(req.headers)
        url = self.redactor.redact_url(prepared.shown_url)

        try:
            response = await self._send(req, deadline)
            if response.status == 401 and applied is not None and applied.oauth is not None:
                renewed = await self.auth.after_401(applied, req.tls, req.timeout_s)
                if renewed is not None:
                    self._with_auth(prepared, renewed)
                    response = await self._send(req, deadline)
        except HttpFailure as err:
            message = err.message
            if err.reason == "timeout" and prepared.capped:
                message = f"the flow's timeout ({flow_timeout:g}s) ran out during this step"
            attempt = failed(
                err.reason,
                self._error(Exception(message)),
                timing=err.timing,
                duration_s=err.duration_s,
            )
            return _Outcome(attempt, url)
        except AuthError as err:
            return _Outcome(failed("auth", self._error(err)), url)
        return self._check(name, number, step, response, started_at, url)

    async def _send(self, req: HttpRequest, deadline: float) -> HttpResponse:
        req.timeout_s = max(0.001, min(req.timeout_s, deadline - self.r.monotonic()))
        return await self.http.send(req)

    def _check(
        self,
        name: str,
        number: int,
        step: Step,
        response: HttpResponse,
        started_at: float,
        url: str,
    ) -> _Outcome:
        text = response.text
        self.redactor.observe_headers(response.headers)
        content_type = next(
            (v for k, v in response.headers if k.lower() == "content-type"), ""
        ).lower()
        self.redactor.observe_body(text, content_type)
        observed = Observed(
            status=response.status,
            headers=response.headers,
            text=text,
            cookies={**self.http.cookies(), **response.set_cookies},
            latency_s=response.duration_s,
            flow_latency_s=self.r.monotonic() - self.t0,
        )
        captures: dict[str, Any] = {}
        extract_error = ""
        for spec in step.extract:
            try:
                value = extract(spec, observed)
            except ExtractError as err:
                extract_error = self._error(err)
                break
            if spec.secret:
                self.redactor.add(value)
            captures[spec.name] = value
        self.captures.update(captures)  # later assertions may compare with them
        if self.r.on_response is not None:
            headers: dict[str, str] = {}
            for key, value in self.redactor.redact_headers(response.headers):
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            self.r.on_response(
                ResponseRecord(
                    step=name,
                    attempt=number,
                    method=step.request.method,
                    url=self.redactor.redact_url(response.url),
                    status=response.status,
                    headers=headers,
                    body=self.redactor.redact(text),
                )
            )
        results = list(evaluate_all(step.asserts, observed, self.redactor, self._render))
        if not any(a.subject == "status" for a in step.asserts):
            ok = response.status < 400
            results.insert(
                0,
                AssertionResult(
                    text="status < 400 (default)",
                    passed=ok,
                    actual=str(response.status),
                    message="" if ok else f"status < 400 (default): got {response.status}",
                ),
            )
        failures = [a for a in results if not a.passed]
        passed = not failures and not extract_error
        reason = "" if passed else ("assertion" if failures else "extract")
        error = failures[0].message if failures else extract_error
        attempt = Attempt(
            started_at=started_at,
            duration_s=response.duration_s,
            status=response.status,
            timing=response.timing,
            assertions=tuple(results),
            error=error,
            reason=reason,
            passed=passed,
        )
        return _Outcome(attempt, url)


def _skipped(name: str, step: Step, redactor: Redactor, is_finally: bool = False) -> StepResult:
    return StepResult(
        name=name,
        method=step.request.method,
        url=redactor.redact_url(step.request.url),
        attempts=(),
        allow_failure=step.allow_failure,
        is_finally=is_finally,
        skipped=True,
    )


def _never_captured(result: StepResult) -> bool:
    """A ``finally`` step that needs a capture an earlier (failed) step never made: there is
    nothing to clean up, so it is skipped rather than failed."""
    final = result.final
    return final is not None and final.reason == "template" and "unknown variable" in final.error
