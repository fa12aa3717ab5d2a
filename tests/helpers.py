"""Helpers shared by the test suites: a controllable clock, the database a test runs on, and
ways to look at the stored rows directly (bypassing ordercore)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
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


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite database consistently (its WAL included) with the backup API."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def ci_requires_databases() -> bool:
    """True under CI (env ``CI`` set to anything but empty/0/false): a missing database
    server is then a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class Backend:
    """The isolated database one test runs on.

    ``url`` is self-contained: on PostgreSQL it carries ``search_path`` set to the test's own
    schema, on MariaDB it names the test's own database, on SQLite it is a file in the test's
    ``tmp_path``. ``schema`` is that PostgreSQL schema (None elsewhere); ordercore gets it
    as ``Settings.schema``. ``plain_url`` reaches the same database without the search path
    (its default schema is the server's, e.g. ``public``).

    ``migrated``: the database already holds ordercore's tables, migrated to the head
    revision and empty but for what the migrations insert; ``core()`` does not upgrade it.
    ``fill_migrated(backend)`` (see conftest) gives a still empty database migrated tables
    faster than migrating; ``core()`` calls it instead of ``core.upgrade()`` when it can. It
    may :meth:`rebind` the backend to another, migrated database as long as nothing outside
    has seen where this one is (``exposed``: ``url``, ``plain_url``, ``schema`` or
    ``settings()`` read).
    """

    def __init__(
        self,
        name: str,
        url: str,
        plain_url: str,
        schema: str | None = None,
        *,
        migrated: bool = False,
        fill_migrated: Callable[[Backend], None] | None = None,
    ) -> None:
        self.name = name
        self._url, self._plain_url, self._schema = url, plain_url, schema
        self.migrated = migrated
        self.fill_migrated = fill_migrated
        self.exposed = False
        self._engines: list[Engine] = []

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, {self._url!r})"

    @property
    def url(self) -> str:
        self.exposed = True
        return self._url

    @property
    def plain_url(self) -> str:
        self.exposed = True
        return self._plain_url

    @property
    def schema(self) -> str | None:
        self.exposed = True
        return self._schema

    def rebind(self, url: str, plain_url: str, schema: str | None) -> None:
        """Point this backend at another database (before anything outside has seen it)."""
        assert not self.exposed, "the database was already seen"
        assert not self._engines, "the database was already in use"
        self._url, self._plain_url, self._schema = url, plain_url, schema

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": self.url, "schema": self.schema}
        values.update(overrides)
        return Settings(**values)

    def core(
        self, clock: FakeClock | None = None, *, upgrade: bool = True, **settings: Any
    ) -> OrderCore:
        """A new OrderCore on this database (disposed when the test ends), upgraded with
        ``core.upgrade()`` unless ``upgrade=False``. Tests of the migrations themselves pass
        ``upgrade=False`` (or a ``table_prefix``) and call ``core.upgrade()``: they start
        from an empty database unless an earlier ``core()`` of the test filled it."""
        plain = upgrade and not settings.get("table_prefix")
        if plain and not self.migrated and self.fill_migrated is not None:
            self.fill_migrated(self)
            self.migrated = True
        if not plain:
            self.fill_migrated = None  # the test builds its own tables
        engine = make_engine(self.url)
        self._engines.append(engine)
        core = OrderCore(engine, self.settings(**settings), clock=clock or FakeClock())
        if upgrade and not (plain and self.migrated):
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
