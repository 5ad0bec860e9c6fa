"""coalmine.yaml: defaults, paths, environment variables and errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalmine.errors import NotSupportedError, SpecError
from coalmine.spec.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE = """\
defaultEnvironment: dev
environments:
  dev:
    database: sqlite:///state/db.sqlite
    receipts: out/receipts
    services:
      shop:
        stable: {url: "http://127.0.0.1:9001"}
        canary:
          url: http://localhost:9002/
          version: v2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coalmine.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> SpecError:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_config(path, env={})
    assert info.value.file == str(path)
    return info.value


def test_example_config_loads() -> None:
    config = load_config(EXAMPLES / "coalmine.yaml", env={})
    env = config.environment()
    assert config.default_environment == "local"
    shop = env.services["shop"]
    assert (shop.stable.url, shop.stable.version) == ("http://127.0.0.1:9001", "v1.2.2")
    assert shop.tenancy.test_tenants == ("test-tenant-abc123",)
    assert shop.tenancy.cookie == "tenant"
    assert (shop.router.connect_timeout, shop.router.request_timeout) == (2.0, 30.0)
    assert env.database_url == f"sqlite:///{EXAMPLES.resolve()}/.coalmine/state.db"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env={})
    env = config.environment("dev")
    assert env.database_url == f"sqlite:///{tmp_path.resolve()}/state/db.sqlite"
    assert env.receipts_dir == str(tmp_path.resolve() / "out" / "receipts")
    shop = env.services["shop"]
    assert shop.canary.url == "http://localhost:9002"
    assert shop.tenancy.header == "X-Tenant"
    assert shop.router.listen == "127.0.0.1:8080"


def test_environment_variables(tmp_path: Path) -> None:
    text = BASE + "  prod:\n    database: postgresql://db/coalmine\n"
    env = {"COALMINE_DATABASE_URL": "postgresql://other/db", "COALMINE_ENVIRONMENT": "prod"}
    config = load_config(write(tmp_path, text), env=env)
    assert config.default_environment == "prod"
    assert {e.database_url for e in config.environments.values()} == {"postgresql://other/db"}
    with pytest.raises(SpecError, match="unknown environment 'qa'"):
        load_config(write(tmp_path, text), env={"COALMINE_ENVIRONMENT": "qa"})


def test_unknown_field_with_suggestion(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace("    receipts:", "    reciepts:"))
    assert err.line == 5
    assert err.message == "unknown field 'reciepts'"
    assert err.hint == "did you mean 'receipts'?"


def test_unknown_router_field(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        BASE + "        router:\n          listen: 0.0.0.0:80\n          adminn: 127.0.0.1:81\n",
    )
    assert err.line == 14
    assert err.hint == "did you mean 'admin'?"


def test_https_upstream_is_not_supported(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace('"http://127.0.0.1:9001"', "https://shop:443"))
    assert isinstance(err, NotSupportedError)
    assert err.line == 8
    assert "https upstream is not supported yet" in err.message


@pytest.mark.parametrize("url", ["http://shop", "ftp://shop:21", "http://shop:9/api", "shop:9"])
def test_bad_upstream_urls(tmp_path: Path, url: str) -> None:
    err = error_of(tmp_path, BASE.replace('"http://127.0.0.1:9001"', url))
    assert err.line == 8
    assert "http://host:port" in (err.hint or "")


def test_bad_listen_address(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE + "        router: {listen: 8080}\n")
    assert err.line == 12


def test_bad_timeout(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE + "        router:\n          requestTimeout: forever\n")
    assert err.line == 13
    assert err.hint == "use 30s, 5m or 1h"


def test_default_environment_must_exist(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE.replace("defaultEnvironment: dev", "defaultEnvironment: prod"))
    assert err.line == 1


def test_missing_canary(tmp_path: Path) -> None:
    text = BASE.split("        canary:")[0]
    err = error_of(tmp_path, text)
    assert err.line == 7
    assert "missing required field 'canary'" in err.message
