"""``coalmine probes validate|lint|run|serve|replay``, also installed as ``syntheticsctl``."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from coalmine.cli.common import refuse_unusable_output
from coalmine.errors import CoalmineError

if TYPE_CHECKING:
    from coalmine.probes.drift import StepRecording
    from coalmine.probes.model import Flow, FlowResult, Version
    from coalmine.probes.records import ResponseRecord

probes_app = typer.Typer(
    name="probes",
    help="Synthetic probe flows: check them, run them once, serve them on schedule, spot drift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PATHS_ARG = typer.Argument(..., help="Flow files or directories of flows (synthetics/).")


@probes_app.command()
def validate(
    paths: list[Path] = PATHS_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Check flows and the libraries they use: schema and references. Exit code 2 on errors."""
    from coalmine.probes.loader import load_flows_with_errors

    flows, errors = load_flows_with_errors(paths)
    if as_json:
        report = {
            "ok": not errors,
            "flows": sorted(f.name for f in flows),
            "errors": [
                {"file": e.file, "line": e.line, "field": e.field, "message": e.message}
                | {"hint": e.hint}
                for e in errors
            ],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        for error in errors:
            typer.echo(error.one_line(), err=True)
        if not errors:
            names = ", ".join(sorted(f.name for f in flows))
            typer.echo(f"ok: {len(flows)} flow(s) valid: {names}")
    if errors:
        raise typer.Exit(2)


@probes_app.command()
def lint(
    paths: list[Path] = PATHS_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Flag drift risks: no assertions, no timeout, no SLO binding, plain-text secrets, unused
    captures. Exit code 1 when there are findings, 2 when a file does not load."""
    from coalmine.probes.lint import lint_paths

    findings, errors = lint_paths(paths)
    if as_json:
        report = {
            "ok": not findings and not errors,
            "findings": [f.as_dict() for f in findings],
            "errors": [e.one_line() for e in errors],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        for error in errors:
            typer.echo(error.one_line(), err=True)
        for finding in findings:
            typer.echo(finding.one_line())
        if not findings and not errors:
            typer.echo("ok: no findings")
    if errors:
        raise typer.Exit(2)
    if findings:
        raise typer.Exit(1)


ENV_OPT = typer.Option(..., "--env", "-e", help="The flow's environment (staging, prod...).")
VERSION_OPT = typer.Option(
    None, "--version", help="Pin every request to stable or canary (router override header)."
)
HEADER_OPT = typer.Option(
    "X-Coalmine-Version", "--override-header", help="The router's version override header."
)


def _flows(paths: list[Path], name: str | None) -> list[Flow]:
    from coalmine.probes.loader import load_flows

    flows = load_flows(paths)
    if name is not None:
        flows = [f for f in flows if f.name == name]
        if not flows:
            raise CoalmineError(f"no flow named {name!r} in {', '.join(map(str, paths))}")
    return flows


def _version(value: str | None) -> Version | None:
    if value not in (None, "stable", "canary"):
        raise CoalmineError(f"--version must be stable or canary, got {value!r}")
    return value  # type: ignore[return-value]


@probes_app.command()
def run(
    paths: list[Path] = PATHS_ARG,
    env: str = ENV_OPT,
    flow_name: str | None = typer.Option(None, "--flow", help="Run only this flow."),
    version: str | None = VERSION_OPT,
    location: str = typer.Option("local", "--location", help="Location label of the results."),
    record: Path | None = typer.Option(
        None, "--record", help="Save the responses' shapes to FILE, for `replay` later."
    ),
    override_header: str = HEADER_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run flows once and print every step: status, timing phases, assertions. Exit code 1 when a
    flow fails."""
    import asyncio

    from coalmine.probes.runner import ProbeRunner

    flows = _flows(paths, flow_name)
    pinned = _version(version)  # bad input stops here, before any request
    if record is not None:
        if len(flows) != 1:
            raise CoalmineError(
                "--record needs exactly one flow", hint="select it with --flow NAME"
            )
        refuse_unusable_output(record, "--record")
    recorded: list[ResponseRecord] = []
    runner = ProbeRunner(override_header=override_header, on_response=recorded.append)

    async def run_all() -> list[FlowResult]:
        return [await runner.run(f, env, location=location, version=pinned) for f in flows]

    results = asyncio.run(run_all())
    if record is not None:
        _write_recording(record, flows[0], env, recorded)
    if as_json:
        from coalmine.probes.store import result_to_dict  # imports SQLAlchemy: only here

        typer.echo(json.dumps([result_to_dict(r) for r in results], indent=2))
    else:
        from coalmine.cli.probe_view import print_result

        for result in results:
            print_result(result)
    if not all(r.success for r in results):
        raise typer.Exit(1)


def _write_recording(path: Path, flow: Flow, env: str, records: list[ResponseRecord]) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file."""
    import os
    import time

    from coalmine.probes.drift import RECORDING_VERSION, StepRecording

    steps = {
        r.step: StepRecording.from_response(r.status, r.headers, r.body).to_dict()
        for r in records  # the last attempt of a step wins
    }
    data = {
        "version": RECORDING_VERSION,
        "flow": flow.name,
        "environment": env,
        "recorded_at": time.time(),
        "steps": steps,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as out:
            out.write(json.dumps(data, indent=2) + "\n")
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CoalmineError(f"cannot write recording {path}: {err.strerror or err}") from None
    typer.echo(f"recorded {len(steps)} step(s) of {flow.name} to {path}", err=True)


def _read_recording(path: Path) -> tuple[str, dict[str, StepRecording]]:
    """The recorded flow's name and its steps."""
    from coalmine.probes.drift import RECORDING_VERSION, StepRecording

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CoalmineError(
            f"recording {path} not found", hint="make one with `run --record FILE`"
        ) from None
    except (OSError, ValueError) as err:
        raise CoalmineError(f"cannot read recording {path}: {err}") from None
    if not isinstance(data, dict) or data.get("version") != RECORDING_VERSION:
        raise CoalmineError(
            f"{path} is not a probe recording (version {RECORDING_VERSION})",
            hint="make one with `run --record FILE`",
        )
    flow, steps = data.get("flow"), data.get("steps")
    if not isinstance(flow, str) or not flow:
        raise CoalmineError(f"{path}: field 'flow' must name the recorded flow")
    if not isinstance(steps, dict):
        raise CoalmineError(f"{path}: field 'steps' must be a mapping")
    return flow, {name: StepRecording.from_dict(step) for name, step in steps.items()}


@probes_app.command()
def replay(
    paths: list[Path] = PATHS_ARG,
    recording: Path = typer.Option(..., "--recording", help="A file written by `run --record`."),
    env: str = ENV_OPT,
    flow_name: str | None = typer.Option(None, "--flow", help="The flow (when several)."),
    version: str | None = VERSION_OPT,
    override_header: str = HEADER_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Probe drift: run the flow now and report response fields that appeared, vanished or
    changed type since the recording. Exit code 1 when something drifted."""
    import asyncio
    import dataclasses

    from coalmine.probes.drift import StepRecording, compare
    from coalmine.probes.runner import ProbeRunner

    recorded_flow, before = _read_recording(recording)
    flows = _flows(paths, flow_name)
    if len(flows) != 1:
        raise CoalmineError("replay needs exactly one flow", hint="select it with --flow NAME")
    if flows[0].name != recorded_flow:
        raise CoalmineError(
            f"{recording} is a recording of flow '{recorded_flow}', not of '{flows[0].name}'",
            hint="replay the flow that was recorded, or record this one with `run --record FILE`",
        )
    records: list[ResponseRecord] = []
    runner = ProbeRunner(override_header=override_header, on_response=records.append)
    result = asyncio.run(runner.run(flows[0], env, version=_version(version)))
    now = {r.step: StepRecording.from_response(r.status, r.headers, r.body) for r in records}
    changes = compare(before, now)
    if as_json:
        report = {
            "flow": result.flow,
            "success": result.success,
            "drift": [dataclasses.asdict(c) for c in changes],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        for change in changes:
            typer.echo(change.sentence())
        if not changes:
            typer.echo(f"no drift: {len(before)} step(s) match the recording")
    if changes:
        raise typer.Exit(1)


@probes_app.command()
def serve(
    paths: list[Path] = PATHS_ARG,
    env: str = ENV_OPT,
    listen: str = typer.Option("127.0.0.1:9116", "--listen", help="Address of /metrics etc."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Runs at the same time."),
    location: str | None = typer.Option(None, "--location", help="Only flows of this location."),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Also append results to FILE (-)."),
    sink_url: str | None = typer.Option(None, "--sink-url", help="Also POST results here."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="State store (default $COALMINE_DATABASE_URL or SQLite)."
    ),
    override_header: str = HEADER_OPT,
) -> None:
    """Run every flow on its schedule (jitter, bounded concurrency, no overlapping runs) and
    serve /metrics, /healthz, /results and /sli. Stops on Ctrl-C or SIGTERM."""
    import asyncio
    import os
    import signal

    from coalmine.probes.runner import ProbeRunner
    from coalmine.probes.scheduler import as_run_flow, plan_targets
    from coalmine.probes.server import parse_listen
    from coalmine.probes.server import serve as serve_flows
    from coalmine.probes.sinks import HttpSink, JsonlFileSink, ResultSink
    from coalmine.probes.store import ProbeStore
    from coalmine.store.open import DEFAULT_URL, open_store

    # every check before anything starts: the address, the flows, what would run, the socket
    try:
        host, port = parse_listen(listen)
    except ValueError as err:
        raise CoalmineError(f"--listen {listen!r}: {err}") from None
    flows = _flows(paths, None)
    targets = plan_targets(flows, env, location)
    scheduled = len({t.flow.name for t in targets})
    sock = _listen_socket(listen, host, port)
    try:
        store = open_store(database_url or os.environ.get("COALMINE_DATABASE_URL") or DEFAULT_URL)
    except BaseException:
        sock.close()
        raise
    sinks: list[ResultSink] = []
    if jsonl is not None:
        sinks.append(JsonlFileSink(jsonl))
    if sink_url is not None:
        sinks.append(HttpSink(sink_url))
    runner = ProbeRunner(override_header=override_header)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stats = await serve_flows(
            flows,
            env,
            run=as_run_flow(runner),
            stop_event=stop,
            sinks=sinks,
            sock=sock,
            concurrency=concurrency,
            store=ProbeStore(store),
            location=location,
            on_ready=lambda url: typer.echo(
                f"serving {scheduled} flow(s), {len(targets)} target(s), on {url}", err=True
            ),
        )
        typer.echo(
            f"stopped: {stats.on_time} of {stats.scheduled} scheduled runs started on time",
            err=True,
        )

    try:
        asyncio.run(main())
    finally:
        sock.close()
        store.close()


def _listen_socket(listen: str, host: str, port: int) -> socket.socket:
    """The bound socket of ``--listen``, or one clear line saying why there is none."""
    import errno

    from coalmine.probes.server import listen_socket

    try:
        return listen_socket(host, port)
    except socket.gaierror:
        raise CoalmineError(
            f"--listen {listen!r}: unknown host {host!r}",
            hint="use an address of this machine, e.g. 127.0.0.1, 0.0.0.0 or [::1]",
        ) from None
    except OSError as err:
        hints = {
            errno.EADDRINUSE: "another process listens there: stop it, or choose another port "
            "(0 picks a free one)",
            errno.EADDRNOTAVAIL: "not an address of this machine: use 127.0.0.1, 0.0.0.0 or "
            "one of its own",
            errno.EACCES: "ports below 1024 need privileges: choose one from 1024 up",
        }
        raise CoalmineError(
            f"--listen {listen!r}: cannot listen there ({err.strerror or err})",
            hint=hints.get(err.errno or 0),
        ) from None


def register(app: typer.Typer) -> None:
    app.add_typer(probes_app)


def syntheticsctl_main() -> None:
    """The ``syntheticsctl`` console script: the ``probes`` group as a command of its own."""
    probes_app.info.name = "syntheticsctl"
    try:
        probes_app()
    except CoalmineError as err:
        print(f"syntheticsctl: error: {err.one_line()}", file=sys.stderr)
        sys.exit(2)
