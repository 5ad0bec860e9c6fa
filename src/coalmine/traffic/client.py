"""``RouterClient``: the controller's handle on a running router, over its admin API."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import httpx

from coalmine.errors import CoalmineError, RouterError, StaleRoutingError
from coalmine.traffic.base import Routing, Stats, VersionStats


class RouterClient:
    """Implements ``TrafficRouter`` against ``http://<admin>/admin/...``."""

    def __init__(self, admin: str, timeout: float = 2.0) -> None:
        self.admin = admin.removeprefix("http://").rstrip("/")
        self._http = httpx.AsyncClient(base_url=f"http://{self.admin}", timeout=timeout)

    async def __aenter__(self) -> RouterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise RouterError(
                f"router admin {self.admin} is unreachable ({type(err).__name__})",
                hint="start it with `coalmine router serve --config coalmine.yaml --service NAME`",
            ) from None
        if response.status_code == 200:
            return response.json()
        answer = _json_object(response)
        code = response.status_code
        if "error" in answer:  # the router's own refusal
            message = _shorten(str(answer["error"]))
            if code == 409:
                current = answer.get("current_generation")
                raise StaleRoutingError(
                    f"the router refused a stale routing: {message}",
                    current if isinstance(current, int) else -1,
                )
            raise RouterError(f"router admin {self.admin} answered {code}: {message}")
        raise RouterError(
            f"router admin {self.admin} answered {code} {_reason(code)}: {_body(response)}",
            hint="is this a coalmine router's admin address? see router.admin in coalmine.yaml",
        )

    async def set_routing(self, routing: Routing) -> Routing:
        return Routing.from_dict(await self._call("PUT", "/admin/routing", json=routing.to_dict()))

    async def get_routing(self) -> Routing:
        return Routing.from_dict(await self._call("GET", "/admin/routing"))

    async def routing_info(self) -> dict[str, Any]:
        """The routing plus the service name and upstream URLs."""
        return dict(await self._call("GET", "/admin/routing"))

    async def stats(self, window_s: float, quantiles: tuple[float, ...] = (0.5, 0.99)) -> Stats:
        params = {"window": str(window_s), "quantiles": ",".join(repr(q) for q in quantiles)}
        data = await self._call("GET", "/admin/stats", params=params)
        return Stats(
            window_s=float(data["window_s"]),
            versions={name: VersionStats(**v) for name, v in data["versions"].items()},
        )

    async def records(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        data = await self._call("GET", "/admin/records", params={"since": since, "limit": limit})
        return list(data["records"])

    async def healthy(self) -> bool:
        try:
            await self._call("GET", "/healthz")
        except RouterError:
            return False
        return True


BODY_CHARS = 200  # of a non-router answer's text shown in an error


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _reason(code: int) -> str:
    """The standard phrase of ``code``: the server's own phrase could be anything."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "(an unknown status)"


def _shorten(text: str) -> str:
    """One printable line of at most BODY_CHARS characters."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line if len(line) <= BODY_CHARS else line[: BODY_CHARS - 1] + "…"


def _body(response: httpx.Response) -> str:
    """What an answer that is not the router's says: none of an HTML page, the start of text."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    text = response.text.lstrip()
    if "html" in kind or text[:15].lower().startswith(("<!doctype html", "<html")):
        return f"an HTML page ({len(response.content)} bytes)"
    return _shorten(text) or "an empty answer"


async def whole_records_page(
    client: Any, since: float, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """``client.records(since, limit)`` cut to whole times, and whether the page was full.

    A full page may end inside a group of records with the same ``t``: that group is dropped,
    so the next call (``since`` = the last ``t`` kept) reads it whole, nothing lost or doubled."""
    page: list[dict[str, Any]] = await client.records(since, limit)
    full = len(page) >= limit
    if full:
        last = page[-1]["t"]
        page = [r for r in page if r["t"] < last]
        if not page:
            raise CoalmineError(
                f"more than {limit} router records share the time {last}; cannot page them"
            )
    return page, full
