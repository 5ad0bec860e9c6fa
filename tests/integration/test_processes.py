"""The process supervisor with real children: no orphans, SIGKILL fallback, readable failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coalmine.demo.processes import Child, ProcessGroup, wait_http_ok
from coalmine.errors import CoalmineError

SUPERVISOR = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from coalmine.demo.processes import ProcessGroup

    work = Path(sys.argv[1])
    with ProcessGroup(work / "logs") as group:
        group.install_signal_handlers()
        pids = []
        for version in ("v1", "v2"):
            port_file = work / f"{version}.port"
            argv = [sys.executable, "-m", "coalmine.demo.service", "--version", version,
                    "--port", "0", "--port-file", str(port_file)]
            child = group.start(version, argv, ready=lambda c, p=port_file: p.exists())
            pids.append(child.pid)
        print(json.dumps(pids), flush=True)
        time.sleep(60)
    """
)


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return all(gone(pid) for pid in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_children_die_with_the_supervisor(tmp_path: Path, sig: signal.Signals) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        assert supervisor.stdout is not None
        line = supervisor.stdout.readline()
        pids = json.loads(line)
        assert len(pids) == 2 and not any(gone(pid) for pid in pids)
        os.kill(supervisor.pid, sig)
        assert supervisor.wait(5) == -sig
        assert wait_gone(pids, 3.0), f"orphans left: {[p for p in pids if not gone(p)]}"
    finally:
        with supervisor:
            supervisor.kill()
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def logged(text: str) -> Callable[[Child], bool]:
    return lambda child: text in child.log_path.read_text()


def test_stop_all_kills_children_that_ignore_sigterm(tmp_path: Path) -> None:
    with ProcessGroup(tmp_path, stop_timeout=0.5) as group:
        stubborn = group.start(
            "stubborn", [sys.executable, "-c", IGNORES_SIGTERM], ready=logged("ready")
        )
        polite = group.start("polite", [sys.executable, "-c", "import time; time.sleep(60)"])
        assert stubborn.alive() and polite.alive()
        began = time.monotonic()
        group.stop_all()
        assert time.monotonic() - began < 3
        assert stubborn.returncode == -signal.SIGKILL
        assert polite.returncode == -signal.SIGTERM
        group.stop_all()  # idempotent


def test_service_child_with_http_readiness(tmp_path: Path) -> None:
    with ProcessGroup(tmp_path / "logs") as group:
        port_file = tmp_path / "svc.port"
        argv = [sys.executable, "-m", "coalmine.demo.service", "--version", "v9"]
        child = group.start("svc", [*argv, "--port-file", str(port_file)])
        port = child.wait_port_file(port_file, timeout=10)
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=5, child=child)
        assert "listening on 127.0.0.1:" in child.log_path.read_text()
        assert child.terminate() == 0
    assert child.log_path == tmp_path / "logs" / "svc.log"


def test_readiness_failure_names_child_exit_code_and_log_tail(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(8): print(f'line {i}')\nsys.exit(4)\n"
    with ProcessGroup(tmp_path) as group, pytest.raises(CoalmineError) as info:
        group.start("broken", [sys.executable, "-c", script], ready=lambda c: False)
    message = str(info.value)
    assert "'broken'" in message and "code 4" in message
    assert "line 3 | line 4 | line 5 | line 6 | line 7" in message
    assert "line 2" not in message and "\n" not in message


def test_readiness_timeout_stops_the_child(tmp_path: Path) -> None:
    script = "import time\nprint('starting', flush=True)\ntime.sleep(60)\n"
    with ProcessGroup(tmp_path) as group:
        with pytest.raises(CoalmineError) as info:
            group.start("slow", [sys.executable, "-c", script], ready_timeout=0.5, ready=never)
        slow = group.children[0]
        assert not slow.alive()
    message = str(info.value)
    assert "'slow'" in message and "not ready within 0.5s" in message
    assert "starting" in message and "not listening" in message


def never(child: Child) -> bool:
    raise ConnectionRefusedError("not listening")


def test_wait_port_file_reports_early_exit(tmp_path: Path) -> None:
    with ProcessGroup(tmp_path) as group:
        child = group.start("quitter", [sys.executable, "-c", "print('bye')"])
        with pytest.raises(CoalmineError) as info:
            child.wait_port_file(tmp_path / "never.port", timeout=5)
    assert "exited with code 0" in str(info.value) and "bye" in str(info.value)


def test_wait_http_ok_times_out() -> None:
    with pytest.raises(CoalmineError, match="did not answer 200"):
        wait_http_ok("http://127.0.0.1:9/", timeout=0.3)
