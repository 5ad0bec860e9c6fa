"""``coalmine router ...`` commands."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from coalmine.cli import router_cmds
from tests.integration.test_router_support import Rig, rig
from tests.support.cli_env import command_app

ROOT = Path(__file__).resolve().parents[2]


def cli() -> typer.Typer:
    return command_app(router_cmds.register)


@pytest.fixture
def running() -> Iterator[Rig]:
    """A router in a background event loop, so that the CLI can run its own."""
    ready: list[Rig] = []
    stop = threading.Event()

    def run() -> None:
        async def body() -> None:
            async with rig() as r:
                ready.append(r)
                while not stop.is_set():
                    await asyncio.sleep(0.02)

        asyncio.run(body())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not ready and time.monotonic() < deadline:
        time.sleep(0.02)
    yield ready[0]
    stop.set()
    thread.join(10)


def test_status_and_set_weight(running: Rig) -> None:
    runner = CliRunner()
    result = runner.invoke(cli(), ["router", "set-weight", "35", "--admin", running.admin])
    assert result.exit_code == 0, result.output
    assert "canary weight 35%" in result.output and "generation 1" in result.output
    result = runner.invoke(cli(), ["router", "status", "--admin", running.admin, "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["routing"]["canary_weight"] == 35
    assert status["stats"]["canary"]["error_rate"] is None
    result = runner.invoke(cli(), ["router", "status", "--admin", running.admin])
    assert (
        "shop: canary weight 35%" in result.output
        and "stable last 60s: 0 requests" in result.output
    )
    assert (
        runner.invoke(cli(), ["router", "set-weight", "101", "--admin", running.admin]).exit_code
        == 2
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, listen: int, admin: int) -> None:
    text = (ROOT / "examples" / "coalmine.yaml").read_text()
    text = text.replace("listen: 127.0.0.1:8080", f"listen: 127.0.0.1:{listen}")
    text = text.replace("admin: 127.0.0.1:8081", f"admin: 127.0.0.1:{admin}")
    path.write_text(text)


def coalmine(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "coalmine.cli.main", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


needs_config = pytest.mark.skipif(
    importlib.util.find_spec("coalmine.spec.config") is None,
    reason="coalmine.spec.config (the coalmine.yaml loader) is not written yet",
)


@needs_config
def test_router_serve_starts_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    listen, admin = free_port(), free_port()
    write_config(tmp_path / "coalmine.yaml", listen, admin)
    proc = coalmine(
        "router", "serve", "--config", "coalmine.yaml", "--service", "shop", cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=0.5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the router did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        answer = httpx.get(f"http://127.0.0.1:{listen}/", timeout=5)  # stable is not running
        assert answer.status_code == 502 and answer.headers["X-Coalmine-Version"] == "stable"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "stopped" in out


@needs_config
def test_router_serve_on_a_taken_port_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_config(tmp_path / "coalmine.yaml", port, free_port())
        proc = coalmine("router", "serve", "--service", "shop", cwd=tmp_path)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("coalmine: error:")]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "hint" in lines[0]
    assert "Traceback" not in err
