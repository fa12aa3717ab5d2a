"""One read-only snapshot, for the readers of the reporting engine (statistics, exports)."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

from sqlalchemy import Connection, Engine

from .engine import READ_ONLY
from .tables import Tables

__all__ = ["ReadSnapshot"]

S = TypeVar("S", bound="ReadSnapshot")


class ReadSnapshot:
    """``with Reader(engine, tables) as r: ...``: one transaction that only reads, all its
    queries seeing the same data. PostgreSQL and MariaDB: ``REPEATABLE READ, READ ONLY``;
    SQLite: a deferred ``BEGIN`` (the :data:`.engine.READ_ONLY` option), which in WAL mode
    reads one snapshot without taking the write lock. Nothing is committed."""

    conn: Connection

    def __init__(self, engine: Engine, tables: Tables) -> None:
        self.engine = engine
        self.tables = tables

    def __enter__(self: S) -> S:
        conn = self.engine.connect()
        conn.execution_options(**{READ_ONLY: True})
        try:
            if conn.dialect.name in ("postgresql", "mysql", "mariadb"):
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()
