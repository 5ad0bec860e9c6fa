"""The state store on SQLAlchemy Core: SQLite (default, WAL) or PostgreSQL.

Every method runs in its own short transaction, so several processes (the controller and CLI
commands) can share one database. Writes on SQLite start with ``BEGIN IMMEDIATE`` so that a
read-then-write transaction waits for the lock (busy timeout) instead of failing half-way.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from coalmine.errors import StoreError
from coalmine.store.base import Command, Decision, Receipt, RolloutRecord

_T = TypeVar("_T")

TERMINAL_PHASES: frozenset[str] = frozenset({"Healthy", "Aborted", "RolledBack"})

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATE_LOCK_KEY = 0x636F616C6D696E65  # "coalmine": pg_advisory_xact_lock key
_WRITE = "coalmine_write"  # execution option: this transaction will write

# --- schema -----------------------------------------------------------------------------------

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_rollout_fk = (["rollout", "revision"], ["rollouts.name", "rollouts.revision"])

rollout_table = sa.Table(
    "rollouts",
    metadata,
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("phase", sa.String(64), nullable=False),
    sa.Column("state", _json, nullable=False),
    sa.Column("spec", _json, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

decision_table = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rollout", sa.String(253), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("step", sa.Integer, nullable=True),
    sa.Column("data", _json, nullable=False),
    sa.ForeignKeyConstraint(*_rollout_fk, ondelete="CASCADE"),
    sa.Index(None, "rollout", "revision", "id"),
)

receipt_table = sa.Table(
    "receipts",
    metadata,
    sa.Column("receipt_id", sa.String(64), primary_key=True),
    sa.Column("rollout", sa.String(253), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.Double, nullable=False),
    sa.Column("body", _json, nullable=False),
    sa.ForeignKeyConstraint(*_rollout_fk, ondelete="CASCADE"),
    sa.Index(None, "rollout", "timestamp"),
    sa.Index(None, "timestamp"),
)

command_table = sa.Table(
    "commands",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rollout", sa.String(253), nullable=False),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("args", _json, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("consumed_at", sa.Double, nullable=True),
    sa.Index(None, "rollout", "consumed_at", "id"),
)

heartbeat_table = sa.Table(
    "controller_heartbeat",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("controller_id", sa.String(255), nullable=False),
    sa.Column("at", sa.Double, nullable=False),
)

# --- helpers ----------------------------------------------------------------------------------

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")


def redact(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def alembic_config(url: str = "") -> Config:
    """An Alembic configuration that works from an installed package (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _install_sqlite_pragmas(engine: Engine) -> None:
    """WAL, NORMAL sync, foreign keys and a busy timeout on every connection; transactions are
    begun by us (``BEGIN`` / ``BEGIN IMMEDIATE``) so that DDL is transactional too."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not issue its own BEGIN
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA busy_timeout = 5000")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error)
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _from_row(cls: type[_T], row: sa.Row[Any]) -> _T:
    """Build a store dataclass from a row whose columns carry the same names as its fields."""
    m = row._mapping
    return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


# --- the store --------------------------------------------------------------------------------


class SqlStore:
    """The :class:`coalmine.store.base.Store` on an SQLAlchemy engine (see ``open_store``).

    ``create_rollout`` stores the new revision with version 0; every ``save`` bumps it by one.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._password = engine.url.password
        if engine.dialect.name == "sqlite":
            _install_sqlite_pragmas(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    # transactions and errors

    def _clean(self, text: str) -> str:
        text = redact(text)
        if self._password:
            text = text.replace(str(self._password), "***")
        return text

    @contextmanager
    def _tx(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; database errors become a one-line StoreError without secrets."""
        try:
            conn = self._engine.connect()
        except exc.DBAPIError as e:
            raise StoreError(
                self._clean(f"cannot connect to the state database {self.url}: {_one_line(e)}"),
                hint="check that the database is running and COALMINE_DATABASE_URL is right",
            ) from None
        try:
            with conn:
                if write:
                    conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    yield conn
        except exc.IntegrityError as e:
            raise StoreError(
                self._clean(f"cannot {action}: {_one_line(e)}"),
                hint="nothing was written; this is a bug or a concurrent writer, try again",
            ) from None
        except exc.DBAPIError as e:
            raise StoreError(
                self._clean(f"cannot {action} in the state database {self.url}: {_one_line(e)}"),
                hint="check that the database is reachable and try again",
            ) from None

    # schema

    def migrate(self) -> None:
        """Upgrade to the newest schema; refuses (changing nothing) a schema from the future.

        A read-only check comes first, so opening an up-to-date database takes no write lock;
        the upgrade itself runs in one transaction, under an advisory lock on PostgreSQL and
        ``BEGIN IMMEDIATE`` on SQLite, so concurrent processes upgrade exactly once.
        """
        cfg = alembic_config()
        script = ScriptDirectory.from_config(cfg)
        known = {s.revision for s in script.walk_revisions()}
        heads = set(script.get_heads())

        def up_to_date(conn: Connection) -> bool:
            current = set(MigrationContext.configure(conn).get_current_heads())
            if unknown := sorted(current - known):
                raise StoreError(
                    "the state database was written by a newer coalmine "
                    f"(schema revision {', '.join(unknown)})",
                    hint="upgrade coalmine or point COALMINE_DATABASE_URL at another database",
                )
            return current == heads

        with self._tx("read the schema revision") as conn:
            if up_to_date(conn):
                return
        with self._tx("migrate the schema", write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATE_LOCK_KEY)))
            if up_to_date(conn):
                return
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # rollouts

    def create_rollout(self, record: RolloutRecord) -> RolloutRecord:
        with self._tx(f"create rollout {record.name}", write=True) as conn:
            latest = conn.execute(
                sa.select(rollout_table.c.revision, rollout_table.c.phase)
                .where(rollout_table.c.name == record.name)
                .order_by(rollout_table.c.revision.desc())
                .limit(1)
            ).first()
            if latest is not None and latest.phase not in TERMINAL_PHASES:
                raise StoreError(
                    f"rollout {record.name} revision {latest.revision} is still active "
                    f"(phase {latest.phase})",
                    hint="wait for it to finish, or abort it first",
                )
            revision = 1 if latest is None else latest.revision + 1
            stored = RolloutRecord(
                name=record.name,
                revision=revision,
                phase=record.phase,
                state=record.state,
                spec=record.spec,
                created_at=record.created_at,
                updated_at=record.updated_at,
                version=0,
            )
            conn.execute(sa.insert(rollout_table).values(**vars(stored)))
            return stored

    def get_rollout(self, name: str, revision: int | None = None) -> RolloutRecord | None:
        stmt = sa.select(rollout_table).where(rollout_table.c.name == name)
        if revision is None:
            stmt = stmt.order_by(rollout_table.c.revision.desc()).limit(1)
        else:
            stmt = stmt.where(rollout_table.c.revision == revision)
        with self._tx(f"read rollout {name}") as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _from_row(RolloutRecord, row)

    def list_rollouts(self, include_history: bool = False) -> list[RolloutRecord]:
        stmt = sa.select(rollout_table).order_by(rollout_table.c.name, rollout_table.c.revision)
        if not include_history:
            latest = (
                sa.select(
                    rollout_table.c.name, sa.func.max(rollout_table.c.revision).label("revision")
                )
                .group_by(rollout_table.c.name)
                .subquery()
            )
            stmt = stmt.join(
                latest,
                sa.and_(
                    rollout_table.c.name == latest.c.name,
                    rollout_table.c.revision == latest.c.revision,
                ),
            )
        with self._tx("list rollouts") as conn:
            return [_from_row(RolloutRecord, row) for row in conn.execute(stmt)]

    def save(
        self,
        record: RolloutRecord,
        *,
        decisions: list[Decision],
        receipts: list[Receipt],
        consumed_commands: list[int],
    ) -> RolloutRecord:
        new = RolloutRecord(**{**vars(record), "version": record.version + 1})
        where = sa.and_(
            rollout_table.c.name == record.name, rollout_table.c.revision == record.revision
        )
        with self._tx(f"save rollout {record.name}", write=True) as conn:
            updated = conn.execute(
                sa.update(rollout_table)
                .where(where, rollout_table.c.version == record.version)
                .values(
                    phase=new.phase,
                    state=new.state,
                    spec=new.spec,
                    updated_at=new.updated_at,
                    version=new.version,
                )
            )
            if updated.rowcount != 1:
                if conn.execute(sa.select(rollout_table.c.version).where(where)).first() is None:
                    raise StoreError(
                        f"rollout {record.name} revision {record.revision} does not exist",
                        hint="create it with `coalmine rollout start` first",
                    )
                raise StoreError(
                    f"rollout {record.name} was changed by another controller",
                    hint="only one controller may run against a database; "
                    "reload the rollout and retry",
                )
            if decisions:
                conn.execute(sa.insert(decision_table), [_decision_row(d) for d in decisions])
            if receipts:
                conn.execute(sa.insert(receipt_table), [vars(r) for r in receipts])
            if consumed_commands:
                conn.execute(
                    sa.update(command_table)
                    .where(
                        command_table.c.id.in_(consumed_commands),
                        command_table.c.rollout == record.name,
                        command_table.c.consumed_at.is_(None),
                    )
                    .values(consumed_at=record.updated_at)
                )
        return new

    # decisions, commands, receipts

    def decisions(self, name: str, revision: int | None = None) -> list[Decision]:
        with self._tx(f"read the decisions of {name}") as conn:
            if revision is None:
                revision = conn.execute(
                    sa.select(sa.func.max(rollout_table.c.revision)).where(
                        rollout_table.c.name == name
                    )
                ).scalar()
                if revision is None:
                    return []
            rows = conn.execute(
                sa.select(decision_table)
                .where(decision_table.c.rollout == name, decision_table.c.revision == revision)
                .order_by(decision_table.c.id)
            )
            return [_from_row(Decision, row) for row in rows]

    def enqueue_command(self, rollout: str, name: str, args: dict[str, Any], at: float) -> int:
        with self._tx(f"queue command {name} for {rollout}", write=True) as conn:
            new_id: int = conn.execute(
                sa.insert(command_table)
                .values(rollout=rollout, name=name, args=args, created_at=at)
                .returning(command_table.c.id)
            ).scalar_one()
        return int(new_id)

    def pending_commands(self, rollout: str) -> list[Command]:
        stmt = (
            sa.select(command_table)
            .where(command_table.c.rollout == rollout, command_table.c.consumed_at.is_(None))
            .order_by(command_table.c.id)
        )
        with self._tx(f"read the commands of {rollout}") as conn:
            return [
                Command(
                    id=r.id, rollout=r.rollout, name=r.name, args=r.args, created_at=r.created_at
                )
                for r in conn.execute(stmt)
            ]

    def receipts(self, rollout: str | None = None) -> list[Receipt]:
        stmt = sa.select(receipt_table).order_by(
            receipt_table.c.timestamp, receipt_table.c.receipt_id
        )
        if rollout is not None:
            stmt = stmt.where(receipt_table.c.rollout == rollout)
        with self._tx("read receipts") as conn:
            return [_from_row(Receipt, row) for row in conn.execute(stmt)]

    def get_receipt(self, receipt_id: str) -> Receipt | None:
        """Exact id, or a unique prefix of at least 8 characters (shorter: no match)."""
        with self._tx(f"read receipt {receipt_id}") as conn:
            row = conn.execute(
                sa.select(receipt_table).where(receipt_table.c.receipt_id == receipt_id)
            ).first()
            if row is not None or len(receipt_id) < 8:
                return None if row is None else _from_row(Receipt, row)
            rows = conn.execute(
                sa.select(receipt_table)
                .where(receipt_table.c.receipt_id.startswith(receipt_id, autoescape=True))
                .order_by(receipt_table.c.receipt_id)
                .limit(2)
            ).all()
        if len(rows) > 1:
            raise StoreError(
                f"receipt id prefix {receipt_id} is ambiguous "
                f"({rows[0].receipt_id}, {rows[1].receipt_id}, ...)",
                hint="give more characters of the receipt id",
            )
        return _from_row(Receipt, rows[0]) if rows else None

    # controller liveness

    def heartbeat(self, controller_id: str, at: float) -> None:
        table = heartbeat_table
        values = {"id": 1, "controller_id": controller_id, "at": at}
        with self._tx("record the controller heartbeat", write=True) as conn:
            if conn.dialect.name == "postgresql":
                pg = postgresql.insert(table).values(**values)
                stmt: sa.Executable = pg.on_conflict_do_update(
                    index_elements=[table.c.id],
                    set_={"controller_id": pg.excluded.controller_id, "at": pg.excluded.at},
                )
            else:
                lite = sqlite.insert(table).values(**values)
                stmt = lite.on_conflict_do_update(
                    index_elements=[table.c.id],
                    set_={"controller_id": lite.excluded.controller_id, "at": lite.excluded.at},
                )
            conn.execute(stmt)

    def last_heartbeat(self) -> tuple[str, float] | None:
        with self._tx("read the controller heartbeat") as conn:
            row = conn.execute(
                sa.select(heartbeat_table.c.controller_id, heartbeat_table.c.at)
            ).first()
        return None if row is None else (row.controller_id, row.at)


def _decision_row(d: Decision) -> dict[str, Any]:
    return {
        "rollout": d.rollout,
        "revision": d.revision,
        "at": d.at,
        "kind": d.kind,
        "reason": d.reason,
        "step": d.step,
        "data": d.data,
    }
