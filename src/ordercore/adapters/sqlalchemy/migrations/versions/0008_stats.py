"""Statistics: the indexes that let each figure of a month or a year read only the rows of
that period, most of them from the index alone (docs/performance.md has the measurements).

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

#: (index, table, columns) — the same as in tables.py.
INDEXES = (
    ("ix_orders_stats_created", "orders", ["created_at", "currency", "paid_at", "channel"]),
    (
        "ix_orders_stats_paid",
        "orders",
        ["paid_at", "currency", "channel", "customer_id", "paid_minor", "created_at"],
    ),
    ("ix_orders_stats_customer", "orders", ["customer_id", "currency", "paid_at", "channel"]),
    (
        "ix_payment_attempts_stats",
        "payment_attempts",
        ["created_at", "currency", "channel", "status", "order_id"],
    ),
    ("ix_refunds_completed", "refunds", ["completed_at"]),
)


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    for name, table, columns in INDEXES:
        op.create_index(f"{prefix}{name}", f"{prefix}{table}", columns, schema=schema)


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(f"{prefix}{name}", table_name=f"{prefix}{table}", schema=schema)
