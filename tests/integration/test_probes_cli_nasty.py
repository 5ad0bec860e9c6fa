"""``coalmine probes`` given bad or odd input: one clear line and exit code 2, checked before
any request is sent or anything is written; and replays that do not hide what changed.

Two checks run the real console script (exit code, no traceback); the rest run in-process
against the real probe application on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from coalmine.cli.probes_cmds import probes_app
from coalmine.errors import CoalmineError
from coalmine.probes.loader import load_flows
from coalmine.probes.server import listen_socket, parse_listen, serve
from tests.fixtures.probe_app import ProbeApp
from tests.integration.test_probe_scheduler import FakeRun
from tests.integration.test_probes_cli_run import COALMINE, cli, one_line_error

FLOW = """\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {name: NAME, service: maestro-api}
slo: maestro-api-availability
schedule: {interval: 1m, timeout: 10s, locations: [eu-1]}
environments:
  staging: {base_url: "URL"}
steps:
  - name: version
    request: {url: /version, timeout: 2s}
    assert: ["status == 200"]
"""
SECOND_STEP = """\
  - name: echo
    request: {url: /echo, timeout: 2s}
    assert: ["status == 200"]
"""


def write_flow(folder: Path, app: ProbeApp, name: str = "heartbeat", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(FLOW.replace("NAME", name).replace("URL", app.url) + extra)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    """``coalmine probes ARGS`` in-process; a CoalmineError ends as ``main()`` ends it."""
    result = CliRunner().invoke(probes_app, list(args))
    if isinstance(result.exception, CoalmineError):
        return 2, result.stdout, f"coalmine: error: {result.exception.one_line()}\n"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# --------------------------------------------------------------------------- real CLI


def test_record_into_a_missing_directory_fails_before_any_request(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flow = write_flow(tmp_path, probe_app)
    target = tmp_path / "nonexistent" / "dir" / "r.json"
    done = cli(
        "probes", "run", str(flow), "--env", "staging", "--record", str(target), exe=COALMINE
    )
    line = one_line_error(done, prefix="coalmine")
    assert f"--record: cannot write {target}: the directory {target.parent} does not exist" in line
    assert probe_app.state.requests == 0  # checked before the flow ran
    assert not target.parent.exists()


def test_serve_on_a_busy_port_is_one_line_naming_listen(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flows = tmp_path / "synthetics"
    write_flow(flows, probe_app)
    db = tmp_path / "state.db"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        done = cli(
            "probes", "serve", str(flows), "--env", "staging", "--listen", listen,
            "--database-url", f"sqlite:///{db}", exe=COALMINE,
        )  # fmt: skip
    line = one_line_error(done, prefix="coalmine")
    assert f"--listen '{listen}': cannot listen there (Address already in use)" in line
    assert "choose another port" in line
    assert not db.exists() and probe_app.state.requests == 0  # nothing started


# --------------------------------------------------------------------------- serve --listen


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:99999", "the port must be a number from 0 to 65535, got '99999'"),
        ("127.0.0.1:-1", "the port must be a number from 0 to 65535"),
        ("127.0.0.1", "expected HOST:PORT"),
        (":9116", "expected HOST:PORT"),
        ("::1:9116", "an IPv6 address goes in brackets, e.g. [::1]:9116"),
        ("[::1]", "expected [IPv6]:PORT"),
        ("999.1.1.1:9000", "unknown host '999.1.1.1'"),
    ],
)
def test_a_bad_listen_address_is_one_line_before_anything_starts(
    probe_app: ProbeApp, tmp_path: Path, listen: str, message: str
) -> None:
    flows = tmp_path / "synthetics"
    write_flow(flows, probe_app)
    db = tmp_path / "state.db"
    args = ["serve", str(flows), "-e", "staging", "--listen", listen]
    code, _, err = invoke(*args, "--database-url", f"sqlite:///{db}")
    assert code == 2
    assert err.startswith(f"coalmine: error: --listen '{listen}': {message}"), err
    assert not db.exists()


def test_serve_listens_on_ipv6_in_brackets(probe_app: ProbeApp, tmp_path: Path) -> None:
    assert parse_listen("[::1]:9116") == ("::1", 9116)
    assert parse_listen("localhost:0") == ("localhost", 0)
    try:
        sock = listen_socket("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    flows = load_flows([write_flow(tmp_path, probe_app)])

    async def body() -> str:
        stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(flows, "staging", run=FakeRun(), stop_event=stop, sock=sock,
                  on_ready=ready.set_result)
        )  # fmt: skip
        url = await asyncio.wait_for(ready, 5)
        async with httpx.AsyncClient() as client:
            healthz = await client.get(f"{url}/healthz")
        stop.set()
        await asyncio.wait_for(task, 10)
        assert healthz.status_code == 200
        return str(url)

    assert asyncio.run(body()).startswith("http://[::1]:")


def test_serve_from_a_location_no_flow_has_names_the_flows_locations(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flows = tmp_path / "synthetics"
    write_flow(flows, probe_app)
    db = tmp_path / "state.db"
    code, _, err = invoke(
        "serve", str(flows), "-e", "staging", "--listen", "127.0.0.1:0",
        "--location", "nowhere", "--database-url", f"sqlite:///{db}",
    )  # fmt: skip
    assert code == 2
    assert "no flow runs from location 'nowhere' (the flows' locations: eu-1)" in err
    assert not db.exists() and probe_app.state.requests == 0


# --------------------------------------------------------------------------- empty and twice


@pytest.mark.parametrize("command", ["validate", "lint", "run"])
def test_no_flows_found_is_an_error(tmp_path: Path, command: str) -> None:
    empty = tmp_path / "synthetics"
    empty.mkdir()
    extra = ["--env", "staging"] if command == "run" else []
    code, out, err = invoke(command, str(empty), *extra)
    assert code == 2, out + err
    assert f"no flows found in {empty}" in err and "directly inside the directories" in err
    assert "ok" not in out


def test_validate_json_of_nothing_is_not_ok(tmp_path: Path) -> None:
    code, out, _ = invoke("validate", "--json", str(tmp_path))
    assert code == 2
    assert json.loads(out)["ok"] is False


def test_a_file_given_twice_or_with_its_directory_is_one_flow(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flow = write_flow(tmp_path / "synthetics", probe_app)
    for paths in (
        [flow, flow],
        [flow, flow.parent],
        [flow.parent, flow.parent / ".." / "synthetics"],
    ):
        code, out, err = invoke("validate", *map(str, paths))
        assert (code, out, err) == (0, "ok: 1 flow(s) valid: heartbeat\n", ""), paths
    code, out, _ = invoke("lint", str(flow), str(flow.parent))
    assert code == 0 and out == "ok: no findings\n"
    code, out, _ = invoke("run", str(flow), str(flow), "--env", "staging", "--json")
    assert code == 0 and len(json.loads(out)) == 1
    assert probe_app.state.requests == 1  # run once, not twice


# --------------------------------------------------------------------------- record / replay


def test_replay_reports_steps_that_ran_but_were_not_recorded(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flow = write_flow(tmp_path, probe_app)
    rec = tmp_path / "rec.json"
    code, _, err = invoke("run", str(flow), "--env", "staging", "--record", str(rec))
    assert code == 0 and "recorded 1 step(s) of heartbeat" in err
    assert list(json.loads(rec.read_text())["steps"]) == ["version"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    write_flow(tmp_path, probe_app, extra=SECOND_STEP)  # the flow grew a step
    code, out, _ = invoke("replay", str(flow), "-e", "staging", "--recording", str(rec))
    assert code == 1, out
    assert out == "echo: step ran now but is not in the recording\n"
    code, out, _ = invoke("replay", str(flow), "-e", "staging", "--recording", str(rec), "--json")
    assert [(c["step"], c["kind"]) for c in json.loads(out)["drift"]] == [
        ("echo", "step-unrecorded")
    ]

    # recorded with both steps, replayed with one: the other is drift too
    invoke("run", str(flow), "--env", "staging", "--record", str(rec))
    write_flow(tmp_path, probe_app)
    code, out, _ = invoke("replay", str(flow), "-e", "staging", "--recording", str(rec))
    assert (code, out) == (1, "echo: recorded step did not run now\n")


def test_replay_refuses_a_recording_of_another_flow(probe_app: ProbeApp, tmp_path: Path) -> None:
    rec = tmp_path / "rec.json"
    recorded = write_flow(tmp_path, probe_app, name="heartbeat")
    assert invoke("run", str(recorded), "-e", "staging", "--record", str(rec))[0] == 0
    other = write_flow(tmp_path, probe_app, name="checkout")
    before = probe_app.state.requests
    code, out, err = invoke("replay", str(other), "-e", "staging", "--recording", str(rec))
    assert code == 2 and out == ""
    assert err.startswith(
        f"coalmine: error: {rec} is a recording of flow 'heartbeat', not of 'checkout'"
    )
    assert probe_app.state.requests == before  # refused before running anything


def test_record_refuses_a_directory_and_a_path_under_a_file(
    probe_app: ProbeApp, tmp_path: Path
) -> None:
    flow = write_flow(tmp_path, probe_app)
    code, _, err = invoke("run", str(flow), "-e", "staging", "--record", str(tmp_path))
    assert code == 2 and f"--record: {tmp_path} is a directory" in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = invoke("run", str(flow), "-e", "staging", "--record", str(blocker / "r.json"))
    assert code == 2 and f"the directory {blocker} does not exist" in err
    assert probe_app.state.requests == 0
