"""Router overhead: the same load against an upstream directly, through nginx, through coalmine.

Run as root (it starts nginx): ``.venv/bin/python -m bench.router_bench``. Needs ``nginx`` and
``wrk`` (Debian packages ``nginx-light`` and ``wrk``). Writes ``bench/results/router.json``.

The upstream is nginx answering ``ok`` from memory (so that it is never the bottleneck). nginx as
a proxy splits 70/30 between two ports of that upstream with keep-alive; coalmine splits 70/30
between stable and canary, both pointing at the same upstream. wrk sends a random ``X-Tenant``
per request (a Lua script, used in all three runs) so that coalmine really splits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import RESULTS, free_port, wait_for_port

WRK_ARGS = ["-t1", "-c32", "-d10s", "--latency"]
WRK_SEQUENTIAL = ["-t1", "-c1", "-d5s", "--latency"]  # one connection: latency without queueing
WRK_SCRIPT = """
math.randomseed(42)
request = function()
  return wrk.format(nil, nil, {["X-Tenant"] = "t" .. math.random(1, 100000)})
end
"""
UPSTREAM_CONF = """
worker_processes 1;
user root;
daemon off;
pid {prefix}/{name}.pid;
error_log {prefix}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
  keepalive_requests 1000000;
  {body}
}}
"""
ORIGIN = """
  server {{
    listen 127.0.0.1:{port_a}; listen 127.0.0.1:{port_b};
    location / {{ default_type text/plain; return 200 'ok'; }}
  }}
"""
PROXY = """
  upstream backend {{
    server 127.0.0.1:{port_a} weight=70;
    server 127.0.0.1:{port_b} weight=30;
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
"""


def start_nginx(prefix: Path, name: str, body: str) -> subprocess.Popen[bytes]:
    (prefix / "tmp").mkdir(exist_ok=True)
    conf = prefix / f"{name}.conf"
    conf.write_text(UPSTREAM_CONF.format(prefix=prefix, name=name, body=body))
    return subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)])


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return round(float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)], 4)


def run_wrk(url: str, script: Path, args: list[str] = WRK_ARGS) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", *args, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    percentiles = {
        f"p{m.group(1)}": to_ms(m.group(2))
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE)
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rps,
        "latency_ms": percentiles,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "raw": out,
    }


def measure(url: str, script: Path) -> dict[str, Any]:
    run_wrk(url, script, ["-t1", "-c32", "-d2s"])  # warm up: connections, caches
    return run_wrk(url, script)


def serve_child(spec: str) -> None:
    """Child process: run coalmine's router for the benchmark."""
    from coalmine.spec.model import RouterSettings, ServiceConfig, Tenancy, Upstream
    from coalmine.traffic.serve import run_router

    cfg = json.loads(spec)
    run_router(
        ServiceConfig(
            name="bench",
            stable=Upstream(cfg.get("stable", cfg.get("upstream"))),
            canary=Upstream(cfg.get("canary", cfg.get("upstream"))),
            tenancy=Tenancy(header="X-Tenant"),
            router=RouterSettings(
                listen=f"127.0.0.1:{cfg['listen']}",
                admin=f"127.0.0.1:{cfg['admin']}",
                state_file=cfg.get("state_file"),
            ),
        )
    )


def machine() -> dict[str, Any]:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    cpu = ""
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nginx": nginx.removeprefix("nginx version: "),
        "wrk": wrk.splitlines()[0] if wrk else "",
        "aiohttp": __import__("aiohttp").__version__,
    }


def main() -> None:
    if not shutil.which("nginx") or not shutil.which("wrk"):
        sys.exit("needs nginx and wrk: apt-get install -y nginx-light wrk")
    prefix = Path(tempfile.mkdtemp(prefix="coalmine-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port_a, port_b, proxy_port = free_port(), free_port(), free_port()
        router_port, admin_port = free_port(), free_port()
        script = prefix / "tenants.lua"
        script.write_text(WRK_SCRIPT)
        procs.append(start_nginx(prefix, "origin", ORIGIN.format(port_a=port_a, port_b=port_b)))
        procs.append(
            start_nginx(
                prefix, "proxy", PROXY.format(port_a=port_a, port_b=port_b, port=proxy_port)
            )
        )
        state = prefix / "routing.json"
        state.write_text(json.dumps({"service": "bench", "routing": {"canary_weight": 30}}))
        spec = {
            "upstream": f"http://127.0.0.1:{port_a}",
            "listen": router_port,
            "admin": admin_port,
            "state_file": str(state),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.router_bench", "--child-serve", json.dumps(spec)],
                cwd=Path(__file__).resolve().parents[1],
                stdout=subprocess.DEVNULL,
            )
        )
        for port in (port_a, proxy_port, router_port):
            wait_for_port(port)
        results: dict[str, Any] = {}
        sequential: dict[str, Any] = {}
        for name, port in (("direct", port_a), ("nginx", proxy_port), ("coalmine", router_port)):
            url = f"http://127.0.0.1:{port}/"
            results[name] = measure(url, script)
            sequential[name] = run_wrk(url, script, WRK_SEQUENTIAL)
            for label, r in (("c32", results[name]), ("c1", sequential[name])):
                print(
                    f"{name:9} {label:4} {r['requests_per_s']:>10.0f} req/s  "
                    f"p50 {r['latency_ms']['p50']:.3f} ms  p99 {r['latency_ms']['p99']:.3f} ms"
                )
        stats = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{admin_port}/admin/stats?window=600"],
            capture_output=True,
            text=True,
        ).stdout
        split = (
            {k: v["requests"] for k, v in json.loads(stats)["versions"].items()} if stats else {}
        )
        summary = summarise(results)
        summary["coalmine_split_requests"] = split
        summary["sequential"] = summarise(sequential)
        report = {
            "machine": machine(),
            "wrk_args": WRK_ARGS,
            "wrk_sequential_args": WRK_SEQUENTIAL,
            "summary": summary,
            "c32": results,
            "c1": sequential,
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "router.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(prefix, ignore_errors=True)


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    direct = results["direct"]
    out: dict[str, Any] = {}
    for name in ("nginx", "coalmine"):
        r = results[name]
        out[name] = {
            "requests_per_s": r["requests_per_s"],
            "added_p50_ms": round(r["latency_ms"]["p50"] - direct["latency_ms"]["p50"], 3),
            "added_p99_ms": round(r["latency_ms"]["p99"] - direct["latency_ms"]["p99"], 3),
        }
    out["direct"] = {"requests_per_s": direct["requests_per_s"], **direct["latency_ms"]}
    nginx, coalmine = out["nginx"], out["coalmine"]
    out["ratio_coalmine_to_nginx"] = {
        "requests_per_s": round(coalmine["requests_per_s"] / nginx["requests_per_s"], 3),
        "added_p50": round(coalmine["added_p50_ms"] / nginx["added_p50_ms"], 2)
        if nginx["added_p50_ms"] > 0
        else None,
        "added_p99": round(coalmine["added_p99_ms"] / nginx["added_p99_ms"], 2)
        if nginx["added_p99_ms"] > 0
        else None,
    }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child-serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_serve:
        serve_child(args.child_serve)
    else:
        main()
