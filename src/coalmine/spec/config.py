"""``coalmine.yaml``: where versions listen, how the router runs, where state and receipts go.

``COALMINE_DATABASE_URL`` replaces every environment's ``database``; ``COALMINE_ENVIRONMENT``
picks the default environment. Relative sqlite paths and ``receipts`` are resolved against the
config file's directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from coalmine.errors import SpecError
from coalmine.spec.model import (
    Config,
    Environment,
    Location,
    RouterSettings,
    ServiceConfig,
    Tenancy,
    Upstream,
)
from coalmine.spec.yamlpos import Cursor, Document, parse_documents, read_documents, root_cursor

_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")
_SQLITE_PREFIX = "sqlite:///"


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a coalmine.yaml. ``env`` defaults to ``os.environ``."""
    docs = [d for d in read_documents(path) if d.data is not None]
    return _config(docs, str(path), Path(path).resolve().parent, os.environ if env is None else env)


def parse_config(
    text: str,
    file: str = "<text>",
    base_dir: str | Path = ".",
    env: Mapping[str, str] | None = None,
) -> Config:
    """Like :func:`load_config`, from a string."""
    docs = [d for d in parse_documents(text, file) if d.data is not None]
    return _config(docs, file, Path(base_dir).resolve(), os.environ if env is None else env)


def _config(docs: list[Document], file: str, base: Path, env: Mapping[str, str]) -> Config:
    if len(docs) != 1:
        raise SpecError(
            f"expected one YAML document, found {len(docs)}",
            file=file,
            hint="coalmine.yaml holds a single mapping",
        )
    root = root_cursor(docs[0])
    root.mapping()
    root.check_fields(("defaultEnvironment", "environments"))
    envs_cur = root.require("environments", "add environments: {local: {services: ...}}")
    environments: dict[str, Environment] = {}
    for item in envs_cur.fields():
        environments[item.key] = _environment(item, base, env.get("COALMINE_DATABASE_URL"))
    if not environments:
        envs_cur.fail("at least one environment is required")

    default_cur = root.get("defaultEnvironment")
    chosen = env.get("COALMINE_ENVIRONMENT")
    if chosen:
        if chosen not in environments:
            raise SpecError(
                f"COALMINE_ENVIRONMENT names unknown environment {chosen!r}",
                file=file,
                hint="known: " + ", ".join(environments),
            )
        default = chosen
    elif default_cur is not None:
        default = default_cur.nonempty_string()
        if default not in environments:
            default_cur.fail(
                f"unknown environment {default!r}", "known: " + ", ".join(environments)
            )
    elif len(environments) == 1:
        default = next(iter(environments))
    else:
        root.fail(
            "defaultEnvironment is required when there are several environments",
            "add defaultEnvironment: " + next(iter(environments)),
        )
    return Config(
        environments=environments, default_environment=default, location=Location(file, root.line)
    )


def _environment(cur: Cursor, base: Path, database_override: str | None) -> Environment:
    cur.check_fields(("database", "receipts", "services", "slos"))
    defaults = Environment(name=cur.key)
    db_cur = cur.get("database")
    database = db_cur.nonempty_string() if db_cur is not None else defaults.database_url
    database = database_override or _absolute_sqlite(database, base)
    rec_cur = cur.get("receipts")
    receipts = rec_cur.nonempty_string() if rec_cur is not None else defaults.receipts_dir
    services: dict[str, ServiceConfig] = {}
    svc_cur = cur.get("services")
    if svc_cur is not None and svc_cur.value is not None:
        for item in svc_cur.fields():
            services[item.key] = _service(item, base)
    return Environment(
        name=cur.key,
        database_url=database,
        receipts_dir=str(base / Path(receipts).expanduser()),
        services=services,
        slos=_slo_files(cur.get("slos"), base),
    )


def _slo_files(cur: Cursor | None, base: Path) -> tuple[str, ...]:
    """``slos: [paths]``: SLO files for the release policy, relative to coalmine.yaml. Each
    must exist when the configuration is loaded (a typo would silently switch the policy off)."""
    if cur is None or cur.value is None:
        return ()
    out = []
    for item in cur.sequence():
        path = base / Path(item.nonempty_string()).expanduser()
        if not path.exists():
            item.fail(
                f"SLO file {item.value!r} not found (relative to coalmine.yaml: {path})",
                "give the path of a slos.yaml or OpenSLO file, relative to coalmine.yaml",
            )
        out.append(str(path))
    return tuple(out)


def _absolute_sqlite(url: str, base: Path) -> str:
    if not url.startswith(_SQLITE_PREFIX):
        return url
    path = url[len(_SQLITE_PREFIX) :]
    if not path or path == ":memory:" or path.startswith("/"):
        return url
    return _SQLITE_PREFIX + str(base / path)


def _service(cur: Cursor, base: Path) -> ServiceConfig:
    cur.check_fields(("stable", "canary", "baseline", "tenancy", "router"))
    tenancy = cur.get("tenancy")
    router = cur.get("router")
    stable = _upstream(cur.require("stable", "add stable: {url: http://127.0.0.1:9001}"))
    canary = _upstream(cur.require("canary", "add canary: {url: http://127.0.0.1:9002}"))
    baseline_cur = cur.get("baseline")
    baseline = None
    if baseline_cur is not None:
        baseline = _upstream(baseline_cur)
        for name, other in (("stable", stable), ("canary", canary)):
            if baseline.url == other.url:
                baseline_cur.require("url").fail(
                    f"the baseline must not share the {name}'s URL {other.url!r}",
                    "the baseline is a separate, freshly started copy of the stable version",
                )
    return ServiceConfig(
        name=cur.key,
        stable=stable,
        canary=canary,
        tenancy=_tenancy(tenancy) if tenancy is not None else Tenancy(),
        router=_router(router, base) if router is not None else RouterSettings(),
        baseline=baseline,
    )


def _upstream(cur: Cursor) -> Upstream:
    cur.check_fields(("url", "version"))
    version = cur.get("version")
    return Upstream(
        url=_http_url(cur.require("url")),
        version=version.nonempty_string() if version is not None else None,
    )


def _http_url(cur: Cursor) -> str:
    text = cur.nonempty_string().strip()
    parts = urlsplit(text)
    if parts.scheme == "https":
        cur.not_supported(
            "an https upstream", "use http://host:port (TLS to upstreams comes later)"
        )
    hint = "write http://host:port, e.g. http://127.0.0.1:9001"
    if parts.scheme != "http" or not parts.hostname:
        cur.fail(f"invalid URL {text!r}", hint)
    try:
        port = parts.port
    except ValueError:
        cur.fail(f"invalid port in {text!r}", hint)
    if port is None:
        cur.fail(f"URL {text!r} has no port", hint)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        cur.fail(f"URL {text!r} must not have a path, query or credentials", hint)
    return text.rstrip("/")


def _host_port(cur: Cursor) -> str:
    text = cur.nonempty_string().strip()
    match = _HOST_PORT.fullmatch(text)
    if match is None or int(match.group(2)) > 65535:
        cur.fail(f"invalid address {text!r}", "write host:port, e.g. 127.0.0.1:8080")
    return text


def _tenancy(cur: Cursor) -> Tenancy:
    cur.check_fields(("header", "cookie", "testTenants"))
    defaults = Tenancy()

    def optional(key: str, default: str | None) -> str | None:
        found = cur.get(key)
        if found is None:
            return default
        return None if found.value is None else found.nonempty_string()

    tenants = cur.get("testTenants")
    return Tenancy(
        header=optional("header", defaults.header),
        cookie=optional("cookie", defaults.cookie),
        test_tenants=tuple(t.nonempty_string() for t in tenants.sequence()) if tenants else (),
    )


def _router(cur: Cursor, base: Path) -> RouterSettings:
    keys = ("listen", "admin", "overrideHeader", "connectTimeout", "requestTimeout", "stateFile")
    cur.check_fields(keys)
    d = RouterSettings()

    def timeout(key: str, default: float) -> float:
        found = cur.get(key)
        if found is None:
            return default
        seconds = found.duration()
        if seconds <= 0:
            found.fail(f"{key} must be longer than zero", "use 2s or 30s")
        return seconds

    listen, admin = cur.get("listen"), cur.get("admin")
    header, state = cur.get("overrideHeader"), cur.get("stateFile")
    settings = RouterSettings(
        listen=_host_port(listen) if listen else d.listen,
        admin=_host_port(admin) if admin else d.admin,
        override_header=header.nonempty_string() if header else d.override_header,
        connect_timeout=timeout("connectTimeout", d.connect_timeout),
        request_timeout=timeout("requestTimeout", d.request_timeout),
        state_file=str(base / state.nonempty_string()) if state else d.state_file,
    )
    if settings.listen == settings.admin:
        cur.fail("listen and admin must be different addresses")
    return settings
