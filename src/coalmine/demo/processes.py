"""A small supervisor for the demo's child processes (services, router).

Each child runs in its own process group with its output in a log file, and on Linux asks the
kernel to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so no child outlives the
demo even if the demo is killed with SIGKILL. The death signal is tied to the *thread* that
started the child: start children from the main thread (or one that outlives them).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx

from coalmine.errors import CoalmineError

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.05
_TAIL_LINES = 5


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """The ``preexec_fn``: die with the parent (Linux only)."""

    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

    return setup


class Child:
    """One supervised process; its stdout and stderr go to ``log_path``."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = _TAIL_LINES) -> list[str]:
        """The last lines of the child's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def failure(self, what: str) -> CoalmineError:
        """An error naming the child, its exit code and the tail of its log."""
        code = self.returncode
        state = f"exited with code {code}" if code is not None else "is still running"
        tail = " | ".join(self.log_tail()) or "(empty)"
        return CoalmineError(
            f"child {self.name!r} (pid {self.pid}) {what}; it {state}; last log lines: {tail}",
            hint=f"see {self.log_path}",
        )

    def wait_port_file(self, path: str | os.PathLike[str], timeout: float = 10.0) -> int:
        """Wait until the child writes a port number to ``path``; return it."""
        target = Path(path)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                return int(target.read_text().strip())
            if not self.alive():
                raise self.failure(f"exited before writing its port to {target}")
            if time.monotonic() >= deadline:
                raise self.failure(f"did not write its port to {target} within {timeout:g}s")
            time.sleep(_POLL_S)

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM the child's process group, SIGKILL it after ``timeout``; return the exit code."""
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
        return self.popen.wait()

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def __repr__(self) -> str:
        return f"Child(name={self.name!r}, pid={self.pid}, returncode={self.returncode})"


class ProcessGroup:
    """Starts children and makes sure they all stop: on exit, on signals, at interpreter exit."""

    def __init__(self, log_dir: str | os.PathLike[str], stop_timeout: float = 5.0) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self._previous_handlers: dict[int, Any] = {}
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        ready: Callable[[Child], bool] | None = None,
        ready_timeout: float = 10.0,
    ) -> Child:
        """Start ``argv`` as child ``name``; ``env`` adds to (overrides) this process's environment.

        ``ready`` is polled until it returns True (an exception counts as "not yet"); if the
        child exits or ``ready_timeout`` passes first, the child is stopped and a
        :class:`CoalmineError` with its exit code and log tail is raised.
        """
        if any(child.name == name for child in self.children):
            raise ValueError(f"a child named {name!r} already exists")
        log_path = self.log_dir / f"{name}.log"
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                start_new_session=True,
                preexec_fn=_child_setup(os.getpid()),
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        if ready is not None:
            self._wait_ready(child, ready, ready_timeout)
        return child

    def _wait_ready(self, child: Child, ready: Callable[[Child], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                if ready(child):
                    return
            except Exception as exc:
                last_error = exc
            if not child.alive():
                raise child.failure("exited before it was ready")
            if time.monotonic() >= deadline:
                child.terminate(self.stop_timeout)
                why = f" (last check: {last_error})" if last_error else ""
                raise child.failure(f"was not ready within {timeout:g}s{why}")
            time.sleep(_POLL_S)

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop every child, the most recently started first. Safe to call more than once."""
        for child in reversed(self.children):
            child.terminate(self.stop_timeout if timeout is None else timeout)

    def install_signal_handlers(self) -> None:
        """On SIGTERM/SIGINT stop the children, then behave as the previous handler would."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_all()
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        self.restore_signal_handlers()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def close(self) -> None:
        self.stop_all()
        self.restore_signal_handlers()
        atexit.unregister(self.stop_all)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def wait_http_ok(url: str, timeout: float = 10.0, child: Child | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``child`` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if child is not None and not child.alive():
                raise child.failure(f"exited while waiting for {url} to answer 200")
            if time.monotonic() >= deadline:
                if child is not None:
                    raise child.failure(f"did not answer 200 at {url} within {timeout:g}s")
                raise CoalmineError(
                    f"{url} did not answer 200 within {timeout:g}s (last: {last})",
                    hint="is the process listening on that address?",
                )
            time.sleep(_POLL_S)
