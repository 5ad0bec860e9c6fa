"""Receipts as files: one JSON document per decision, written atomically, named so that a
directory listing reads as the rollout's history."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from coalmine.store.base import Receipt


def receipt_document(receipt: Receipt) -> dict[str, object]:
    """The receipt as users read it: the reference contract's fields first."""
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(receipt.timestamp, UTC).isoformat().replace("+00:00", "Z")
    return {
        "receipt_id": receipt.receipt_id,
        "timestamp": stamp,
        "operation": receipt.operation,
        "revision": receipt.revision,
        **receipt.body,
    }


def receipt_path(root: Path, receipt: Receipt, sequence: int) -> Path:
    return (
        root
        / receipt.rollout
        / f"rev{receipt.revision}"
        / f"{sequence:03d}-{receipt.operation}-{receipt.receipt_id[:8]}.json"
    )


def write_receipt(root: Path, receipt: Receipt, sequence: int) -> Path:
    """Write (or leave in place) the receipt's file; safe to call again after a crash."""
    path = receipt_path(root, receipt, sequence)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as out:
        json.dump(receipt_document(receipt), out, indent=2, sort_keys=False, default=str)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path
