"""Turn a database URL into a migrated, ready :class:`SqlStore`."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import URL

from coalmine.errors import StoreError
from coalmine.store.sql import SqlStore, redact

DEFAULT_URL = "sqlite:///.coalmine/state.db"
_HINT = "use sqlite:///path/to/state.db or postgresql://user:password@host:port/database"


def normalise_url(url: str) -> URL:
    """Parse ``url``; ``postgresql://`` (and ``postgres://``) use the psycopg 3 driver."""
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError:
        raise StoreError(f"not a database URL: {redact(url)!r}", hint=_HINT) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed
    raise StoreError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)}", hint=_HINT
    )


def open_store(url: str = DEFAULT_URL) -> SqlStore:
    """Open (creating the SQLite file and its directory if needed) and migrate the store."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database not in ("", ":memory:") and not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(
                    f"cannot create the directory of {database}: {e.strerror}",
                    hint="check the path and permissions in COALMINE_DATABASE_URL",
                ) from None
        engine = sa.create_engine(parsed)
    else:
        engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    store = SqlStore(engine)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
