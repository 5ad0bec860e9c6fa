"""``coalmine slo validate|status|explain`` on a SQLite store filled with buckets."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coalmine.cli import slo_cmds
from coalmine.slo.engine import Bucket
from coalmine.slo.store import SloBucketStore
from coalmine.store.open import open_store
from tests.support.cli_env import command_app, isolated_cli

NOW = 1_717_200_000  # 2024-06-01T00:00:00Z, a whole minute
MINUTE, HOUR, DAY = 60, 3600, 86400

SLOS = """\
apiVersion: coalmine.dev/v1
kind: SLOSet
slos:
  - name: shop-availability
    service: shop
    objective: 99
    sli: {type: availability, source: router}
    window: 7d
  - name: api-latency
    service: api
    objective: 99
    sli: {type: latency, threshold: 300ms, source: router}
    window: 7d
"""


def cli() -> typer.Typer:
    return command_app(slo_cmds.register)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """slos.yaml and a state database with 2 days of buckets, no coalmine.yaml."""
    (tmp_path / "slos.yaml").write_text(SLOS, encoding="utf-8")
    url = isolated_cli(tmp_path, monkeypatch)
    store = open_store(url)
    buckets = SloBucketStore(store.engine)
    start = NOW - 2 * DAY
    # shop: 0.4% errors all along (burn 0.4 against 1% allowed)
    buckets.put(
        "shop-availability",
        [Bucket(start + i * MINUTE, 996, 1000) for i in range(2 * 1440)],
    )
    # api: clean, then the last 5 minutes at 50% slow
    buckets.put("api-latency", [Bucket(start + i * MINUTE, 100, 100) for i in range(2 * 1440 - 5)])
    buckets.add("api-latency", [Bucket(NOW - (i + 1) * MINUTE, 50, 100) for i in range(5)])
    store.close()
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli(), ["slo", *args])
    return result.exit_code, result.stdout, result.stderr


def test_status_text(workdir: Path) -> None:
    code, out, _ = run("status", "--at", str(NOW), "--no-collect")
    assert code == 0, out
    shop = out.split("\n\n")[0]
    assert shop.startswith(
        "shop-availability (shop): objective 99% availability from router, rolling 7d, occurrences"
    )
    assert "SLI 99.600% (11520 bad of 2880000 since" in shop
    assert (
        "budget 60.0% left (consumed 40.0%: 11520 of 28800 allowed) -> release tier normal" in shop
    )
    assert "burn rate: 5m 0.4  30m 0.4  1h 0.4  2h 0.4  6h 0.4  1d 0.4  3d 0.4" in shop
    # the 7d table: 3.36, 1.4, 0.7, 0.233: only the slowest ticket burns
    assert "alert state: ticket (page-1h ok, page-6h ok, ticket-1d ok, ticket-3d firing)" in shop
    assert "budget exhausted in 10d12h at the 1h burn rate" in shop  # 0.6 x 7d / 0.4
    api = out.split("\n\n")[1]
    assert "alert state: page (page-1h firing" in api


def test_status_json_and_service_filter(workdir: Path) -> None:
    code, out, _ = run("status", "--at", str(NOW), "--no-collect", "--service", "shop", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["now"] == NOW and [s["slo"] for s in data["slos"]] == ["shop-availability"]
    shop = data["slos"][0]
    assert shop["budget"]["remaining"] == pytest.approx(0.6)
    assert shop["tier"] == "normal" and shop["state"] == "ticket"
    assert {w["window"]: w["burn_rate"] for w in shop["windows"]} == pytest.approx(
        {"5m": 0.4, "30m": 0.4, "1h": 0.4, "2h": 0.4, "6h": 0.4, "1d": 0.4, "3d": 0.4}
    )
    three_days = next(r for r in shop["rules"] if r["name"] == "ticket-3d")
    assert (
        three_days["state"] == "firing" and three_days["long"]["bad"] == 2 * 1440 * 4
    )  # 2 days of data


def test_explain_in_numbers_and_its_prediction_holds(workdir: Path) -> None:
    code, out, _ = run("explain", "shop-availability", "--at", str(NOW), "--no-collect")
    assert code == 0, out
    assert "ticket-3d (ticket): FIRING: factor 0.2333 x 1% = error ratio above 0.2333%" in out
    assert "long  3d: 11520 bad of 2880000 = 0.400%, burn 0.4: above (clipped" not in out
    assert "short 6h: 1440 bad of 360000 = 0.400%, burn 0.4: above" in out
    assert "page-1h (page): OK: factor 3.36 x 1% = error ratio above 3.36%" in out
    assert "release tier normal:" in out and "  feature: allowed: normal:" in out
    data = json.loads(
        run("explain", "shop-availability", "--at", str(NOW), "--no-collect", "--json")[1]
    )
    page = next(r for r in data["rules"] if r["name"] == "page-1h")
    more = page["more_bad_events_to_fire"]
    assert f"{more} more bad event(s) now would fire it" in out
    assert data["release"]["fix"]["allowed"] is True and data["tier"] == "normal"
    # add exactly that many bad events in the last minute: the page fires
    store = open_store(f"sqlite:///{workdir / 'state.db'}")
    SloBucketStore(store.engine).add("shop-availability", [Bucket(NOW - MINUTE, 0, more)])
    store.close()
    again = json.loads(
        run("explain", "shop-availability", "--at", str(NOW), "--no-collect", "--json")[1]
    )
    assert next(r for r in again["rules"] if r["name"] == "page-1h")["state"] == "firing"


def test_validate_ok_and_bad_input_is_one_line_with_exit_2(workdir: Path) -> None:
    code, out, _ = run("validate", "slos.yaml")
    assert code == 0 and out.strip() == "ok: 2 SLOs (shop-availability, api-latency)"
    (workdir / "bad.yaml").write_text(SLOS.replace("objective: 99\n", "objective: 100\n", 1))
    code, out, err = run("validate", "bad.yaml")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "coalmine: error: bad.yaml:6: slos[0].objective: the objective must be strictly between "
        "0 and 100 (percent), got 100 (hint: e.g. 99.9 for 99.9% good events)"
    ]
    code, _, err = run("status", "--slos", "bad.yaml", "--no-collect")
    assert code == 2 and "bad.yaml:6: slos[0].objective" in err


def test_unknown_names_and_services(workdir: Path) -> None:
    code, _, err = run("explain", "shop-availabilty", "--no-collect")
    assert code == 2
    assert err.strip() == (
        "coalmine: error: NAME: no SLO named 'shop-availabilty' "
        "(hint: did you mean 'shop-availability'?)"
    )
    code, _, err = run("status", "--service", "shopp", "--no-collect")
    assert code == 2 and "--service: no SLO for service 'shopp'" in err
    code, _, err = run("status", "--at", "yesterday", "--no-collect")
    assert code == 2 and "--at: expected epoch seconds or an RFC 3339 time" in err


def test_validate_warns_about_low_traffic(tmp_path: Path) -> None:
    text = SLOS.replace("objective: 99\n", "objective: 99.9\n    traffic: 1/m\n", 1)
    (tmp_path / "low.yaml").write_text(textwrap.dedent(text))
    result = CliRunner().invoke(cli(), ["slo", "validate", str(tmp_path / "low.yaml"), "--json"])
    data = json.loads(result.stdout)
    assert data["ok"] is True
    # 99.9% over 7d: one failure among 60 an hour (page-1h) or 360 in 6h (page-6h) pages
    assert len(data["warnings"]) == 2
    assert "a single failed event would fire page-1h (page)" in data["warnings"][0]
    assert "a single failed event would fire page-6h (page)" in data["warnings"][1]


@pytest.mark.parametrize("at", ["nan", "inf", "-inf", "1e300", "-1", "0001-01-01T00:00:00Z"])
def test_at_outside_1970_to_9999_is_one_line_exit_2(workdir: Path, at: str) -> None:
    for command in (["status"], ["explain", "shop-availability"]):
        result = CliRunner().invoke(cli(), ["slo", *command, "--no-collect", "--at", at])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
        assert result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            f"coalmine: error: --at: expected a time between 1970 and 9999, got {at!r} "
            "(hint: epoch seconds such as 1717200000, or 2024-06-01T00:00:00Z)"
        ]


def test_a_service_without_slos_lists_the_known_ones(workdir: Path) -> None:
    code, out, err = run("status", "--service", "checkout", "--no-collect")
    assert code == 2 and out == ""
    assert err.strip() == (
        "coalmine: error: --service: no SLO for service 'checkout' "
        "(hint: services with SLOs: api, shop)"
    )


def test_a_file_without_slos_is_never_an_empty_success(workdir: Path) -> None:
    (workdir / "empty.yaml").write_text("slos: []\n")
    for command in (["status"], ["explain", "shop-availability"]):
        code, out, err = run(*command, "--slos", "empty.yaml", "--no-collect")
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and "empty.yaml" in err


def test_a_rule_without_data_is_cautious_but_not_a_failure(workdir: Path) -> None:
    quiet = SLOS.replace("    window: 7d\n", "    window: 7d\n    missingData: alert\n", 1)
    (workdir / "quiet.yaml").write_text(quiet)
    at = str(NOW + 10 * MINUTE)  # nothing stored for the last 10 minutes
    code, out, err = run("status", "--slos", "quiet.yaml", "--at", at, "--no-collect", "-s", "shop")
    assert code == 0 and err == ""
    assert "-> release tier cautious" in out
    assert (
        "  release tier at least cautious: SLO shop-availability has no data in window 5m "
        "(page-1h, missingData: alert)" in out
    )
    data = json.loads(
        run("status", "--slos", "quiet.yaml", "--at", at, "--no-collect", "-s", "shop", "--json")[1]
    )
    [shop] = data["slos"]
    assert shop["tier"] == "cautious" and shop["no_data_rules"] == ["page-1h"]
    assert shop["stale"] is False


# ---------------------------------------------------------------------- -o targets


def test_output_through_a_symlink_writes_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real" / "routes.yaml"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "routes.yaml"
    link.symlink_to(real)
    result = CliRunner().invoke(cli(), ["slo", "alertmanager", "-o", str(link)])
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and link.resolve() == real  # the link is still a link...
    expected = CliRunner().invoke(cli(), ["slo", "alertmanager", "-o", "-"]).stdout
    assert "receivers:" in expected and real.read_text() == expected  # ...to the new file
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["real", "routes.yaml", "routes.yaml"]


#: Linux's device numbers of /dev/null and /dev/full.
DEVICES = {"/dev/null": os.makedev(1, 3), "/dev/full": os.makedev(1, 7)}


def device_like(tmp_path: Path, name: str, device: str) -> Path:
    """A character device node with the numbers of ``device`` (needs root): the test can
    fail without ever touching the machine's own /dev/null or /dev/full."""
    node = tmp_path / name
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, DEVICES[device])
        os.close(os.open(node, os.O_WRONLY))  # a nodev mount refuses to open device nodes
    except OSError as err:
        pytest.skip(f"cannot use a device node in {tmp_path}: {err.strerror}")
    return node


def test_output_to_a_null_device_writes_to_it_and_keeps_it(tmp_path: Path) -> None:
    null = device_like(tmp_path, "null", "/dev/null")
    result = CliRunner().invoke(cli(), ["slo", "alertmanager", "-o", str(null)])
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode)
    assert f"wrote {null}" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no .tmp left either
    link = tmp_path / "out.yaml"  # a link to a device: the device is written, the link stays
    link.symlink_to(null)
    result = CliRunner().invoke(cli(), ["slo", "alertmanager", "-o", str(link)])
    assert result.exit_code == 0 and link.is_symlink() and stat.S_ISCHR(os.stat(null).st_mode)


def test_output_to_a_full_device_is_one_line_exit_2(tmp_path: Path) -> None:
    full = device_like(tmp_path, "full", "/dev/full")
    result = CliRunner().invoke(cli(), ["slo", "alertmanager", "-o", str(full)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"coalmine: error: --output: cannot write {full}: No space left on device"
    ]
    assert stat.S_ISCHR(os.stat(full).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["full"]


def test_output_through_a_symlink_loop_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    result = CliRunner().invoke(cli(), ["slo", "alertmanager", "-o", str(tmp_path / "a.yaml")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"coalmine: error: --output: cannot write {tmp_path / 'a.yaml'}: ")
    assert (tmp_path / "a.yaml").is_symlink() and (tmp_path / "b.yaml").is_symlink()
