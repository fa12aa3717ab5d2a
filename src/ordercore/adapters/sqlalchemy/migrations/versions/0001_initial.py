"""Initial schema: customers, products, orders and their children, the audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import Str, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def _actor() -> list[sa.Column[object]]:
    return [
        sa.Column("actor_kind", Str(16), nullable=False),
        sa.Column("actor_id", Str(128), nullable=False),
        sa.Column("actor_role", Str(64), nullable=True),
    ]


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    def fk(table: str) -> str:
        return f"{schema}.{n(table)}.id" if schema else f"{n(table)}.id"

    op.create_table(
        n("customers"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("external_ref", Str(128), nullable=True),
        sa.Column("name", Str(200), nullable=False),
        sa.Column("email", Str(254), nullable=True),
        sa.Column("phone", Str(40), nullable=True),
        sa.Column("identity_verified", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("external_ref", name=n("uq_customers_external_ref")),
        sa.UniqueConstraint("email", name=n("uq_customers_email")),
        schema=schema,
    )
    op.create_index(n("ix_customers_name"), n("customers"), ["name"], schema=schema)

    op.create_table(
        n("products"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sku", Str(64), nullable=False),
        sa.Column("name", Str(200), nullable=False),
        sa.Column("currency", Str(10), nullable=False),
        sa.Column("price_minor", sa.BigInteger, nullable=False),
        sa.Column("specs", sa.Text, nullable=False),
        sa.Column("stock", sa.Integer, nullable=True),
        sa.Column("low_stock_threshold", sa.Integer, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("sku", name=n("uq_products_sku")),
        schema=schema,
    )

    op.create_table(
        n("orders"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("number", Str(32), nullable=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey(fk("customers")), nullable=False),
        sa.Column("currency", Str(10), nullable=False),
        sa.Column("status", Str(16), nullable=False),
        sa.Column("cancel_reason", Str(16), nullable=True),
        sa.Column("original_minor", sa.BigInteger, nullable=False),
        sa.Column("payable_minor", sa.BigInteger, nullable=False),
        sa.Column("paid_minor", sa.BigInteger, nullable=False),
        sa.Column("refunded_minor", sa.BigInteger, nullable=False),
        sa.Column("adjustments", sa.Text, nullable=False),
        sa.Column("channel", Str(32), nullable=True),
        sa.Column("special", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("paid_at", UTCDateTime, nullable=True),
        sa.Column("completed_at", UTCDateTime, nullable=True),
        sa.Column("canceled_at", UTCDateTime, nullable=True),
        sa.Column("refunded_at", UTCDateTime, nullable=True),
        sa.Column("payment_deadline", UTCDateTime, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("number", name=n("uq_orders_number")),
        schema=schema,
    )
    for name, columns in (
        ("ix_orders_created", ["created_at", "id"]),
        ("ix_orders_status_created", ["status", "created_at", "id"]),
        ("ix_orders_customer_created", ["customer_id", "created_at", "id"]),
        ("ix_orders_channel_created", ["channel", "created_at", "id"]),
        ("ix_orders_payable", ["payable_minor", "created_at", "id"]),
        ("ix_orders_deadline", ["status", "payment_deadline"]),
    ):
        op.create_index(n(name), n("orders"), columns, schema=schema)

    op.create_table(
        n("order_lines"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("product_id", sa.Integer, sa.ForeignKey(fk("products")), nullable=True),
        sa.Column("sku", Str(64), nullable=False),
        sa.Column("name", Str(200), nullable=False),
        sa.Column("specs", sa.Text, nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.UniqueConstraint("order_id", "position", name=n("uq_order_lines_position")),
        schema=schema,
    )
    op.create_index(n("ix_order_lines_sku"), n("order_lines"), ["sku", "order_id"], schema=schema)

    op.create_table(
        n("order_tags"),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), primary_key=True),
        sa.Column("tag", Str(40), primary_key=True),
        schema=schema,
    )
    op.create_index(n("ix_order_tags_tag"), n("order_tags"), ["tag", "order_id"], schema=schema)

    op.create_table(
        n("order_notes"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        *_actor(),
        sa.Column("at", UTCDateTime, nullable=False),
        schema=schema,
    )
    op.create_index(n("ix_order_notes_order"), n("order_notes"), ["order_id", "id"], schema=schema)

    op.create_table(
        n("order_communications"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=False),
        sa.Column("channel", Str(32), nullable=False),
        sa.Column("direction", Str(8), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        *_actor(),
        sa.Column("at", UTCDateTime, nullable=False),
        schema=schema,
    )
    op.create_index(
        n("ix_order_communications_order"),
        n("order_communications"),
        ["order_id", "id"],
        schema=schema,
    )

    op.create_table(
        n("audit_log"),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime, nullable=False),
        *_actor(),
        sa.Column("entity_kind", Str(32), nullable=False),
        sa.Column("entity_id", Str(64), nullable=False),
        sa.Column("action", Str(64), nullable=False),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("prev_hash", Str(64), nullable=False),
        sa.Column("hash", Str(64), nullable=False),
        schema=schema,
    )
    op.create_index(
        n("ix_audit_log_entity"), n("audit_log"), ["entity_kind", "entity_id", "seq"], schema=schema
    )

    head = op.create_table(
        n("audit_head"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", Str(64), nullable=False),
        schema=schema,
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    for base in (
        "audit_head",
        "audit_log",
        "order_communications",
        "order_notes",
        "order_tags",
        "order_lines",
        "orders",
        "products",
        "customers",
    ):
        op.drop_table(f"{prefix}{base}", schema=schema)
