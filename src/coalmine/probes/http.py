"""One HTTP exchange of a probe step, timed in blackbox_exporter's phases.

Phases (seconds, summed over redirects like blackbox_exporter does):

- ``resolve``: DNS. httpcore resolves inside its TCP connect, so the network backend here
  resolves the host itself (``getaddrinfo``, timed) and connects to the address it got;
- ``connect``: the TCP handshake (``connection.connect_tcp`` without the resolve part);
- ``tls``: the TLS handshake (``connection.start_tls``);
- ``processing``: request headers sent until the response headers arrived
  (``http11.send_request_headers.started`` .. ``http11.receive_response_headers.complete``);
- ``transfer``: response headers until the body is read.

A reused keep-alive connection has no resolve, connect or TLS time, as in blackbox_exporter.
The phases come from httpcore's ``trace`` extension and add up to the exchange's wall time
minus a little client overhead.

:class:`HttpSession` is one flow run's HTTP state: one cookie jar shared by one client per TLS
setting (verify on/off, CA file). Failures are :class:`HttpFailure` with a probe reason:
``timeout``, ``connect`` (refused, reset, DNS), ``tls`` or ``error``.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from http.cookiejar import CookieJar
from typing import Any

import httpcore
import httpx

from coalmine.probes.model import Timing, TLSOptions

__all__ = ["HttpFailure", "HttpRequest", "HttpResponse", "HttpSession"]

# anyio imports its asyncio backend on first use (~20 ms): do it now, not inside the first
# timed exchange.
importlib.import_module("anyio._backends._asyncio")


@dataclass
class HttpRequest:
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    content: bytes | None = None
    timeout_s: float = 30.0
    follow_redirects: bool = True
    tls: TLSOptions = field(default_factory=TLSOptions)


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    url: str  # the final URL (after redirects)
    timing: Timing
    duration_s: float
    set_cookies: dict[str, str]  # cookies set by this response (and its redirects)
    encoding: str = "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.encoding, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


class HttpFailure(Exception):
    """No usable response. ``message`` is one line (not yet redacted)."""

    def __init__(self, reason: str, message: str, timing: Timing, duration_s: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.timing = timing
        self.duration_s = duration_s


# --------------------------------------------------------------------------- timing


class _Phases:
    """Accumulates one exchange's phases from trace events (and the backend's DNS time)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.now = monotonic
        self.resolve = 0.0
        self.connect = 0.0
        self.tls = 0.0
        self.processing = 0.0
        self.transfer = 0.0
        self._marks: dict[str, float] = {}
        self._resolve_at_connect = 0.0

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        now = self.now()
        event, _, stage = name.rpartition(".")
        event = event.rpartition(".")[2]  # "connection.connect_tcp" -> "connect_tcp"
        if stage == "started":
            self._marks[event] = now
            if event == "connect_tcp":
                self._resolve_at_connect = self.resolve
            return
        start = self._marks.get(event)
        if event == "connect_tcp" and start is not None:
            spent_resolving = self.resolve - self._resolve_at_connect
            self.connect += max(0.0, now - start - spent_resolving)
        elif event == "start_tls" and start is not None:
            self.tls += now - start
        elif event == "receive_response_headers" and stage == "complete":
            sent = self._marks.get("send_request_headers")
            if sent is not None:
                self.processing += now - sent
            self._marks["headers_done"] = now
        elif event in ("receive_response_body", "response_closed"):
            done = self._marks.pop("headers_done", None)
            if done is not None:
                self.transfer += now - done

    def finish(self) -> None:
        """The body was read: the transfer of the last response ends now."""
        done = self._marks.pop("headers_done", None)
        if done is not None:
            self.transfer += self.now() - done

    def timing(self) -> Timing:
        return Timing(self.resolve, self.connect, self.tls, self.processing, self.transfer)


_phases: ContextVar[_Phases | None] = ContextVar("coalmine_probe_phases", default=None)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _TimedBackend(httpcore.AsyncNetworkBackend):
    """Resolves host names itself (timed), then connects to the resolved addresses in order."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if _is_ip(host):
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        phases = _phases.get()
        loop = asyncio.get_running_loop()
        start = time.monotonic() if phases is None else phases.now()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as err:
            why = getattr(err, "strerror", None) or str(err)
            raise httpcore.ConnectError(f"cannot resolve {host}: {why}") from err
        finally:
            if phases is not None:
                phases.resolve += phases.now() - start
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as err:
                error = err
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - probes use TCP
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:  # pragma: no cover
        await self._inner.sleep(seconds)


class _TimedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(verify=context, trust_env=False)
        # The stock pool resolves inside connect; this one uses the timing backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, network_backend=_TimedBackend(), keepalive_expiry=5.0
        )


@lru_cache(maxsize=32)
def _ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """One context per TLS setting for the whole process (building one costs milliseconds)."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return httpx.create_ssl_context()


def _is_tls_error(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        current = current.__cause__ or current.__context__
    text = str(err)
    return "CERTIFICATE_VERIFY_FAILED" in text or "SSL:" in text or "TLSV1_ALERT" in text


_TIMEOUT_DURING: dict[type[BaseException], str] = {
    httpx.ConnectTimeout: "connecting",
    httpx.ReadTimeout: "waiting for the response",
    httpx.WriteTimeout: "sending the request",
    httpx.PoolTimeout: "waiting for a connection",
}


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


# --------------------------------------------------------------------------- session


class HttpSession:
    """One flow run's HTTP state (cookie jar, clients). Use as an async context manager."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self.jar = CookieJar()
        self._clients: dict[tuple[bool, str | None], httpx.AsyncClient] = {}

    async def __aenter__(self) -> HttpSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def cookies(self) -> dict[str, str]:
        """Every cookie in the jar, by name (the run talks to one site, mostly)."""
        return {c.name: c.value or "" for c in self.jar}

    def _client(self, tls: TLSOptions) -> httpx.AsyncClient:
        key = (tls.verify, tls.ca_file)
        client = self._clients.get(key)
        if client is None:
            context = _ssl_context(tls.verify, tls.ca_file if tls.verify else None)
            client = httpx.AsyncClient(
                transport=_TimedTransport(context),
                cookies=self.jar,  # a CookieJar is shared, not copied
                trust_env=False,
            )
            self._clients[key] = client
        return client

    async def send(self, req: HttpRequest) -> HttpResponse:
        phases = _Phases(self.monotonic)
        try:
            client = self._client(req.tls)
        except (OSError, ssl.SSLError) as err:
            message = f"cannot load the CA file {req.tls.ca_file}: {_one_line(err)}"
            raise HttpFailure("tls", message, Timing(), 0.0) from None
        start = self.monotonic()

        def failure(reason: str, message: str) -> HttpFailure:
            return HttpFailure(reason, message, phases.timing(), self.monotonic() - start)

        token = _phases.set(phases)
        try:
            async with asyncio.timeout(req.timeout_s):
                response = await client.request(
                    req.method,
                    req.url,
                    headers=req.headers,
                    params=tuple(req.params) if req.params else None,
                    content=req.content,
                    timeout=httpx.Timeout(req.timeout_s),
                    follow_redirects=req.follow_redirects,
                    extensions={"trace": phases.trace},
                )
                body = response.content
                phases.finish()
        except (TimeoutError, httpx.TimeoutException) as err:
            what = _TIMEOUT_DURING.get(type(err), "")
            during = f" while {what}" if what else ""
            raise failure("timeout", f"timed out after {req.timeout_s:g}s{during}") from None
        except httpx.ConnectError as err:
            if _is_tls_error(err):
                raise failure("tls", f"TLS handshake failed: {_one_line(err)}") from None
            raise failure("connect", f"cannot connect: {_one_line(err)}") from None
        except (httpx.ReadError, httpx.WriteError, httpx.CloseError) as err:
            if _is_tls_error(err):
                raise failure("tls", f"TLS error: {_one_line(err)}") from None
            raise failure("connect", f"connection lost: {_one_line(err)}") from None
        except httpx.TooManyRedirects:
            raise failure("error", "too many redirects") from None
        except httpx.HTTPError as err:
            raise failure("error", _one_line(err)) from None
        except (ValueError, UnicodeError) as err:
            raise failure("error", f"invalid request: {_one_line(err)}") from None
        finally:
            _phases.reset(token)
        duration = self.monotonic() - start
        encoding = response.headers.encoding
        set_cookies: dict[str, str] = {}
        for each in (*response.history, response):
            for name, value in each.cookies.items():
                set_cookies[name] = value
        return HttpResponse(
            status=response.status_code,
            headers=[(k.decode(encoding), v.decode(encoding)) for k, v in response.headers.raw],
            body=body,
            url=str(response.url),
            timing=phases.timing(),
            duration_s=duration,
            set_cookies=set_cookies,
            encoding=response.charset_encoding or "utf-8",
        )
