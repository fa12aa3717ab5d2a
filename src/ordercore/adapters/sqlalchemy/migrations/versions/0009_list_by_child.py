"""The order list by sku and by flag: each order line and each flag carries a copy of its
order's ``created_at`` (``order_created_at``, which never changes), and the sku and flag
indexes become ``(sku, order_created_at, order_id, position)`` and ``(tag, order_created_at,
order_id)``, so that a page of the list filtered by a sku or a flag walks one of them in list
order (docs/performance.md, "The order list").

The copy is backfilled in batches of :data:`BATCH` rows (lines by id, flags by order id) with
a correlated subquery that SQLite, PostgreSQL and MariaDB all run, before the column becomes
NOT NULL. ``ordercore db upgrade`` runs every migration in one transaction: the batches keep
each statement (and MariaDB's undo log per statement) small, not the transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: Rows updated by one statement of the backfill.
BATCH = 20_000

#: (table, key the backfill batches by, old index and its columns, new index and its columns)
_TABLES = (
    (
        "order_lines",
        "id",
        ("ix_order_lines_sku", ["sku", "order_id"]),
        ("ix_order_lines_sku_created", ["sku", "order_created_at", "order_id", "position"]),
    ),
    (
        "order_tags",
        "order_id",
        ("ix_order_tags_tag", ["tag", "order_id"]),
        ("ix_order_tags_tag_created", ["tag", "order_created_at", "order_id"]),
    ),
)


def _backfill(prefix: str, schema: str | None, table: str, key: str) -> None:
    conn = op.get_bind()
    orders = sa.table(f"{prefix}orders", sa.column("id"), sa.column("created_at"), schema=schema)
    child = sa.table(
        f"{prefix}{table}",
        sa.column(key),
        sa.column("order_id"),
        sa.column("order_created_at"),
        schema=schema,
    )
    low, high = conn.execute(sa.select(sa.func.min(child.c[key]), sa.func.max(child.c[key]))).one()
    if low is None:
        return
    created = (
        sa.select(orders.c.created_at).where(orders.c.id == child.c.order_id).scalar_subquery()
    )
    start = int(low)
    while start <= int(high):
        conn.execute(
            sa.update(child)
            .where(child.c[key] >= start, child.c[key] < start + BATCH)
            .values(order_created_at=created)
        )
        start += BATCH


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    for table, key, (old_index, _old), (new_index, new_columns) in _TABLES:
        name = f"{prefix}{table}"
        op.drop_index(f"{prefix}{old_index}", table_name=name, schema=schema)
        op.add_column(
            name, sa.Column("order_created_at", UTCDateTime, nullable=True), schema=schema
        )
        _backfill(prefix, schema, table, key)
        with op.batch_alter_table(name, schema=schema) as batch:
            batch.alter_column("order_created_at", existing_type=UTCDateTime(), nullable=False)
        op.create_index(f"{prefix}{new_index}", name, new_columns, schema=schema)


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    for table, _key, (old_index, old_columns), (new_index, _new) in reversed(_TABLES):
        name = f"{prefix}{table}"
        op.drop_index(f"{prefix}{new_index}", table_name=name, schema=schema)
        with op.batch_alter_table(name, schema=schema) as batch:
            batch.drop_column("order_created_at")
        op.create_index(f"{prefix}{old_index}", name, old_columns, schema=schema)
