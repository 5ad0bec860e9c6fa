"""Bad input to `coalmine analyze replay` and `coalmine analyze record`, through the real CLI:
one line naming file:line and field with a hint, exit code 2, no traceback, nothing
half-written. The recorder runs against the real router (and, for answers that are not a
router's, a real HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.integration.test_router_support import rig

_BIN = Path(sys.executable).with_name("coalmine")
COALMINE = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "coalmine.cli.main"]
GOOD = '{"t": 1, "version": "canary", "latency_ms": 3.5, "status": 200}'

JUDGE_TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: judged
spec:
  metrics:
    - name: judge
      interval: 10s
      provider:
        plugin:
          coalmine/judge:
            {extra}
            metrics:
              - {{name: errors, kind: ratio, relativeTolerance: 2, weight: {weight}}}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COALMINE, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def assert_one_error_line(done: subprocess.CompletedProcess[str], starts: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"coalmine: error: {starts}"), done.stderr
    assert done.stdout == ""


# --------------------------------------------------------------------------- replay


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"t": 2, "version": "canary", "latency_ms": NaN, "status": 200}',
         "data.jsonl:2: field 'latency_ms': expected a finite number, got NaN (hint: "),
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": ' + "5" * 5000 + "}",
         "data.jsonl:2: field 'status': expected an integer, got a 5000-digit number (hint: "),
        ('{"t": 2, "t": 3, "version": "canary", "latency_ms": 3, "status": 200}',
         "data.jsonl:2: field 't': the field appears twice in the line (hint: "),
        ("[" * 20_000, "data.jsonl:2: not valid data: nested too deeply (hint: "),
        ("x" * 100_000, "data.jsonl:2: the line is longer than 64 KiB (hint: "),
    ],
    ids=["nan", "5000-digits", "twice", "nested", "runaway"],
)  # fmt: skip
def test_replay_refuses_a_bad_data_line_in_one_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    (tmp_path / "data.jsonl").write_text(f"{GOOD}\n{line}\n")
    (tmp_path / "t.yaml").write_text(JUDGE_TEMPLATE.format(extra="", weight=1))
    done = cli("analyze", "replay", "--template", "t.yaml", "--data", "data.jsonl", cwd=tmp_path)
    assert_one_error_line(done, expected)


def test_replay_refuses_binary_data_and_a_start_that_is_not_a_number(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(JUDGE_TEMPLATE.format(extra="", weight=1))
    (tmp_path / "data.jsonl").write_bytes(GOOD.encode() + b"\n\x7fELF\x02\x01\x01\x00\xff\xfe\n")
    args = ("analyze", "replay", "--template", "t.yaml", "--data", "data.jsonl")
    assert_one_error_line(cli(*args, cwd=tmp_path), "data.jsonl:2: not UTF-8 text")
    (tmp_path / "data.jsonl").write_text(GOOD + "\n")
    assert_one_error_line(cli(*args, "--start", "nan", cwd=tmp_path), "--start: expected a data")


@pytest.mark.parametrize(
    ("extra", "weight", "expected"),
    [
        ("alpha: 0.01", 0, "t.yaml:11: provider.plugin.coalmine/judge: the weights sum to zero"),
        ("passScore: 500", 1, "t.yaml:12: provider.plugin.coalmine/judge.passScore: pass_score "
         "must be from 0 to 100, got 500 (hint: see docs/judge.md"),
        ("groupWeights: {default: -2}", 1, "t.yaml:12: provider.plugin.coalmine/judge"
         ".groupWeights.default: must be >= 0, got -2 (hint: a weight is a number"),
    ],
)  # fmt: skip
def test_replay_refuses_judge_settings_that_could_never_decide(
    tmp_path: Path, extra: str, weight: int, expected: str
) -> None:
    (tmp_path / "t.yaml").write_text(JUDGE_TEMPLATE.format(extra=extra, weight=weight))
    (tmp_path / "data.jsonl").write_text(GOOD + "\n")
    done = cli("analyze", "replay", "--template", "t.yaml", "--data", "data.jsonl", cwd=tmp_path)
    assert_one_error_line(done, expected)  # the field's own line, coalmine/judge once
    assert done.stderr.count("coalmine/judge") == 1


# --------------------------------------------------------------------------- record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record_args(admin: str, output: Path, *more: str) -> list[str]:
    return [*COALMINE, "analyze", "record", "--admin", admin, "--output", str(output), *more]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_record_refuses_a_missing_directory_before_recording(tmp_path: Path) -> None:
    async def body() -> tuple[int, str]:
        async with rig() as r:
            proc = await asyncio.create_subprocess_exec(
                *record_args(r.admin, tmp_path / "nowhere" / "out.jsonl", "--duration", "30s"),
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(proc.communicate(), 10)  # not after 30 s
            assert proc.returncode is not None
            return proc.returncode, err.decode()

    code, err = asyncio.run(body())
    assert code == 2 and "recording" not in err and "Traceback" not in err
    assert err == (
        f"coalmine: error: --output: cannot write {tmp_path}/nowhere/out.jsonl: the directory "
        f"{tmp_path}/nowhere does not exist (hint: create it first: mkdir -p {tmp_path}/nowhere)\n"
    )


def test_record_keeps_an_earlier_file_when_the_router_is_unreachable(tmp_path: Path) -> None:
    earlier = tmp_path / "out.jsonl"
    earlier.write_text(GOOD + "\n")
    done = subprocess.run(
        record_args(f"127.0.0.1:{free_port()}", earlier, "--duration", "1s"),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "is unreachable" in done.stderr
    assert earlier.read_text() == GOOD + "\n" and not leftovers(tmp_path)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--admin", "http://rec:pw-s3cr3t@127.0.0.1:1"],
         "--admin: the router's admin address takes no user name or password"),
        (["--admin", "not an address"], "--admin: expected the router's admin address as"),
        (["--poll", "nan"], "--poll: the poll interval must be a number of seconds above 0"),
        (["--duration", "soon"], "--duration: expected a duration"),
    ],
)  # fmt: skip
def test_record_refuses_bad_options_without_echoing_secrets(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    base = ["--admin", "127.0.0.1:1", "--duration", "1s"]
    for i in range(0, len(args), 2):
        at = base.index(args[i]) if args[i] in base else len(base)
        base[at : at + 2] = args[i : i + 2]
    done = subprocess.run(
        [*COALMINE, "analyze", "record", *base, "--output", str(tmp_path / "o.jsonl")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert_one_error_line(done, expected)
    assert "s3cr3t" not in done.stderr and not list(tmp_path.iterdir())


@asynccontextmanager
async def not_a_router(records: object) -> AsyncIterator[str]:
    """An HTTP server whose /admin/records answers ``records`` (JSON), or HTML for None."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if records is None:
            return web.Response(text="<html>welcome</html>", content_type="text/html")
        return web.json_response(records)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ({"records": [{"t": "x", "version": "canary", "latency_ms": 1, "status": 200}]},
         "a record that cannot be replayed: field 't': expected a number"),
        ({"records": [{"t": 1.5}]}, "a record that cannot be replayed: not a request record"),
        (None, "something that is not a router's record list"),
    ],
    ids=["bad-field", "missing-fields", "html"],
)  # fmt: skip
def test_record_from_something_that_is_not_a_router_is_one_error_and_no_file(
    tmp_path: Path, records: object, expected: str
) -> None:
    output = tmp_path / "out.jsonl"

    async def body() -> tuple[int, str]:
        async with not_a_router(records) as admin:
            proc = await asyncio.create_subprocess_exec(
                *record_args(admin, output, "--duration", "1s"), stderr=asyncio.subprocess.PIPE
            )
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode is not None
            return proc.returncode, err.decode()

    code, err = asyncio.run(body())
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("coalmine: error: --admin: router admin 127.0.0.1:") and expected in err
    assert not list(tmp_path.iterdir())


async def _interrupt_recording(output: Path, requests: int) -> tuple[int, str]:
    """Record from a real router, send ``requests`` through it, then Ctrl-C the recorder."""
    async with rig() as r, aiohttp.ClientSession() as session:
        proc = await asyncio.create_subprocess_exec(
            *record_args(r.admin, output, "--duration", "10m", "--poll", "0.1"),
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        ready = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert ready.startswith(b"recording "), ready
        for i in range(requests):
            async with session.get(r.url + "/", headers={"X-Tenant": f"t{i}"}) as resp:
                await resp.read()
        await asyncio.sleep(0.5)  # a few polls: the requests are written
        proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(proc.stderr.read(), 20)
        await asyncio.wait_for(proc.wait(), 20)
        assert proc.returncode is not None
        return proc.returncode, rest.decode()


def test_ctrl_c_keeps_every_whole_line_recorded_and_nothing_else(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("an earlier recording\n")
    code, err = asyncio.run(_interrupt_recording(output, 40))
    assert code == 130 and "Traceback" not in err
    assert err == f"coalmine: interrupted; the 40 requests recorded before are in {output}\n"
    text = output.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 40
    assert all(json.loads(line)["status"] == 200 for line in text.splitlines())
    assert not leftovers(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would make it


def test_ctrl_c_before_any_request_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    code, err = asyncio.run(_interrupt_recording(output, 0))
    assert code == 130 and "Traceback" not in err
    assert err == f"coalmine: interrupted; nothing was recorded; {output} was not written\n"
    assert not list(tmp_path.iterdir())


def test_record_from_a_server_answering_an_html_404_is_one_short_line(tmp_path: Path) -> None:
    page = "<!DOCTYPE html><html><body>" + "<p>Nothing to see here.</p>\n" * 500 + "</body></html>"
    output = tmp_path / "out.jsonl"

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=404, text=page, content_type="text/html")

    async def body() -> tuple[int, str]:
        app = web.Application()
        app.router.add_get("/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        admin = f"127.0.0.1:{runner.addresses[0][1]}"
        try:
            proc = await asyncio.create_subprocess_exec(
                *record_args(admin, output, "--duration", "1s"), stderr=asyncio.subprocess.PIPE
            )
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            await runner.cleanup()
        assert proc.returncode is not None
        return proc.returncode, err.decode()

    code, err = asyncio.run(body())
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("coalmine: error: router admin 127.0.0.1:"), err
    assert " answered 404 Not Found: an HTML page" in err and "Nothing to see" not in err, err
    assert "(hint: is this a coalmine router's admin address?" in err and len(err) < 300, err
    assert not list(tmp_path.iterdir())
