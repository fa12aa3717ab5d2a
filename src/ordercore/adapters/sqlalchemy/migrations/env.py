"""Alembic environment for ordercore's shipped migrations.

Run through :func:`ordercore.adapters.sqlalchemy.migrate.upgrade` (``ordercore db upgrade``),
which passes the connection, the table prefix and the schema in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
prefix: str = config.attributes.get("prefix", "")
schema: str | None = config.attributes.get("schema")

context.configure(
    connection=connection,
    version_table=f"{prefix}ordercore_alembic_version",
    version_table_schema=schema,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations(prefix=prefix, schema=schema)
