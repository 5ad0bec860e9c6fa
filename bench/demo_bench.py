"""The demo's fault-onset → rollback times at default settings, over repeated runs.

Each run is a real `coalmine demo --fault ...` (time scale 10, fault 10 s into the rollout);
the figures are read from its JSON summary. Written to bench/results/demo.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS

FAULTS = ("error-rate=0.05", "latency=+150ms", "crash")


def one_run(fault: str, workdir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coalmine.cli.main",
            "demo",
            "--fault",
            fault,
            "--mode",
            "plain",
            "--json",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{\n") :])
    summary["returncode"] = done.returncode
    return summary


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p90": round(ordered[max(0, round(0.9 * len(ordered)) - 1)], 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def main(runs: int = 10) -> None:
    report: dict[str, Any] = {
        "runs_per_fault": runs,
        "time_scale": 10,
        "fault_after_s": 10,
        "faults": {},
    }
    with tempfile.TemporaryDirectory(prefix="coalmine-demo-bench-") as tmp:
        for fault in FAULTS:
            rows = []
            for i in range(runs):
                started = time.monotonic()
                summary = one_run(fault, Path(tmp) / f"{fault}-{i}")
                rows.append(
                    {
                        "rolled_back": summary["phase"] == "RolledBack",
                        "onset_to_verdict_s": summary["onset_to_verdict_s"],
                        "onset_to_last_canary_request_s": summary["onset_to_last_canary_request_s"],
                        "rollback_duration_ms": summary["rollback_duration_ms"],
                        "wall_s": round(time.monotonic() - started, 1),
                    }
                )
                print(f"{fault} run {i + 1}/{runs}: {rows[-1]}", flush=True)
            ok = [r for r in rows if r["rolled_back"]]
            report["faults"][fault] = {
                "rolled_back": f"{len(ok)}/{len(rows)}",
                "onset_to_verdict_s": spread([r["onset_to_verdict_s"] for r in ok]),
                "onset_to_last_canary_request_s": spread(
                    [r["onset_to_last_canary_request_s"] for r in ok]
                ),
                "rollback_duration_ms": spread([r["rollback_duration_ms"] for r in ok]),
                "runs": rows,
            }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: {kk: vv for kk, vv in v.items() if kk != "runs"}
                for k, v in report["faults"].items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
