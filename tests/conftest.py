"""Fixtures shared by every test suite.

Database tests take ``database_url`` (or ``backend`` / ``core``), which runs them once per
backend: SQLite always, PostgreSQL when ``ORDERCORE_TEST_POSTGRESQL_URL`` is set, MariaDB/MySQL
when ``ORDERCORE_TEST_MYSQL_URL`` is set. A backend whose variable is missing is skipped —
except under CI (env ``CI`` set), where that is a failure: CI must never go green by skipping
a database.

Every test gets a database of its own, so that the suite runs in parallel (``-n auto``) and no
test sees another's rows: a SQLite file in ``tmp_path``, a schema of its own on PostgreSQL
(passed to ordercore as ``Settings.schema`` and put on the URL's ``search_path``), a database
of its own on MariaDB.

Migrating takes longer than most tests (about 0.8 s of Alembic on SQLite, 1.5-2 s of DDL on
PostgreSQL and MariaDB, and as much again for the DROP), so a test whose database is to be
migrated (it asks for ``core``, or calls ``backend.core()``) gets migrated tables made
otherwise: on SQLite a copy of a file migrated once per session (per xdist worker); on a
server, a schema or database that an earlier test of the same worker left behind, emptied
(every row deleted, the rows the migrations insert put back, sequences and AUTO_INCREMENT
counters reset) and checked to have exactly the migrated structure, else dropped. A test that
asks for neither gets an empty database, as before, and one that migrates it itself
(``backend.core(upgrade=False)``, a table prefix) builds its own tables. The migrations
themselves run from empty in test_migrations.py, where compare_metadata checks the result.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url

from helpers import BACKENDS, Backend, FakeClock, ci_requires_databases, copy_sqlite
from ordercore import Actor, Customer, Money, OrderCore, Product

ENV_VARS = {
    "postgresql": "ORDERCORE_TEST_POSTGRESQL_URL",
    "mysql": "ORDERCORE_TEST_MYSQL_URL",
}


def _server_url(name: str) -> str:
    var = ENV_VARS[name]
    url = os.environ.get(var, "").strip()
    if url:
        return url
    message = f"{name} tests need a server: set {var} (e.g. {_example(name)})"
    if ci_requires_databases():
        pytest.fail(f"{message}. Under CI a missing database is a failure, never a skip.")
    pytest.skip(message)


def _example(name: str) -> str:
    if name == "postgresql":
        return "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    return "mysql+pymysql://root@127.0.0.1:3306/test"


def _isolated_name() -> str:
    return f"oc_{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------ SQLite
@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session (per xdist worker), which tests copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "migrated.db"
    url = f"sqlite:///{path}"
    template = Backend("sqlite", url, url)
    try:
        template.core()
    finally:
        template.dispose()
    return path


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite database consistently (its WAL included) with the backup API."""
    if target.exists() and target.stat().st_size:
        raise RuntimeError(f"{target} is not empty: it cannot take a migrated copy")
    copy_sqlite(source, target)


# ------------------------------------------------------------------------ servers
@dataclass
class _Migrated:
    """What a freshly migrated schema/database holds, to restore and check one a test used."""

    tables: list[str]  # every base table, children before parents (for DELETE)
    version_table: str
    version: list[Any]
    seeds: dict[str, tuple[list[str], list[tuple[Any, ...]]]]  # table: columns, rows
    structure: str  # the fingerprint of the structure, the container's name left out
    counters: dict[str, Any]  # PostgreSQL: sequence -> (value, is_called); MariaDB: AUTO_INCREMENT


@dataclass
class _Server:
    """The schemas (PostgreSQL) or databases (MariaDB) of one server on one xdist worker:
    ``pool`` holds migrated, emptied ones, ready for the next test."""

    name: str
    server_url: str
    admin: Engine
    migrated: _Migrated | None = None
    pool: list[str] = field(default_factory=list)
    made: set[str] = field(default_factory=set)
    #: Why the last used database was dropped instead of reused (for a failing test to say).
    last_refusal: str | None = None

    @property
    def postgresql(self) -> bool:
        return self.name == "postgresql"

    def quote(self, *names: str) -> str:
        q = '"{}"' if self.postgresql else "`{}`"
        return ".".join(q.format(n) for n in names)

    def address(self, container: str) -> tuple[str, str, str | None]:
        """The ``url``, ``plain_url`` and ``schema`` of a backend on ``container``."""
        server = make_url(self.server_url)
        if self.postgresql:
            # synchronous_commit off: a commit does not wait for the WAL to reach the disk
            # (what a crash of the server would lose does not matter to a test)
            options = {"options": f"-csearch_path={container} -csynchronous_commit=off"}
            url = server.update_query_dict(options).render_as_string(hide_password=False)
            return url, self.server_url, container
        url = server.set(database=container).render_as_string(hide_password=False)
        return url, url, None

    def create(self) -> str:
        container = _isolated_name()
        with self.admin.connect() as conn:
            if self.postgresql:
                conn.exec_driver_sql(f"CREATE SCHEMA {self.quote(container)}")
            else:
                conn.exec_driver_sql(
                    f"CREATE DATABASE {self.quote(container)} CHARACTER SET utf8mb4"
                )
        self.made.add(container)
        return container

    def drop(self, container: str) -> None:
        with self.admin.connect() as conn:
            if self.postgresql:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.quote(container)} CASCADE")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.quote(container)}")
        self.made.discard(container)

    # -- a migrated container for a test
    def take(self) -> str:
        """A migrated, empty container: from the pool, or migrated now."""
        if self.pool:
            return self.pool.pop()
        container = self.create()
        backend = Backend(self.name, *self.address(container))
        try:
            core = backend.core()
            if self.migrated is None:
                with self.admin.connect() as conn:
                    self.migrated = self._describe(conn, container, core)
        finally:
            backend.dispose()
        return container

    def fill(self, backend: Backend, held: list[str]) -> None:
        """Give ``backend``, on the empty container ``held[0]``, migrated tables: point it
        at a migrated container instead when nothing has seen where it is, else move the
        tables of one into it."""
        empty, source = held[0], self.take()
        if not backend.exposed:
            backend.rebind(*self.address(source))
            held[0] = source
            self.drop(empty)
            return
        with self.admin.connect() as conn:
            if self.postgresql:
                conn.exec_driver_sql(f"DROP SCHEMA {self.quote(empty)}")
                conn.exec_driver_sql(
                    f"ALTER SCHEMA {self.quote(source)} RENAME TO {self.quote(empty)}"
                )
            else:
                assert self.migrated is not None
                tables = [*self.migrated.tables, self.migrated.version_table]
                moves = ", ".join(
                    f"{self.quote(source, t)} TO {self.quote(empty, t)}" for t in tables
                )
                conn.exec_driver_sql(f"RENAME TABLE {moves}")
                conn.exec_driver_sql(f"DROP DATABASE {self.quote(source)}")
        self.made.discard(source)

    def release(self, container: str, migrated: bool) -> None:
        """After the test: back to the pool if it can be emptied to exactly what the
        migrations left, else dropped."""
        if migrated and self.migrated is not None:
            try:
                with self.admin.connect() as conn:
                    clean = self._reset(conn, container, self.migrated)
                if not clean:
                    with self.admin.connect() as conn:
                        now = set(self._structure(conn, container).splitlines())
                    was = set(self.migrated.structure.splitlines())
                    self.last_refusal = (
                        f"{container}: its structure is not the migrated one: "
                        f"new {sorted(now - was)[:5]}, gone {sorted(was - now)[:5]}"
                    )
            except Exception as exc:  # a lock the test left, a table it dropped: drop it all
                self.last_refusal = f"{container}: {type(exc).__name__}: {exc}"
                clean = False
            if clean:
                self.pool.append(container)
                return
        self.drop(container)

    # -- describing and resetting
    def _describe(self, conn: Connection, container: str, core: OrderCore) -> _Migrated:
        declared = [t.name for t in reversed(core.tables.metadata.sorted_tables)]
        present = self._tables(conn, container)
        (version_table,) = set(present) - set(declared)
        tables = [t for t in declared if t in present]
        seeds: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table in tables:
            result = conn.exec_driver_sql(f"SELECT * FROM {self.quote(container, table)}")
            rows = [tuple(r) for r in result]
            if rows:
                seeds[table] = (list(result.keys()), rows)
        return _Migrated(
            tables=tables,
            version_table=version_table,
            version=self._version(conn, container, version_table),
            seeds=seeds,
            structure=self._structure(conn, container),
            counters=self._counters(conn, container),
        )

    def _tables(self, conn: Connection, container: str) -> list[str]:
        if self.postgresql:
            sql = "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            sql += " WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'p')"
            return [r[0] for r in conn.exec_driver_sql(sql, {"s": container})]
        rows = conn.exec_driver_sql(f"SHOW FULL TABLES FROM {self.quote(container)}")
        return [r[0] for r in rows]

    def _version(self, conn: Connection, container: str, table: str) -> list[Any]:
        rows = conn.exec_driver_sql(f"SELECT * FROM {self.quote(container, table)}")
        return sorted(tuple(r) for r in rows)

    def _structure(self, conn: Connection, container: str) -> str:
        if self.postgresql:
            rows = [r[0] or "" for r in conn.exec_driver_sql(_PG_STRUCTURE, {"s": container})]
        else:
            rows = [
                f"{r[0]}:{r[1]}"
                for r in conn.exec_driver_sql(f"SHOW FULL TABLES FROM {self.quote(container)}")
            ]
            for table in sorted(r.split(":")[0] for r in rows):
                ddl = conn.exec_driver_sql(
                    f"SHOW CREATE TABLE {self.quote(container, table)}"
                ).one()[1]
                rows.append(_AUTO_INCREMENT.sub("", ddl))
        return "\n".join(sorted(rows)).replace(container, "~")

    def _counters(self, conn: Connection, container: str) -> dict[str, Any]:
        if self.postgresql:
            sql = "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            sql += " WHERE n.nspname = %(s)s AND c.relkind = 'S'"
            counters = {}
            for (seq,) in conn.exec_driver_sql(sql, {"s": container}).all():
                state = conn.exec_driver_sql(
                    f"SELECT last_value, is_called FROM {self.quote(container, seq)}"
                ).one()
                counters[seq] = tuple(state)
            return counters
        sql = "SELECT table_name, auto_increment FROM information_schema.tables"
        sql += " WHERE table_schema = %s AND auto_increment IS NOT NULL"
        return dict(conn.exec_driver_sql(sql, (container,)).all())

    def _reset(self, conn: Connection, container: str, migrated: _Migrated) -> bool:
        """Delete every row, put the migrations' rows back, reset the counters; True when the
        structure is still exactly the migrated one."""
        q = self.quote
        if self.postgresql:
            conn.exec_driver_sql("SET lock_timeout = '5s'")
        else:
            conn.exec_driver_sql("SET SESSION lock_wait_timeout = 5, innodb_lock_wait_timeout = 5")
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        try:
            if set(self._tables(conn, container)) != {*migrated.tables, migrated.version_table}:
                return False
            if self._version(conn, container, migrated.version_table) != migrated.version:
                return False
            if self._structure(conn, container) != migrated.structure:
                return False
            conn.exec_driver_sql("BEGIN")
            try:
                for table in migrated.tables:
                    conn.exec_driver_sql(f"DELETE FROM {q(container, table)}")
                for table, (columns, rows) in migrated.seeds.items():
                    names = ", ".join(q(c) for c in columns)
                    marks = ", ".join(["%s"] * len(columns))
                    conn.exec_driver_sql(
                        f"INSERT INTO {q(container, table)} ({names}) VALUES ({marks})", rows
                    )
                if self.postgresql:
                    for seq, (value, called) in migrated.counters.items():
                        conn.exec_driver_sql(
                            "SELECT setval(%s::regclass, %s, %s)",
                            (q(container, seq), value, called),
                        )
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
            if not self.postgresql:
                now = self._counters(conn, container)
                for table, value in migrated.counters.items():
                    if now.get(table) != value:
                        conn.exec_driver_sql(
                            f"ALTER TABLE {q(container, table)} AUTO_INCREMENT = {int(value)}"
                        )
                if self._counters(conn, container) != migrated.counters:
                    return False
            return True
        finally:
            if self.postgresql:
                conn.exec_driver_sql("SET lock_timeout = DEFAULT")
            else:
                conn.exec_driver_sql("SET SESSION foreign_key_checks = 1")
                conn.exec_driver_sql(
                    "SET SESSION lock_wait_timeout = DEFAULT, innodb_lock_wait_timeout = DEFAULT"
                )


#: PostgreSQL: every relation, column (type, nullability, default, privileges), constraint,
#: index, trigger (enabled or not) and function of a schema, one line each.
_PG_STRUCTURE = """
SELECT 'c ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(a.attname, '') || ' '
       || coalesce(format_type(a.atttypid, a.atttypmod), '') || ' '
       || coalesce(a.attnotnull::text, '') || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
       || ' ' || coalesce(c.relacl::text, '') || ' ' || coalesce(a.attacl::text, '')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = %(s)s
UNION ALL
SELECT 'k ' || r.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_namespace n ON n.oid = k.connamespace
LEFT JOIN pg_class r ON r.oid = k.conrelid
WHERE n.nspname = %(s)s
UNION ALL
SELECT 'i ' || indexdef FROM pg_indexes WHERE schemaname = %(s)s
UNION ALL
SELECT 't ' || t.tgname || ' ' || c.relname || ' ' || t.tgenabled::text
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(s)s AND NOT t.tgisinternal
UNION ALL
SELECT 'f ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(s)s
"""
_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")


@pytest.fixture(scope="session")
def _servers() -> Iterator[dict[str, _Server]]:
    """Per server: one autocommit engine to create, reset and drop the per-test schemas or
    databases, and the pool of migrated ones."""
    servers: dict[str, _Server] = {}
    yield servers
    for server in servers.values():
        for container in [*server.pool, *server.made]:
            server.drop(container)
        server.admin.dispose()


def _server(servers: dict[str, _Server], name: str) -> _Server:
    if name not in servers:
        url = _server_url(name)
        admin = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        servers[name] = _Server(name, url, admin)
    return servers[name]


@pytest.fixture(params=[p for p in BACKENDS if p.id != "sqlite"])
def database_server(request: pytest.FixtureRequest, _servers: dict[str, _Server]) -> _Server:
    """The per-worker state of one database server (its pool of migrated, emptied schemas
    or databases), for the tests of this very mechanism."""
    return _server(_servers, request.param)


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    _servers: dict[str, _Server],
) -> Iterator[Backend]:
    """A database of this test's own, on each backend (see the module docstring): already
    migrated when the test asks for ``core``, else empty until ``backend.core()``."""
    name: str = request.param
    if name == "sqlite":
        path = tmp_path / "ordercore.db"
        url = f"sqlite:///{path}"
        template: Path = request.getfixturevalue("_sqlite_template")
        backend = Backend(name, url, url, fill_migrated=lambda _: _copy_sqlite(template, path))
        yield backend
        backend.dispose()
        return

    server = _server(_servers, name)
    if "core" in request.fixturenames:  # it will be migrated before the test starts
        held = [server.take()]
        backend = Backend(name, *server.address(held[0]), migrated=True)
    else:
        held = [server.create()]
        backend = Backend(
            name, *server.address(held[0]), fill_migrated=lambda b: server.fill(b, held)
        )
    try:
        yield backend
    finally:
        backend.dispose()
        server.release(held[0], backend.migrated)


@pytest.fixture
def database_url(backend: Backend) -> str:
    """The URL of this test's own, empty database (parametrised over the backends)."""
    return backend.url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core(backend: Backend, clock: FakeClock) -> OrderCore:
    """An upgraded OrderCore on this test's database, on the test's ``clock``."""
    return backend.core(clock)


@pytest.fixture
def actor() -> Actor:
    return Actor.operator("alice", "admin")


@pytest.fixture
def make_customer(core: OrderCore, actor: Actor) -> Callable[..., Customer]:
    """``make_customer(**overrides)`` adds a customer with unique defaults."""
    counter = itertools.count(1)

    def build(**overrides: Any) -> Customer:
        n = next(counter)
        values: dict[str, Any] = {
            "name": f"Customer {n}",
            "email": f"customer{n}@example.com",
            "actor": actor,
        }
        values.update(overrides)
        return core.customers.add(**values)

    return build


@pytest.fixture
def make_product(core: OrderCore, actor: Actor) -> Callable[..., Product]:
    """``make_product(**overrides)`` adds a product (30.00 CNY, unlimited stock) with a
    unique sku."""
    counter = itertools.count(1)

    def build(**overrides: Any) -> Product:
        n = next(counter)
        values: dict[str, Any] = {
            "sku": f"plan-{n}",
            "name": f"Plan {n}",
            "price": Money.of("30.00", "CNY"),
            "specs": {"duration_days": 30},
            "actor": actor,
        }
        values.update(overrides)
        return core.products.add(**values)

    return build
