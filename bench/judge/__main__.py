"""``python -m bench.judge``: see bench/judge/harness.py."""

from bench.judge.harness import main

main()
