"""The state store against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import coalmine.probes.store
import coalmine.slo.store  # noqa: F401
from coalmine.errors import StoreError
from coalmine.store.base import Decision, Receipt, RolloutRecord
from coalmine.store.open import open_store
from coalmine.store.sql import TERMINAL_PHASES, SqlStore, alembic_config, metadata


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = open_store(store_url)
    yield s
    s.close()


def record(name: str = "web", phase: str = "Progressing", at: float = 100.0) -> RolloutRecord:
    return RolloutRecord(
        name=name,
        revision=99,  # ignored by create_rollout
        phase=phase,
        state={"step": 0, "weights": {"canary": 0}},
        spec={"files": {"rollout.yaml": "kind: Rollout\n"}, "environment": "prod"},
        created_at=at,
        updated_at=at,
    )


def decision(r: RolloutRecord, kind: str = "step-started", at: float = 101.0) -> Decision:
    return Decision(r.name, r.revision, at, kind, f"because {kind}", step=1, data={"w": 10})


def receipt(r: RolloutRecord, receipt_id: str, at: float = 102.0) -> Receipt:
    return Receipt(receipt_id, r.name, r.revision, "traffic_promoted", at, {"weight": 10})


def advance(r: RolloutRecord, phase: str | None = None, **state: object) -> RolloutRecord:
    return RolloutRecord(
        **{
            **vars(r),
            "phase": phase or r.phase,
            "state": {**r.state, **state},
            "updated_at": r.updated_at + 1,
        }
    )


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_round_trip(store: SqlStore) -> None:
    created = store.create_rollout(record())
    assert (created.revision, created.version) == (1, 0)
    assert store.get_rollout("web") == created
    cmd = store.enqueue_command("web", "promote", {"full": True}, at=100.5)
    [pending] = store.pending_commands("web")
    assert (pending.id, pending.name, pending.args, pending.created_at) == (
        cmd,
        "promote",
        {"full": True},
        100.5,
    )

    new = advance(created, step=1)
    decisions = [decision(new, "step-started"), decision(new, "weight-set", at=101.5)]
    saved = store.save(
        new,
        decisions=decisions,
        receipts=[receipt(new, "0123abcd-0000-4000-8000-000000000001")],
        consumed_commands=[cmd],
    )
    assert saved.version == 1
    assert store.get_rollout("web") == saved
    assert store.get_rollout("web", revision=1) == saved
    assert store.get_rollout("web", revision=2) is None
    assert store.get_rollout("other") is None
    got = store.decisions("web")
    assert [(d.kind, d.at, d.step, d.data) for d in got] == [
        ("step-started", 101.0, 1, {"w": 10}),
        ("weight-set", 101.5, 1, {"w": 10}),
    ]
    assert all(d.id is not None for d in got) and got[0].id < got[1].id  # type: ignore[operator]
    assert store.receipts() == [receipt(new, "0123abcd-0000-4000-8000-000000000001")]
    assert store.receipts("other") == []
    assert store.pending_commands("web") == []

    assert store.last_heartbeat() is None
    store.heartbeat("ctl-1", 200.0)
    store.heartbeat("ctl-2", 201.5)
    assert store.last_heartbeat() == ("ctl-2", 201.5)


def test_revisions_are_numbered_per_name(store: SqlStore) -> None:
    first = store.create_rollout(record("web"))
    store.create_rollout(record("api"))
    store.save(advance(first, "Healthy"), decisions=[], receipts=[], consumed_commands=[])
    second = store.create_rollout(record("web", at=200.0))
    assert second.revision == 2
    assert [(r.name, r.revision) for r in store.list_rollouts()] == [("api", 1), ("web", 2)]
    assert [(r.name, r.revision) for r in store.list_rollouts(include_history=True)] == [
        ("api", 1),
        ("web", 1),
        ("web", 2),
    ]
    assert store.get_rollout("web", 1).phase == "Healthy"  # type: ignore[union-attr]
    assert store.decisions("web") == []


@pytest.mark.parametrize("phase", sorted(TERMINAL_PHASES))
def test_create_allowed_after_each_terminal_phase(store: SqlStore, phase: str) -> None:
    first = store.create_rollout(record())
    store.save(advance(first, phase), decisions=[], receipts=[], consumed_commands=[])
    assert store.create_rollout(record()).revision == 2


def test_create_refused_while_previous_revision_active(store: SqlStore) -> None:
    first = store.create_rollout(record())
    store.save(advance(first, "Paused"), decisions=[], receipts=[], consumed_commands=[])
    with pytest.raises(StoreError, match="still active"):
        store.create_rollout(record())
    assert [r.revision for r in store.list_rollouts(include_history=True)] == [1]


def test_stale_save_conflicts_and_writes_nothing(store: SqlStore) -> None:
    base = store.create_rollout(record())
    cmd = store.enqueue_command("web", "pause", {}, at=100.0)
    winner = store.save(
        advance(base, step=1), decisions=[decision(base)], receipts=[], consumed_commands=[]
    )
    with pytest.raises(StoreError, match="changed by another controller") as err:
        store.save(
            advance(base, step=7),
            decisions=[decision(base, "stale")],
            receipts=[receipt(base, "ffffffff-stale")],
            consumed_commands=[cmd],
        )
    assert err.value.hint
    assert store.get_rollout("web") == winner
    assert [d.kind for d in store.decisions("web")] == ["step-started"]
    assert store.receipts() == []
    assert [c.id for c in store.pending_commands("web")] == [cmd]  # consumed only on success


def test_save_is_atomic(store: SqlStore) -> None:
    base = store.create_rollout(record())
    first = store.save(
        advance(base, step=1),
        decisions=[decision(base)],
        receipts=[receipt(base, "aaaaaaaa-1")],
        consumed_commands=[],
    )
    cmd = store.enqueue_command("web", "promote", {}, at=103.0)
    with pytest.raises(StoreError):
        store.save(
            advance(first, "Healthy", step=2),
            decisions=[decision(first, "promoted")],
            receipts=[receipt(first, "bbbbbbbb-2"), receipt(first, "aaaaaaaa-1")],  # duplicate
            consumed_commands=[cmd],
        )
    assert store.get_rollout("web") == first
    assert len(store.decisions("web")) == 1
    assert [r.receipt_id for r in store.receipts()] == ["aaaaaaaa-1"]
    assert [c.id for c in store.pending_commands("web")] == [cmd]


def test_save_of_missing_rollout_is_refused(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.save(record(), decisions=[], receipts=[], consumed_commands=[])


def test_commands_are_per_rollout_and_in_order(store: SqlStore) -> None:
    r = store.create_rollout(record("web"))
    ids = [store.enqueue_command("web", n, {"i": i}, at=1.0) for i, n in enumerate("abc")]
    other = store.enqueue_command("api", "abort", {}, at=1.0)
    assert [c.id for c in store.pending_commands("web")] == ids
    store.save(advance(r), decisions=[], receipts=[], consumed_commands=[ids[1], other])
    assert [c.name for c in store.pending_commands("web")] == ["a", "c"]
    assert [c.id for c in store.pending_commands("api")] == [other]  # not this rollout's


def test_receipt_lookup_by_prefix(store: SqlStore) -> None:
    r = store.create_rollout(record())
    ids = [
        "0badc0de-1111-4000-8000-000000000000",
        "0badc0de-2222-4000-8000-000000000000",
        "5ca1ab1e-3333-4000-8000-000000000000",
    ]
    store.save(
        advance(r),
        decisions=[],
        receipts=[receipt(r, rid, at=i) for i, rid in enumerate(ids)],
        consumed_commands=[],
    )
    assert [x.receipt_id for x in store.receipts("web")] == ids
    assert store.get_receipt(ids[0]) == receipt(r, ids[0], at=0)
    assert store.get_receipt("0badc0de-2").receipt_id == ids[1]  # type: ignore[union-attr]
    assert store.get_receipt("5ca1ab1e").receipt_id == ids[2]  # type: ignore[union-attr]
    assert store.get_receipt("5ca1ab1") is None  # too short for a prefix
    assert store.get_receipt("deadbeef") is None
    assert store.get_receipt("0badc0de%") is None  # LIKE wildcards are literal
    with pytest.raises(StoreError, match="ambiguous"):
        store.get_receipt("0badc0de")


def _stamp(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS alembic_version "
                "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
            )
            conn.exec_driver_sql("DELETE FROM alembic_version")
            conn.execute(
                sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": revision}
            )
    finally:
        engine.dispose()


def _revision(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                str(v) for (v,) in conn.exec_driver_sql("SELECT version_num FROM alembic_version")
            ]
    finally:
        engine.dispose()


def test_newer_schema_is_refused_on_empty_database(store_url: str) -> None:
    _stamp(store_url, "ffff_future")
    with pytest.raises(StoreError) as err:
        open_store(store_url)
    assert err.value.message == (
        "the state database was written by a newer coalmine (schema revision ffff_future)"
    )
    assert "COALMINE_DATABASE_URL" in (err.value.hint or "")
    assert table_names(store_url) == {"alembic_version"}
    assert _revision(store_url) == ["ffff_future"]


def test_newer_schema_is_refused_and_data_kept(store_url: str) -> None:
    store = open_store(store_url)
    kept = store.create_rollout(record())
    store.close()
    _stamp(store_url, "ffff_future")
    with pytest.raises(StoreError, match=r"newer coalmine \(schema revision ffff_future\)"):
        open_store(store_url)
    assert _revision(store_url) == ["ffff_future"]
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT name, revision, version FROM rollouts").all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(kept.name, kept.revision, kept.version)]


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrate_twice_is_a_no_op(store_url: str) -> None:
    store = open_store(store_url)
    r = store.create_rollout(record())
    tables = table_names(store_url)
    store.migrate()
    store.migrate()
    store.close()
    again = open_store(store_url)
    try:
        assert table_names(store_url) == tables
        assert tables >= {"rollouts", "decisions", "receipts", "commands", "controller_heartbeat"}
        assert _revision(store_url) == [HEAD]
        assert again.get_rollout("web") == r
    finally:
        again.close()


def test_migrations_match_the_models(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


_OPEN = """
import sys
from coalmine.store.open import open_store
open_store(sys.argv[1]).close()
"""


def test_concurrent_first_migrations(store_url: str) -> None:
    procs = [run_python(_OPEN, store_url) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert _revision(store_url) == [HEAD]


_ENQUEUE = """
import sys
from coalmine.store.open import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[2])):
    store.enqueue_command("web", "promote", {"i": i}, at=float(i))
store.close()
"""


def test_second_process_enqueues_while_controller_saves(store_url: str) -> None:
    store = open_store(store_url)
    try:
        current = store.create_rollout(record())
        n_commands, n_saves = 40, 40
        proc = subprocess.Popen(
            [sys.executable, "-c", _ENQUEUE, store_url, str(n_commands)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        consumed: list[int] = []
        for i in range(n_saves):
            pending = [c.id for c in store.pending_commands("web")]
            current = store.save(
                advance(current, step=i),
                decisions=[decision(current, f"save-{i}")],
                receipts=[],
                consumed_commands=pending,
            )
            consumed += pending
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        left = [c.id for c in store.pending_commands("web")]
        assert len(set(consumed)) == len(consumed)
        assert len(consumed) + len(left) == n_commands
        assert current.version == n_saves
        assert len(store.decisions("web")) == n_saves
    finally:
        store.close()


def test_password_is_redacted_when_unreachable() -> None:
    with pytest.raises(StoreError) as err:
        open_store("postgresql://user:secret@127.0.0.1:1/db")
    assert "secret" not in str(err.value)
    assert "secret" not in err.value.message
    assert "\n" not in err.value.message
    assert "127.0.0.1:1" in err.value.message
    assert err.value.hint


@pytest.mark.parametrize(
    "url", ["mysql://user:secret@host/db", "not a url at all", "postgresql+asyncpg://u:secret@h/d"]
)
def test_bad_url_is_a_store_error(url: str) -> None:
    with pytest.raises(StoreError) as err:
        open_store(url)
    assert "secret" not in str(err.value)
    assert err.value.hint


def test_sqlite_is_in_wal_mode_and_creates_directories(tmp_path: object) -> None:
    path = f"{tmp_path}/nested/dir/state.db"
    store = open_store(f"sqlite:///{path}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        store.close()
