"""What the controller and the CLI need from the state database.

The controller's state is opaque JSON here (``RolloutRecord.state``): the store keeps it, the
controller interprets it. ``save`` is the single transaction of a reconcile step: new state,
the decisions behind it, the receipts it produced and the user commands it consumed all land
together or not at all, guarded by optimistic concurrency on ``RolloutRecord.version``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RolloutRecord:
    name: str  # the Rollout's metadata.name (one active revision per name)
    revision: int  # 1, 2, ... one per `rollout start`
    phase: str  # denormalised from state for listing
    state: dict[str, Any]  # the controller's state, as JSON
    spec: dict[str, Any]  # the spec snapshot: {"files": {path: text}, "environment": ..., ...}
    created_at: float
    updated_at: float
    version: int = 0  # optimistic-concurrency counter, bumped by every save


@dataclass(frozen=True)
class Decision:
    """One decision of the controller, with its reason, in order."""

    rollout: str
    revision: int
    at: float
    kind: str  # e.g. "step-started", "weight-set", "analysis-failed", "rolled-back"
    reason: str
    step: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # set by the store


@dataclass(frozen=True)
class Receipt:
    receipt_id: str  # uuid4
    rollout: str
    revision: int
    # canary_phase_complete | traffic_promoted | deployment_complete | rollback_executed
    operation: str
    timestamp: float
    body: dict[str, Any]


@dataclass(frozen=True)
class Command:
    """A user's request (promote, pause, resume, abort, retry, undo) waiting for the controller."""

    id: int
    rollout: str
    name: str
    args: dict[str, Any]
    created_at: float


class Store(Protocol):
    def migrate(self) -> None:
        """Create or upgrade the schema. Raises StoreError for a database from a newer version."""
        ...

    def create_rollout(self, record: RolloutRecord) -> RolloutRecord:
        """Insert a new revision (revision = previous + 1, chosen by the store). Raises
        StoreError when the previous revision of that name is still active (not terminal)."""
        ...

    def get_rollout(self, name: str, revision: int | None = None) -> RolloutRecord | None:
        """The latest revision of ``name``, or the one asked for."""
        ...

    def list_rollouts(self, include_history: bool = False) -> list[RolloutRecord]: ...

    def save(
        self,
        record: RolloutRecord,
        *,
        decisions: list[Decision],
        receipts: list[Receipt],
        consumed_commands: list[int],
    ) -> RolloutRecord:
        """Write ``record`` if the stored version still equals ``record.version``; returns the
        record with the bumped version. Raises StoreError on a conflict."""
        ...

    def decisions(self, name: str, revision: int | None = None) -> list[Decision]: ...

    def enqueue_command(self, rollout: str, name: str, args: dict[str, Any], at: float) -> int: ...

    def pending_commands(self, rollout: str) -> list[Command]: ...

    def receipts(self, rollout: str | None = None) -> list[Receipt]: ...

    def get_receipt(self, receipt_id: str) -> Receipt | None:
        """Exact id or a unique prefix of at least 8 characters."""
        ...

    def heartbeat(self, controller_id: str, at: float) -> None: ...

    def last_heartbeat(self) -> tuple[str, float] | None: ...
