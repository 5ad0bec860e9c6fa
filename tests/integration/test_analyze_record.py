"""`coalmine analyze record` against a real router with real upstreams, then `analyze replay`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
from jsonschema import Draft202012Validator

from coalmine.analysis.replay import data_schema
from tests.integration.test_router_support import rig

_BIN = Path(sys.executable).with_name("coalmine")
COALMINE = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "coalmine.cli.main"]

TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: recorded
spec:
  metrics:
    - name: error-rate
      successCondition: result.canary <= 0.01
      provider:
        plugin:
          coalmine/router:
            query: error-rate
            window: 1m
            minRequests: 1
"""


async def _run(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *COALMINE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_record_captures_every_proxied_request_and_replays(tmp_path: Path) -> None:
    output = tmp_path / "recorded.jsonl"

    async def body() -> dict[str, int]:
        async with rig() as r, aiohttp.ClientSession() as session:
            async with session.put(
                f"http://{r.admin}/admin/routing", json={"canary_weight": 50, "generation": 1}
            ) as resp:
                assert resp.status == 200
            async with session.get(r.url + "/", headers={"X-Tenant": "before"}) as resp:
                await resp.read()  # before the recording: must not be in the file
            recorder = await asyncio.create_subprocess_exec(
                *COALMINE, "analyze", "record", "--admin", r.admin, "--duration", "2s",
                "--output", str(output), "--poll", "0.2",
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert recorder.stderr is not None
            ready = await asyncio.wait_for(recorder.stderr.readline(), 20)
            assert ready.startswith(b"recording " + r.admin.encode()), ready
            before = {"stable": len(r.stable.hits), "canary": len(r.canary.hits)}
            assert sum(before.values()) == 1
            for i in range(90):
                path = "/status?code=503" if i % 9 == 0 else "/"
                async with session.get(r.url + path, headers={"X-Tenant": f"t{i}"}) as resp:
                    await resp.read()
            _, rest = await asyncio.wait_for(recorder.communicate(), 20)
            assert recorder.returncode == 0, rest.decode()
            assert b"recorded 90 requests" in rest, rest.decode()
            return {
                "stable": len(r.stable.hits) - before["stable"],
                "canary": len(r.canary.hits) - before["canary"],
            }

    hits = asyncio.run(body())
    proxied = hits["stable"] + hits["canary"]

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert proxied == 90 and len(lines) == proxied
    for version in ("stable", "canary"):
        assert sum(line["version"] == version for line in lines) == hits[version] > 0
    assert [line["t"] for line in lines] == sorted(line["t"] for line in lines)
    assert sum(line["status"] == 503 for line in lines) == 10
    validator = Draft202012Validator(data_schema())
    for line in lines:
        assert not list(validator.iter_errors(line)), line

    template = tmp_path / "recorded.yaml"
    template.write_text(TEMPLATE)
    last = repr(lines[-1]["t"])  # one look, at the last record: it sees every record
    code, out, err = asyncio.run(
        _run("analyze", "replay", "--template", str(template), "--data", str(output),
             "--start", last, "--json")
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["data"]["requests"] == proxied and doc["data"]["time"] == "epoch"
    (look,) = [e for e in doc["timeline"] if e["kind"] == "measurement"]
    seen = look["details"]["canary"]["requests"] + look["details"]["stable"]["requests"]
    assert seen == proxied
    assert look["details"]["canary"]["errors"] + look["details"]["stable"]["errors"] == 10
