"""Authenticating probe requests: OAuth2 client credentials (cached), bearer, API key, basic.

OAuth2 tokens live in a :class:`TokenCache` that outlives runs, so many flows and many runs
with the same resolved configuration (token URL, client id, client secret, scopes, audience,
client authentication) share one token — unlike blackbox_exporter, which fetches a token for
every probe. A token is reused until ``expires_in`` minus a safety margin (10% of its
lifetime, at most 30 s); a request that gets 401 with a cached token drops it, fetches a new
one and is sent once more. Concurrent runs that need the same token fetch it once.

The token request is a form POST ``grant_type=client_credentials`` with the client's
credentials in the body (``client_auth: body``, the default) or as HTTP basic auth
(``client_auth: basic``). Every credential and token is given to the run's redactor before it
is used. An unusable token endpoint is an :class:`AuthError` (the probe reason ``auth``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode

from coalmine.errors import CoalmineError
from coalmine.probes.http import HttpFailure, HttpRequest, HttpSession
from coalmine.probes.model import AuthScheme, TLSOptions
from coalmine.probes.secrets import Redactor

__all__ = [
    "DEFAULT_TOKEN_TTL_S",
    "Applied",
    "AuthError",
    "Authenticator",
    "OAuth2Config",
    "TokenCache",
    "basic_header",
]

DEFAULT_TOKEN_TTL_S = 300.0  # when the token response has no expires_in
MARGIN_FRACTION = 0.1
MARGIN_MAX_S = 30.0


class AuthError(CoalmineError):
    """Credentials could not be obtained (the probe reason ``auth``)."""


# --------------------------------------------------------------------------- token cache


@dataclass
class _Entry:
    token: str
    expires_at: float


class TokenCache:
    """OAuth2 access tokens by configuration key, shared by every run that is given it.

    ``fetches`` counts token requests made (for metrics and tests).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.fetches = 0
        self._entries: dict[Hashable, _Entry] = {}
        self._locks: dict[Hashable, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}

    def _lock(self, key: Hashable) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        held = self._locks.get(key)
        if held is None or held[0] is not loop:
            held = (loop, asyncio.Lock())
            self._locks[key] = held
        return held[1]

    def _valid(self, key: Hashable) -> str | None:
        entry = self._entries.get(key)
        if entry is not None and self.clock() < entry.expires_at:
            return entry.token
        return None

    @staticmethod
    def lifetime(expires_in: float | None) -> float:
        """How long a token is reused: its lifetime minus the safety margin."""
        ttl = DEFAULT_TOKEN_TTL_S if expires_in is None else max(0.0, expires_in)
        return ttl - min(ttl * MARGIN_FRACTION, MARGIN_MAX_S)

    async def get(
        self, key: Hashable, fetch: Callable[[], Awaitable[tuple[str, float | None]]]
    ) -> tuple[str, bool]:
        """The cached token, or a new one from ``fetch`` (``(token, expires_in)``).

        Returns ``(token, fetched_now)``.
        """
        token = self._valid(key)
        if token is not None:
            return token, False
        async with self._lock(key):
            token = self._valid(key)
            if token is not None:
                return token, False
            fetched_at = self.clock()
            value, expires_in = await fetch()
            self.fetches += 1
            self._entries[key] = _Entry(value, fetched_at + self.lifetime(expires_in))
            return value, True

    def drop(self, key: Hashable, token: str) -> None:
        """Forget ``token`` (rejected by an API) unless another run already replaced it."""
        entry = self._entries.get(key)
        if entry is not None and entry.token == token:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


# --------------------------------------------------------------------------- OAuth2


@dataclass(frozen=True)
class OAuth2Config:
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    client_auth: str = "body"  # or "basic"

    def key(self) -> tuple[str, ...]:
        digest = hashlib.sha256(self.client_secret.encode()).hexdigest()
        return (
            self.token_url,
            self.client_id,
            digest,
            " ".join(self.scopes),
            self.audience or "",
            self.client_auth,
        )


def basic_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def fetch_token(
    config: OAuth2Config, *, tls: TLSOptions, timeout_s: float, redactor: Redactor
) -> tuple[str, float | None]:
    """POST the client-credentials grant; ``(access_token, expires_in)`` or :class:`AuthError`."""
    form: dict[str, str] = {"grant_type": "client_credentials"}
    headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
    ]
    if config.client_auth == "basic":
        # RFC 6749 2.3.1: the id and secret are form-encoded before base64.
        header = basic_header(
            quote(config.client_id, safe=""), quote(config.client_secret, safe="")
        )
        redactor.add(header.removeprefix("Basic "))
        headers.append(("Authorization", header))
    else:
        form["client_id"] = config.client_id
        form["client_secret"] = config.client_secret
    if config.scopes:
        form["scope"] = " ".join(config.scopes)
    if config.audience:
        form["audience"] = config.audience
    request = HttpRequest(
        "POST",
        config.token_url,
        headers=headers,
        content=urlencode(form).encode(),
        timeout_s=timeout_s,
        tls=tls,
    )
    where = f"token endpoint {config.token_url}"
    try:
        async with HttpSession() as session:
            response = await session.send(request)
    except HttpFailure as err:
        raise AuthError(f"{where}: {err.message}") from None
    text = response.text
    redactor.observe_body(text, "json")
    if response.status != 200:
        raise AuthError(f"{where} answered {response.status}: {_short(text)}")
    try:
        data: Any = json.loads(text)
    except ValueError:
        raise AuthError(f"{where} did not answer JSON: {_short(text)}") from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise AuthError(f"{where}: the answer has no access_token")
    redactor.add(token)
    raw = data.get("expires_in")
    expires_in: float | None
    try:
        expires_in = float(raw) if raw is not None and not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        expires_in = None
    return token, expires_in


# --------------------------------------------------------------------------- applying


@dataclass
class Applied:
    """What a scheme adds to one request; ``oauth`` is set when a 401 may be retried."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    oauth: OAuth2Config | None = None
    token: str | None = None
    fetched_now: bool = False


class Authenticator:
    """Applies auth schemes for one run (settings rendered by the run's templates)."""

    def __init__(
        self, cache: TokenCache, redactor: Redactor, join_url: Callable[[str], str] | None = None
    ) -> None:
        self.cache = cache
        self.redactor = redactor
        self.join_url = join_url  # makes a relative token_url absolute (the environment's base)

    def _settings(self, scheme: AuthScheme, render: Callable[[Any], Any]) -> dict[str, Any]:
        return {k: render(v) for k, v in scheme.settings.items()}

    async def apply(
        self,
        scheme: AuthScheme,
        render: Callable[[Any], Any],
        *,
        tls: TLSOptions,
        timeout_s: float,
    ) -> Applied:
        """Raises :class:`AuthError`, or the template error of a setting."""
        s = self._settings(scheme, render)
        add = self.redactor.add
        if scheme.type == "bearer":
            token = _text(s, "token", scheme)
            add(token)
            return Applied(headers=[("Authorization", f"Bearer {token}")])
        if scheme.type == "api_key":
            value = _text(s, "value", scheme)
            add(value)
            if s.get("query"):
                return Applied(params=[(str(s["query"]), value)])
            return Applied(headers=[(str(s.get("header") or "X-API-Key"), value)])
        if scheme.type == "basic":
            user, password = _text(s, "username", scheme), _text(s, "password", scheme)
            add(password)
            header = basic_header(user, password)
            add(header.removeprefix("Basic "))
            return Applied(headers=[("Authorization", header)])
        if scheme.type == "oauth2_client_credentials":
            config = _oauth_config(s, scheme)
            if self.join_url is not None and "://" not in config.token_url:
                config = replace(config, token_url=self.join_url(config.token_url))
            add(config.client_secret)
            return await self._oauth(config, tls, timeout_s)
        raise AuthError(f"auth scheme '{scheme.name}': unknown type {scheme.type!r}")

    async def _oauth(self, config: OAuth2Config, tls: TLSOptions, timeout_s: float) -> Applied:
        async def fetch() -> tuple[str, float | None]:
            return await fetch_token(config, tls=tls, timeout_s=timeout_s, redactor=self.redactor)

        token, fresh = await self.cache.get(config.key(), fetch)
        self.redactor.add(token)
        return Applied(
            headers=[("Authorization", f"Bearer {token}")],
            oauth=config,
            token=token,
            fetched_now=fresh,
        )

    async def after_401(
        self, applied: Applied, tls: TLSOptions, timeout_s: float
    ) -> Applied | None:
        """A new token when ``applied`` used a cached OAuth2 token; None: do not retry."""
        if applied.oauth is None or applied.token is None or applied.fetched_now:
            return None
        self.cache.drop(applied.oauth.key(), applied.token)
        return await self._oauth(applied.oauth, tls, timeout_s)


def _text(settings: dict[str, Any], key: str, scheme: AuthScheme) -> str:
    value = settings.get(key)
    if value is None or value == "":
        raise AuthError(f"auth scheme '{scheme.name}': {key} is empty")
    return value if isinstance(value, str) else json.dumps(value)


def _oauth_config(s: dict[str, Any], scheme: AuthScheme) -> OAuth2Config:
    scopes = s.get("scopes") or ()
    if isinstance(scopes, str):
        scopes = scopes.split()
    client_auth = str(s.get("client_auth") or "body")
    if client_auth not in ("body", "basic"):
        raise AuthError(
            f"auth scheme '{scheme.name}': client_auth must be body or basic, got {client_auth!r}"
        )
    audience = s.get("audience")
    return OAuth2Config(
        token_url=_text(s, "token_url", scheme),
        client_id=_text(s, "client_id", scheme),
        client_secret=_text(s, "client_secret", scheme),
        scopes=tuple(str(x) for x in scopes),
        audience=str(audience) if audience else None,
        client_auth=client_auth,
    )
