"""SLO buckets in the state database: ``slo_buckets`` (good/total per SLO and bucket start) and
``slo_cursors`` (how far each collector has read). Tables come from migration 0003.

``add`` sums counts into existing buckets (router records, read once each); ``put`` replaces
them (probe results and Prometheus, recomputed for a range, so re-running is harmless).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from coalmine.errors import StoreError
from coalmine.slo.engine import Bucket
from coalmine.store.sql import metadata, redact

slo_buckets = sa.Table(
    "slo_buckets",
    metadata,
    sa.Column("slo", sa.String(253), primary_key=True),
    sa.Column("bucket_start", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("good", sa.Double, nullable=False),
    sa.Column("total", sa.Double, nullable=False),
)

slo_cursors = sa.Table(
    "slo_cursors",
    metadata,
    sa.Column("slo", sa.String(253), primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("position", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _add_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Upsert bucket rows, adding their counts to what the buckets hold."""
    stmt = _insert(conn, slo_buckets)
    stmt = stmt.on_conflict_do_update(
        index_elements=["slo", "bucket_start"],
        set_={
            "good": slo_buckets.c.good + stmt.excluded.good,
            "total": slo_buckets.c.total + stmt.excluded.total,
        },
    )
    conn.execute(stmt, rows)


def _save_cursor(conn: Connection, slo: str, source: str, position: float, now: float) -> None:
    stmt = _insert(conn, slo_cursors).values(
        slo=slo, source=source, position=position, updated_at=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["slo", "source"],
            set_={"position": position, "updated_at": now},
        )
    )


class SloBucketStore:
    """Bucket reads and writes on the state store's engine (``SqlStore.engine``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _tx(self, action: str, write: bool = False) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(coalmine_write=True)  # BEGIN IMMEDIATE on SQLite
                with conn.begin():
                    yield conn
        except exc.DBAPIError as err:
            text = " ".join(str(getattr(err, "orig", None) or err).split())
            raise StoreError(
                redact(f"cannot {action}: {text}"),
                hint="is the database reachable and migrated (coalmine opens it migrated)?",
            ) from None

    def add(self, slo: str, buckets: Iterable[Bucket]) -> int:
        """Add counts to the buckets (creating them); returns how many buckets were written."""
        rows = _rows(slo, buckets)
        if not rows:
            return 0
        with self._tx(f"add SLO buckets of {slo}", write=True) as conn:
            _add_rows(conn, rows)
        return len(rows)

    def put(self, slo: str, buckets: Iterable[Bucket]) -> int:
        """Set the buckets' counts (replacing what was there)."""
        rows = _rows(slo, buckets)
        if not rows:
            return 0
        with self._tx(f"write SLO buckets of {slo}", write=True) as conn:
            stmt = _insert(conn, slo_buckets)
            stmt = stmt.on_conflict_do_update(
                index_elements=["slo", "bucket_start"],
                set_={"good": stmt.excluded.good, "total": stmt.excluded.total},
            )
            conn.execute(stmt, rows)
        return len(rows)

    def read(self, slo: str, start: float, end: float) -> list[Bucket]:
        """Buckets with ``start <= bucket_start < end``, oldest first."""
        c = slo_buckets.c
        query = (
            sa.select(c.bucket_start, c.good, c.total)
            .where(c.slo == slo, c.bucket_start >= int(start), c.bucket_start < end)
            .order_by(c.bucket_start)
        )
        with self._tx(f"read SLO buckets of {slo}") as conn:
            return [Bucket(float(r[0]), float(r[1]), float(r[2])) for r in conn.execute(query)]

    def first_start(self, slo: str) -> float | None:
        """The oldest bucket of the SLO (when data started), if any."""
        with self._tx(f"read SLO buckets of {slo}") as conn:
            value = conn.execute(
                sa.select(sa.func.min(slo_buckets.c.bucket_start)).where(slo_buckets.c.slo == slo)
            ).scalar()
        return None if value is None else float(value)

    def delete_before(self, slo: str, before: float) -> int:
        """Drop buckets older than ``before`` (retention)."""
        with self._tx(f"prune SLO buckets of {slo}", write=True) as conn:
            result = conn.execute(
                sa.delete(slo_buckets).where(
                    slo_buckets.c.slo == slo, slo_buckets.c.bucket_start < before
                )
            )
        return int(result.rowcount or 0)

    def cursor(self, slo: str, source: str) -> float | None:
        c = slo_cursors.c
        with self._tx(f"read the collector position of {slo}") as conn:
            value = conn.execute(
                sa.select(c.position).where(c.slo == slo, c.source == source)
            ).scalar()
        return None if value is None else float(value)

    def set_cursor(self, slo: str, source: str, position: float, now: float) -> None:
        with self._tx(f"save the collector position of {slo}", write=True) as conn:
            _save_cursor(conn, slo, source, position, now)

    def add_with_cursor(
        self, slo: str, source: str, buckets: Iterable[Bucket], position: float, now: float
    ) -> int:
        """Add counts and move the collector's cursor in one transaction (no double counting)."""
        rows = _rows(slo, buckets)
        with self._tx(f"add SLO buckets of {slo}", write=True) as conn:
            if rows:
                _add_rows(conn, rows)
            _save_cursor(conn, slo, source, position, now)
        return len(rows)


def _rows(slo: str, buckets: Iterable[Bucket]) -> list[dict[str, Any]]:
    merged: dict[int, list[float]] = {}
    for b in buckets:
        start = round(b.start)
        if abs(b.start - start) > 1e-6:
            raise ValueError(f"bucket start {b.start} is not a whole second")
        slot = merged.setdefault(start, [0.0, 0.0])
        slot[0] += b.good
        slot[1] += b.total
    return [
        {"slo": slo, "bucket_start": start, "good": g, "total": t}
        for start, (g, t) in sorted(merged.items())
    ]
