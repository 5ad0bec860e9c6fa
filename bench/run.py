"""`make bench`: every benchmark, one after the other; figures go to bench/results/."""

from __future__ import annotations

import runpy
import sys

BENCHES = (
    "bench.router_bench",
    "bench.rollback_bench",
    "bench.demo_bench",
    "bench.judge",
    "bench.judge.bound",
    "bench.probes_bench",
)


def main() -> None:
    chosen = sys.argv[1:] or BENCHES
    for name in chosen:
        module = name if name.startswith("bench.") else f"bench.{name}"
        print(f"== {module}", flush=True)
        sys.argv = [module]
        runpy.run_module(module, run_name="__main__")


if __name__ == "__main__":
    main()
