"""Write a small, reproducible data file for ``coalmine analyze replay``.

Five minutes of traffic at a 25% canary weight: the stable version answers about 6 requests a
second, the canary about 2. Both are healthy (0.2% errors, ~25 ms) until ``--fault-at``, when
the canary starts failing 6% of its requests. A ``cpu-ratio`` sample (canary CPU per request
over stable's) every 15 s feeds the Prometheus metric of ``canary-saturation``.

    python examples/replay/make_samples.py            # writes examples/replay/samples.jsonl
    coalmine analyze replay --template examples/replay/templates.yaml \\
        --name canary-health --name canary-saturation --data examples/replay/samples.jsonl

Only the standard library; the same seed always gives the same file.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def requests(
    rng: random.Random, version: str, rate: float, duration: float, fault_at: float
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    t = rng.expovariate(rate)
    while t < duration:
        faulty = version == "canary" and t >= fault_at
        error_rate = 0.06 if faulty else 0.002
        status = 500 if rng.random() < error_rate else 200
        latency = rng.lognormvariate(3.2, 0.35)  # median about 25 ms
        out.append(
            {
                "t": round(t, 3),
                "version": version,
                "latency_ms": round(latency, 2),
                "status": status,
            }
        )
        t += rng.expovariate(rate)
    return out


def samples(rng: random.Random, duration: float) -> list[dict[str, object]]:
    return [
        {"t": float(t), "version": "canary", "metric": "cpu-ratio", "value": round(v, 3)}
        for t in range(15, int(duration), 15)
        for v in [rng.gauss(1.08, 0.04)]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=HERE / "samples.jsonl")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic")
    parser.add_argument("--fault-at", type=float, default=150.0, help="when the canary breaks")
    parser.add_argument("--seed", type=int, default=7)
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    lines = requests(rng, "stable", 6.0, opts.duration, opts.fault_at)
    lines += requests(rng, "canary", 2.0, opts.duration, opts.fault_at)
    lines += samples(rng, opts.duration)
    lines.sort(key=lambda line: float(line["t"]))  # type: ignore[arg-type]
    with opts.output.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    print(f"wrote {len(lines)} lines to {opts.output}")


if __name__ == "__main__":
    main()
