"""Engine creation with the settings ordercore relies on for each backend."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

__all__ = ["make_engine"]


def make_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float | None = None,
    **kwargs: Any,
) -> Engine:
    """Create an engine for ``url``.

    ``pool_size``, ``max_overflow`` and ``pool_timeout`` (seconds to wait for a connection)
    size the connection pool (``Settings.pool_*``); ignored for an in-memory SQLite
    database, which has one connection per thread.

    SQLite gets foreign keys, WAL for files, a busy timeout, and ``BEGIN IMMEDIATE`` for every
    transaction, so that two writers queue up instead of failing halfway (SQLite has no row
    locks: the write lock is taken when the transaction starts) — except on a connection
    with the execution option ``ordercore_read_only=True``, which only reads: it begins
    DEFERRED, and in WAL mode reads one snapshot without holding up any writer (a long
    export). PostgreSQL and MariaDB use
    READ COMMITTED with explicit row locks where ordercore needs them.
    """
    parsed = make_url(url)
    memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
    if not memory:
        for key, value in (
            ("pool_size", pool_size),
            ("max_overflow", max_overflow),
            ("pool_timeout", pool_timeout),
        ):
            if value is not None:
                kwargs.setdefault(key, value)
    if parsed.get_backend_name() == "sqlite":
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", 30)
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            if conn.get_execution_options().get("ordercore_read_only"):
                conn.exec_driver_sql("BEGIN DEFERRED")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql" or parsed.get_backend_name() in (
        "mysql",
        "mariadb",
    ):
        kwargs.setdefault("isolation_level", "READ COMMITTED")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)
