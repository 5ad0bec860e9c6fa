"""Where probe results go: the store, Prometheus metrics, JSON-lines files, an HTTP endpoint.
The SLO engine reads the store's ``probe_runs`` (``coalmine.slo.collect``): the stored results
are its interface, so it needs no sink of its own.

Results arrive already redacted (the runner redacts them); sinks only have to keep their own
errors (URLs, tokens of the HTTP sink) out of the logs.

A sink must never stop the scheduler: :class:`FanOut` catches and counts every sink failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections import deque
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import httpx

from coalmine.probes.model import FlowResult
from coalmine.probes.store import ProbeStore, result_to_dict

if TYPE_CHECKING:
    from coalmine.probes.metrics import ProbeMetricsCollector

log = logging.getLogger(__name__)


class ResultSink(Protocol):
    """Receives every finished run. ``emit`` should not block for long (queue if needed)."""

    name: str

    async def emit(self, result: FlowResult) -> None: ...

    async def close(self) -> None: ...


def _line(result: FlowResult) -> str:
    return json.dumps(result_to_dict(result), separators=(",", ":"), sort_keys=True)


class StoreSink:
    """Writes every result to ``probe_runs`` (in a worker thread)."""

    def __init__(self, store: ProbeStore, name: str = "store") -> None:
        self.store = store
        self.name = name

    async def emit(self, result: FlowResult) -> None:
        await asyncio.to_thread(self.store.record, result)

    async def close(self) -> None:
        return None


class MetricsSink:
    """Feeds the Prometheus collector of ``/metrics``."""

    def __init__(self, collector: ProbeMetricsCollector, name: str = "metrics") -> None:
        self.collector = collector
        self.name = name

    async def emit(self, result: FlowResult) -> None:
        self.collector.observe(result)

    async def close(self) -> None:
        return None


class MemorySink:
    """The last ``limit`` results (JSON form), newest first: ``/results`` without a store."""

    def __init__(self, limit: int = 200, name: str = "memory") -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=max(1, limit))
        self.name = name

    async def emit(self, result: FlowResult) -> None:
        self._items.appendleft(result_to_dict(result))

    def recent(self, flow: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        items = [r for r in self._items if flow is None or r["flow"] == flow]
        return items[: max(0, limit)]

    async def close(self) -> None:
        return None


class JsonlFileSink:
    """Appends one JSON object per line to ``path`` (``-``: standard output), flushed after
    every line so that ``tail -f`` and log shippers see each run at once."""

    def __init__(self, path: str | Path, name: str = "jsonl") -> None:
        self.path = str(path)
        self.name = name
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self._file is None:
            if self.path == "-":
                self._file = sys.stdout
            else:
                Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
                self._file = open(Path(self.path).expanduser(), "a", encoding="utf-8")  # noqa: SIM115
        return self._file

    async def emit(self, result: FlowResult) -> None:
        out = self._open()
        out.write(_line(result) + "\n")
        out.flush()

    async def close(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None


def safe_url(url: str) -> str:
    """``url`` without user, password and query (which may carry tokens), for logs."""
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{u.host}{port}{u.path}"


class HttpSink:
    """POSTs results to ``url`` from a background task behind a bounded queue.

    ``mode="lines"`` sends up to ``batch`` results per request as JSON lines
    (``application/x-ndjson``); ``mode="single"`` one JSON object per request. A full queue
    drops the oldest result; a failed request (network error or a non-2xx answer) is logged
    without the URL's credentials, query or the sink's headers and its results are counted in
    ``failed``. Nothing is retried: the store and the file sink are the durable copies.
    """

    def __init__(
        self,
        url: str,
        *,
        mode: Literal["lines", "single"] = "lines",
        batch: int = 100,
        queue_size: int = 1000,
        timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        name: str = "http",
    ) -> None:
        self.url = url
        self.mode = mode
        self.batch = max(1, batch)
        self.timeout_s = timeout_s
        self.name = name
        self._headers = dict(headers or {})
        self._client = client
        self._own_client = client is None
        self._queue: asyncio.Queue[FlowResult] = asyncio.Queue(maxsize=max(1, queue_size))
        self._worker: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    async def emit(self, result: FlowResult) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"probe-sink-{self.name}")
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self._queue.task_done()
                self.dropped += 1
                log.warning("%s sink: queue full, dropped the oldest result", self.name)
        self._queue.put_nowait(result)

    async def close(self, timeout_s: float | None = None) -> None:
        """Send what is queued (for up to ``timeout_s``, default the request timeout), then
        stop; results still queued after that are counted as dropped."""
        if self._worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout_s or self.timeout_s)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
            self.dropped += self._queue.qsize()
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def _work(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < self.batch and self.mode == "lines" and not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                await self._post(items)
            except Exception as err:  # keep the worker alive whatever happens
                self.failed += len(items)
                log.warning("%s sink: cannot send results (%s)", self.name, type(err).__name__)
            finally:
                for _ in items:
                    self._queue.task_done()

    async def _post(self, items: list[FlowResult]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        if self.mode == "lines":
            requests = [("\n".join(_line(r) for r in items) + "\n", "application/x-ndjson")]
        else:
            requests = [(_line(r), "application/json") for r in items]
        for body, content_type in requests:
            count = len(items) if self.mode == "lines" else 1
            try:
                response = await self._client.post(
                    self.url,
                    content=body.encode(),
                    headers={**self._headers, "Content-Type": content_type},
                )
            except (httpx.HTTPError, OSError) as err:
                self.failed += count
                log.warning(
                    "%s sink: POST %s failed (%s)",
                    self.name,
                    safe_url(self.url),
                    type(err).__name__,
                )
                continue
            if response.is_success:
                self.sent += count
            else:
                self.failed += count
                log.warning(
                    "%s sink: POST %s answered %d",
                    self.name,
                    safe_url(self.url),
                    response.status_code,
                )


class FanOut:
    """Sends every result to each sink in turn; a failing sink is logged and counted in
    ``errors`` (by sink name) and never stops the others or the caller."""

    def __init__(self, sinks: Any = ()) -> None:
        self.sinks: list[ResultSink] = list(sinks)
        self.name = "fanout"
        self.errors: dict[str, int] = {s.name: 0 for s in self.sinks}

    def add(self, sink: ResultSink) -> None:
        self.sinks.append(sink)
        self.errors.setdefault(sink.name, 0)

    async def emit(self, result: FlowResult) -> None:
        for sink in self.sinks:
            try:
                await sink.emit(result)
            except Exception as err:
                self.errors[sink.name] = self.errors.get(sink.name, 0) + 1
                log.warning("result sink %s failed: %s", sink.name, _safe_error(err))

    async def close(self) -> None:
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as err:
                self.errors[sink.name] = self.errors.get(sink.name, 0) + 1
                log.warning("result sink %s failed to close: %s", sink.name, _safe_error(err))

    def failures(self) -> dict[str, int]:
        """Results each sink could not take: its errors here, plus what the sink itself
        counted as failed or dropped (the HTTP sink)."""
        out = dict(self.errors)
        for sink in self.sinks:
            extra = int(getattr(sink, "failed", 0)) + int(getattr(sink, "dropped", 0))
            out[sink.name] = out.get(sink.name, 0) + extra
        return out


def _safe_error(err: Exception) -> str:
    """A CoalmineError's own message is written without secrets; anything else only by type."""
    from coalmine.errors import CoalmineError

    if isinstance(err, CoalmineError):
        return err.one_line()
    return type(err).__name__
