"""The Alembic migrations shipped in the package build exactly the schema the code declares,
on every backend, with or without a table prefix (and in a schema on PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from helpers import Backend, FakeClock, snapshot
from ordercore import Actor, OrderCore
from ordercore.adapters.sqlalchemy import build_tables
from ordercore.adapters.sqlalchemy.migrate import _config, current_revision, head_revision

PREFIXES = [pytest.param("", id="no-prefix"), pytest.param("oc_", id="prefix")]


def _table_names(engine: Engine, schema: str | None) -> set[str]:
    return set(inspect(engine).get_table_names(schema=schema))


def _version_table(core: OrderCore, schema: str | None) -> str:
    """The name of alembic's version table, which the migrations add beside the declared
    tables (prefixed like them)."""
    declared = {t.name for t in core.tables.metadata.sorted_tables}
    (name,) = _table_names(core.engine, schema) - declared
    assert name.startswith(core.settings.table_prefix)
    assert name.endswith("alembic_version")
    return name


def _differences(backend: Backend, core: OrderCore) -> list[Any]:
    """What alembic's autogenerate finds between the migrated database and the tables the
    code declares (an empty list when they agree)."""
    schema = backend.schema
    version_table = _version_table(core, schema)

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        # On PostgreSQL look at this test's schema only (the server holds other tests' too).
        return type_ != "schema" or name == schema

    # ``plain_url``: with the URL's search_path, this test's schema would be the default one,
    # which autogenerate reports as schema None while the metadata names it explicitly.
    engine = backend.plain_engine()
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_schemas": schema is not None,
                "include_name": include_name,
                "version_table": version_table,
                "version_table_schema": schema,
            },
        )
        return list(compare_metadata(context, core.tables.metadata))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_upgrade_from_empty_builds_the_declared_schema(
    backend: Backend, clock: FakeClock, prefix: str
) -> None:
    """From an empty database (schema on PostgreSQL), the migrations create every table of
    build_tables() and alembic's compare_metadata then finds nothing to change: every
    column (type, nullability, default), index, unique constraint and foreign key the code
    declares is what the migrations created. Nothing is filtered out as noise."""
    core = backend.core(clock, upgrade=False, table_prefix=prefix)
    assert _table_names(core.engine, backend.schema) == set()
    assert current_revision(core.engine, prefix=prefix, schema=backend.schema) is None

    core.upgrade()

    declared = {t.name for t in build_tables(prefix, backend.schema).metadata.sorted_tables}
    assert declared == {t.name for t in core.tables.metadata.sorted_tables}
    assert all(name.startswith(prefix) for name in declared)
    assert declared <= _table_names(core.engine, backend.schema)
    assert _table_names(core.engine, backend.schema) - declared == {
        _version_table(core, backend.schema)
    }
    assert current_revision(core.engine, prefix=prefix, schema=backend.schema) == head_revision()
    assert _differences(backend, core) == []


def test_upgrade_twice_is_a_no_op(backend: Backend, clock: FakeClock, actor: Actor) -> None:
    core = backend.core(clock, upgrade=False)
    core.upgrade()
    customer = core.customers.add(name="Kept", email="kept@example.com", actor=actor)
    tables_before = _table_names(core.engine, backend.schema)
    rows_before = snapshot(core)

    core.upgrade()
    core.upgrade()

    assert _table_names(core.engine, backend.schema) == tables_before
    assert snapshot(core) == rows_before
    assert current_revision(core.engine, schema=backend.schema) == head_revision()
    assert core.customers.list() == [customer]
    assert core.audit.verify().ok
    assert _differences(backend, core) == []


def test_downgrade_to_base_and_back(backend: Backend, clock: FakeClock) -> None:
    """The migrations' downgrades undo them completely, and upgrading again is clean."""
    core = backend.core(clock, upgrade=False, table_prefix="oc_")
    core.upgrade()
    version_table = _version_table(core, backend.schema)
    config = _config("oc_", backend.schema)
    with core.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert _table_names(core.engine, backend.schema) == {version_table}
    assert current_revision(core.engine, prefix="oc_", schema=backend.schema) is None

    core.upgrade()
    assert current_revision(core.engine, prefix="oc_", schema=backend.schema) == head_revision()
    assert _differences(backend, core) == []
    assert core.audit.verify().ok
