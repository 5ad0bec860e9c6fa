"""Checks before a rollout is stored: everything it will talk to must answer now, so that a
typo in an address is one clear error instead of a rollout stuck at its first step."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from coalmine.errors import CoalmineError
from coalmine.spec.model import ServiceConfig


async def check_upstreams(service: ServiceConfig, timeout: float = 2.0) -> None:
    for role, upstream in (("stable", service.stable), ("canary", service.canary)):
        parts = urlsplit(upstream.url)
        host, port = parts.hostname or "", parts.port or 80
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as err:
            reason = (
                "timed out"
                if isinstance(err, TimeoutError)
                else (err.strerror or type(err).__name__)
            )
            raise CoalmineError(
                f"the {role} upstream {upstream.url} of service {service.name!r} is unreachable "
                f"({reason})",
                field=f"services.{service.name}.{role}.url",
                hint=f"start the {role} version, or fix its url in coalmine.yaml",
            ) from None
        writer.close()
