"""Order book: quantity tiers, order idempotency keys, coupons, wallet accounts and ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import Str, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


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

    op.add_column(
        n("products"),
        sa.Column("tiers", sa.Text, nullable=False, server_default="[]"),
        schema=schema,
    )
    op.add_column(
        n("order_lines"), sa.Column("tier_percent_off", Str(16), nullable=True), schema=schema
    )
    op.add_column(n("orders"), sa.Column("idempotency_key", Str(128), nullable=True), schema=schema)
    op.add_column(n("orders"), sa.Column("request_hash", Str(64), nullable=True), schema=schema)
    op.create_index(
        n("ux_orders_idempotency_key"), n("orders"), ["idempotency_key"], unique=True, schema=schema
    )

    op.create_table(
        n("coupons"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", Str(64), nullable=False),
        sa.Column("kind", Str(8), nullable=False),
        sa.Column("currency", Str(10), nullable=False),
        sa.Column("percent", Str(16), nullable=True),
        sa.Column("amount_minor", sa.BigInteger, nullable=True),
        sa.Column("max_discount_minor", sa.BigInteger, nullable=True),
        sa.Column("min_amount_minor", sa.BigInteger, nullable=True),
        sa.Column("valid_from", UTCDateTime, nullable=True),
        sa.Column("valid_until", UTCDateTime, nullable=True),
        sa.Column("limit_total", sa.Integer, nullable=True),
        sa.Column("limit_per_customer", sa.Integer, nullable=True),
        sa.Column("skus", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("uses", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("code", name=n("uq_coupons_code")),
        schema=schema,
    )
    op.create_table(
        n("coupon_redemptions"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("coupon_id", sa.Integer, sa.ForeignKey(fk("coupons")), nullable=False),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey(fk("customers")), nullable=False),
        sa.Column("status", Str(10), nullable=False),
        sa.Column("discount_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("coupon_id", "order_id", name=n("uq_coupon_redemptions_order")),
        schema=schema,
    )
    op.create_index(
        n("ix_coupon_redemptions_customer"),
        n("coupon_redemptions"),
        ["coupon_id", "customer_id", "status"],
        schema=schema,
    )
    op.create_index(
        n("ix_coupon_redemptions_order"), n("coupon_redemptions"), ["order_id"], schema=schema
    )

    op.create_table(
        n("wallet_accounts"),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey(fk("customers")), primary_key=True),
        sa.Column("asset", Str(10), primary_key=True),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.CheckConstraint("balance >= 0", name=n("ck_wallet_accounts_balance")),
        schema=schema,
    )
    op.create_table(
        n("wallet_ledger"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey(fk("customers")), nullable=False),
        sa.Column("asset", Str(10), nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("reason", Str(64), nullable=False),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=True),
        sa.Column("refund_id", sa.Integer, nullable=True),
        *_actor(),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("idempotency_key", Str(128), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        schema=schema,
    )
    op.create_index(
        n("ix_wallet_ledger_account"),
        n("wallet_ledger"),
        ["customer_id", "asset", "id"],
        schema=schema,
    )
    op.create_index(n("ix_wallet_ledger_order"), n("wallet_ledger"), ["order_id"], schema=schema)
    op.create_index(
        n("ux_wallet_ledger_idempotency_key"),
        n("wallet_ledger"),
        ["idempotency_key"],
        unique=True,
        schema=schema,
    )


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    for table in ("wallet_ledger", "wallet_accounts", "coupon_redemptions", "coupons"):
        op.drop_table(n(table), schema=schema)
    op.drop_index(n("ux_orders_idempotency_key"), n("orders"), schema=schema)
    with op.batch_alter_table(n("orders"), schema=schema) as batch:
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
    with op.batch_alter_table(n("order_lines"), schema=schema) as batch:
        batch.drop_column("tier_percent_off")
    with op.batch_alter_table(n("products"), schema=schema) as batch:
        batch.drop_column("tiers")
