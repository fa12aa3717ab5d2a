"""Engine creation with the settings ordercore relies on for each backend."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

__all__ = ["PING_IDLE_SECONDS", "READ_ONLY", "RECYCLE_SECONDS", "make_engine"]

#: The execution option of a connection that only reads (``conn.execution_options(**{READ_ONLY:
#: True})``): on SQLite its transactions start with a plain ``BEGIN``, not ``BEGIN IMMEDIATE``,
#: so a long report does not hold the write lock.
READ_ONLY = "ordercore_read_only"

#: A pooled connection that sat unused longer than this is pinged before it is handed out.
PING_IDLE_SECONDS = 5.0
#: Pooled connections are replaced after this long (below MariaDB's default
#: ``wait_timeout`` of 8 hours and typical proxies' idle limits).
RECYCLE_SECONDS = 1800
_IDLE_SINCE = "ordercore.idle_since"


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
    locks: the write lock is taken when the transaction starts) — except on a connection with
    the :data:`READ_ONLY` execution option (statistics, exports): it begins DEFERRED and, in
    WAL mode, reads one snapshot without holding up any writer. PostgreSQL and MariaDB use
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
            # On the driver's connection: nothing of SQLAlchemy's execution path is needed.
            # A reader (statistics, exports: READ_ONLY) takes no write lock: with WAL it
            # reads one snapshot while writers go on.
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.connection.driver_connection.execute(
                "BEGIN" if read_only else "BEGIN IMMEDIATE"
            )

        return engine
    if parsed.get_backend_name() == "postgresql" or parsed.get_backend_name() in (
        "mysql",
        "mariadb",
    ):
        kwargs.setdefault("isolation_level", "READ COMMITTED")
    kwargs.setdefault("pool_recycle", RECYCLE_SECONDS)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_suspect(engine)
    return engine


def _ping_when_suspect(engine: Engine) -> None:
    """Check a pooled connection's health only when there is a reason to doubt it.

    ``pool_pre_ping`` costs a round trip on every checkout — one per transaction. Here a
    connection is pinged only when it sat idle in the pool for more than
    :data:`PING_IDLE_SECONDS` (where a server restart, a failover or an idle timeout would have
    killed it), or when a disconnect was seen since it was last used. A dead connection found
    that way is replaced before anyone gets it; a connection that dies while in use fails that
    one transaction (rolled back, nothing half-written), and SQLAlchemy then drops every pooled
    connection older than the failure. Connections are also recycled after
    :data:`RECYCLE_SECONDS`. Pass ``pool_pre_ping=True`` to :func:`make_engine` to ping on
    every checkout instead.
    """
    disconnects = [0.0]  # monotonic time of the last disconnect seen

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        if context.is_disconnect:
            disconnects[0] = time.monotonic()

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None:
            return  # a new connection
        if time.monotonic() - since < PING_IDLE_SECONDS and since > disconnects[0]:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # outside any transaction
        except Exception as error:
            # The pool discards this connection and hands out a new one.
            raise exc.DisconnectionError(f"stale pooled connection: {error}") from error
