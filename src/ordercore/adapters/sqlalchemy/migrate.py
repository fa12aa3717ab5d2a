"""Run the Alembic migrations shipped inside the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

__all__ = ["current_revision", "head_revision", "upgrade"]

SCRIPT_LOCATION = "ordercore.adapters.sqlalchemy:migrations"


def _config(prefix: str, schema: str | None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["prefix"] = prefix
    config.attributes["schema"] = schema
    return config


def upgrade(
    engine: Engine, *, prefix: str = "", schema: str | None = None, revision: str = "head"
) -> None:
    """Bring the database up to ``revision`` (the newest by default)."""
    config = _config(prefix, schema)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config("", None)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine, *, prefix: str = "", schema: str | None = None) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": f"{prefix}ordercore_alembic_version",
                "version_table_schema": schema,
            },
        )
        return context.get_current_revision()
