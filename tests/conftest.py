"""Fixtures shared by every test suite.

Database tests take ``database_url`` (or ``backend`` / ``core``), which runs them once per
backend: SQLite always, PostgreSQL when ``ORDERCORE_TEST_POSTGRESQL_URL`` is set, MariaDB/MySQL
when ``ORDERCORE_TEST_MYSQL_URL`` is set. A backend whose variable is missing is skipped —
except under CI (env ``CI`` set), where that is a failure: CI must never go green by skipping
a database.

Every test gets a database of its own, so that the suite runs in parallel (``-n auto``) and no
test sees another's rows: a SQLite file in ``tmp_path``, a fresh schema on PostgreSQL (passed
to ordercore as ``Settings.schema`` and put on the URL's ``search_path``), a fresh database on
MariaDB. Each is dropped when the test ends.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from helpers import BACKENDS, Backend, FakeClock, ci_requires_databases
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


@pytest.fixture(scope="session")
def _admin_engines() -> Iterator[dict[str, Engine]]:
    """One autocommit engine per server, to create and drop the per-test schemas/databases."""
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


def _admin(engines: dict[str, Engine], name: str, url: str) -> Engine:
    if name not in engines:
        engines[name] = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    return engines[name]


def _isolated_name() -> str:
    return f"oc_{uuid.uuid4().hex[:12]}"


class _MySQLTemplate:
    """A database migrated once per test session (per xdist worker) with ``core.upgrade()``,
    which each test's fresh database copies (``SHOW CREATE TABLE`` replayed, seed rows
    copied): MariaDB spends ~0.1 s on every DDL statement, so migrating per test would
    triple the suite's time. The migrations themselves run from empty in
    test_migrations.py, where compare_metadata checks the result."""

    def __init__(self, admin: Engine, server_url: str) -> None:
        self.admin = admin
        self.server_url = server_url
        self.name: str | None = None
        self.tables: list[str] = []
        self.ddl: list[str] = []

    def _build(self) -> str:
        name = _isolated_name()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.name = name
        url = make_url(self.server_url).set(database=name).render_as_string(hide_password=False)
        template = Backend("mysql", url, url)
        try:
            template.core()  # runs core.upgrade()
        finally:
            template.dispose()
        with self.admin.connect() as conn:
            self.tables = [
                row[0]
                for row in conn.exec_driver_sql(
                    f"SHOW FULL TABLES FROM `{name}` WHERE Table_type = 'BASE TABLE'"
                )
            ]
            self.ddl = [
                conn.exec_driver_sql(f"SHOW CREATE TABLE `{name}`.`{t}`").one()[1]
                for t in self.tables
            ]
        return name

    def clone_into(self, database: str) -> None:
        source = self.name or self._build()
        with self.admin.connect() as conn:
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            try:
                conn.exec_driver_sql(f"USE `{database}`")
                for ddl in self.ddl:
                    conn.exec_driver_sql(ddl)
                for table in self.tables:
                    conn.exec_driver_sql(
                        f"INSERT INTO `{database}`.`{table}` SELECT * FROM `{source}`.`{table}`"
                    )
            finally:
                conn.exec_driver_sql("SET SESSION foreign_key_checks = 1")
                default = make_url(self.server_url).database
                if default:
                    conn.exec_driver_sql(f"USE `{default}`")

    def drop(self) -> None:
        if self.name:
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{self.name}`")


@pytest.fixture(scope="session")
def _templates(_admin_engines: dict[str, Engine]) -> Iterator[dict[str, _MySQLTemplate]]:
    templates: dict[str, _MySQLTemplate] = {}
    yield templates
    for template in templates.values():
        template.drop()


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    _admin_engines: dict[str, Engine],
    _templates: dict[str, _MySQLTemplate],
) -> Iterator[Backend]:
    """An empty database of this test's own, on each backend (see the module docstring)."""
    name: str = request.param
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'ordercore.db'}"
        backend = Backend(name, url, url)
        yield backend
        backend.dispose()
        return

    server = _server_url(name)
    admin = _admin(_admin_engines, name, server)
    isolated = _isolated_name()
    if name == "postgresql":
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{isolated}"'))
        url = (
            make_url(server)
            .update_query_dict({"options": f"-csearch_path={isolated}"})
            .render_as_string(hide_password=False)
        )
        backend = Backend(name, url, server, schema=isolated)
        drop = f'DROP SCHEMA IF EXISTS "{isolated}" CASCADE'
    else:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{isolated}` CHARACTER SET utf8mb4"))
        url = make_url(server).set(database=isolated).render_as_string(hide_password=False)
        template = _templates.setdefault(name, _MySQLTemplate(admin, server))
        backend = Backend(name, url, url, clone_migrated=lambda: template.clone_into(isolated))
        drop = f"DROP DATABASE IF EXISTS `{isolated}`"
    try:
        yield backend
    finally:
        backend.dispose()
        with admin.connect() as conn:
            conn.execute(text(drop))


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
