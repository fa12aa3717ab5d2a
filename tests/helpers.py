"""Helpers shared by the test suites: a controllable clock, the database a test runs on, and
ways to look at the stored rows directly (bypassing ordercore)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Table, create_engine, func, select, text

from ordercore import OrderCore, Settings
from ordercore.adapters.sqlalchemy import make_engine

__all__ = [
    "BACKENDS",
    "SERVER_BACKENDS",
    "START",
    "Backend",
    "FakeClock",
    "audit_rows",
    "ci_requires_databases",
    "count_rows",
    "quoted",
    "snapshot",
]

#: The backends the ``backend`` fixture (and so ``database_url`` and ``core``) runs on.
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]
#: The database servers only, for tests that need concurrent transactions:
#: ``@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)``.
SERVER_BACKENDS = BACKENDS[1:]

#: The fake clock's start: a time with microseconds, so that losing them shows.
START = datetime(2026, 11, 24, 8, 30, 15, 123456, tzinfo=timezone.utc)


class FakeClock:
    """A clock the test moves by hand: ``clock()`` returns ``clock.now``."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> datetime:
        with self._lock:
            self.now = self.now + timedelta(seconds=seconds)
            return self.now


def ci_requires_databases() -> bool:
    """True under CI (env ``CI`` set to anything but empty/0/false): a missing database
    server is then a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass
class Backend:
    """The isolated database one test runs on.

    ``url`` is self-contained: on PostgreSQL it carries ``search_path`` set to the test's own
    schema, on MariaDB it names the test's own database, on SQLite it is a file in the test's
    ``tmp_path``. ``schema`` is that PostgreSQL schema (None elsewhere); ordercore gets it
    as ``Settings.schema``. ``plain_url`` reaches the same database without the search path
    (its default schema is the server's, e.g. ``public``).
    """

    name: str
    url: str
    plain_url: str
    schema: str | None = None
    #: Fills the empty database with a copy of one migrated once per session (MariaDB only,
    #: see conftest); ``core()`` uses it instead of migrating when it can.
    clone_migrated: Callable[[], None] | None = field(default=None, repr=False)
    _engines: list[Engine] = field(default_factory=list, repr=False)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": self.url, "schema": self.schema}
        values.update(overrides)
        return Settings(**values)

    def core(
        self, clock: FakeClock | None = None, *, upgrade: bool = True, **settings: Any
    ) -> OrderCore:
        """A new OrderCore on this database (disposed when the test ends), upgraded with
        ``core.upgrade()`` unless ``upgrade=False``. Tests of the migrations themselves pass
        ``upgrade=False`` and call ``core.upgrade()``: this may start from a copy of a
        migrated database (then ``core.upgrade()`` has nothing left to do)."""
        engine = make_engine(self.url)
        self._engines.append(engine)
        core = OrderCore(engine, self.settings(**settings), clock=clock or FakeClock())
        if upgrade:
            if self.clone_migrated is not None and not core.settings.table_prefix:
                self.clone_migrated()
                self.clone_migrated = None
            core.upgrade()
        return core

    def plain_engine(self) -> Engine:
        engine = create_engine(self.plain_url)
        self._engines.append(engine)
        return engine

    def dispose(self) -> None:
        for engine in self._engines:
            engine.dispose()
        self._engines.clear()


def quoted(core: OrderCore, table: Table) -> str:
    """The table's name as the backend's SQL wants it (schema-qualified, quoted if needed)."""
    return core.engine.dialect.identifier_preparer.format_table(table)


def count_rows(core: OrderCore, table: Table) -> int:
    with core.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _rows(conn: Connection, table: Table) -> list[tuple[Any, ...]]:
    order = list(table.primary_key.columns) or list(table.columns)
    return [tuple(r) for r in conn.execute(select(table).order_by(*order))]


def snapshot(core: OrderCore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ordercore table, to compare the database before and after — after
    sealing pending audit entries, so that every record is in the chain when compared."""
    core.audit.seal_all()
    with core.engine.connect() as conn:
        return {t.name: _rows(conn, t) for t in core.tables.metadata.sorted_tables}


def audit_rows(core: OrderCore) -> list[dict[str, Any]]:
    """The audit log as stored, in ``seq`` order, read with plain SQL — after sealing what is
    pending (writes queue their entries; the job runner links them into the chain)."""
    core.audit.seal_all()
    t = core.tables.audit_log
    with core.engine.connect() as conn:
        result = conn.execute(text(f"SELECT * FROM {quoted(core, t)} ORDER BY seq"))
        return [dict(r._mapping) for r in result]
