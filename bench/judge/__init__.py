"""Judge benchmark: coalmine's canary judge against an Argo Rollouts-style threshold judge and a
Kayenta-style Mann-Whitney judge, on the same simulated request streams.

Run: ``.venv/bin/python -m bench.judge`` (``--quick`` for a small run, ``--help`` for options).
Writes ``bench/results/judge.json`` and ``bench/results/judge.md``.
"""
