"""Rollout specs for tests that drive a whole rollout of the ``shop`` service."""

from __future__ import annotations

import textwrap

_HEAD = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: shop
spec:
  strategy:
    canary:
      steps:
"""


def shop_rollout(steps: str) -> str:
    """An Argo Rollout named ``shop`` whose canary runs ``steps``: YAML list items written
    flush left (``- setWeight: 10``). Append ``---`` and more documents to the result."""
    return _HEAD + textwrap.indent(textwrap.dedent(steps), " " * 8)
