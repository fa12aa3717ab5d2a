"""Risk control: list entries, locked subjects, the risk context of orders and payment
attempts, and risk decisions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import Str, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    def fk(table: str) -> str:
        return f"{schema}.{n(table)}.id" if schema else f"{n(table)}.id"

    op.create_table(
        n("risk_lists"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", Str(16), nullable=False),
        sa.Column("value", Str(254), nullable=False),
        sa.Column("allow", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("added_by", Str(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("kind", "value", name=n("uq_risk_lists_entry")),
        schema=schema,
    )
    op.create_table(
        n("risk_subjects"),
        sa.Column("kind", Str(16), primary_key=True),
        sa.Column("value", Str(254), primary_key=True),
        schema=schema,
    )
    op.create_table(
        n("risk_orders"),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), primary_key=True),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("ip", Str(45), nullable=True),
        sa.Column("device_id", Str(128), nullable=True),
        sa.Column("email", Str(254), nullable=True),
        sa.Column("email_domain", Str(254), nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        sa.Column("verdict", Str(8), nullable=False),
        sa.Column("needs_verification", sa.Boolean, nullable=False),
        sa.Column("review_state", Str(16), nullable=True),
        sa.Column("review_due_at", UTCDateTime, nullable=True),
        schema=schema,
    )
    for name, columns in (
        ("ix_risk_orders_ip", ["ip", "created_at"]),
        ("ix_risk_orders_device", ["device_id", "created_at"]),
        ("ix_risk_orders_domain", ["email_domain", "created_at"]),
        ("ix_risk_orders_device_customer", ["device_id", "customer_id"]),
        ("ix_risk_orders_ip_customer", ["ip", "customer_id"]),
        ("ix_risk_orders_review", ["review_state", "review_due_at"]),
    ):
        op.create_index(n(name), n("risk_orders"), columns, schema=schema)
    op.create_table(
        n("risk_attempts"),
        sa.Column(
            "attempt_id", sa.Integer, sa.ForeignKey(fk("payment_attempts")), primary_key=True
        ),
        sa.Column("order_id", sa.Integer, nullable=False),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("ip", Str(45), nullable=True),
        sa.Column("device_id", Str(128), nullable=True),
        sa.Column("payer_account", Str(128), nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        schema=schema,
    )
    for name, columns in (
        ("ix_risk_attempts_ip", ["ip", "created_at"]),
        ("ix_risk_attempts_customer", ["customer_id", "created_at"]),
        ("ix_risk_attempts_payer", ["payer_account", "customer_id"]),
    ):
        op.create_index(n(name), n("risk_attempts"), columns, schema=schema)
    op.create_table(
        n("risk_decisions"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stage", Str(8), nullable=False),
        sa.Column("verdict", Str(8), nullable=False),
        sa.Column("order_number", Str(32), nullable=True),
        sa.Column("out_trade_no", Str(64), nullable=True),
        sa.Column("customer_id", sa.Integer, nullable=True),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("actor_kind", Str(16), nullable=False),
        sa.Column("actor_id", Str(128), nullable=False),
        sa.Column("actor_role", Str(64), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        schema=schema,
    )
    for name, columns in (
        ("ix_risk_decisions_order", ["order_number", "id"]),
        ("ix_risk_decisions_verdict", ["verdict", "created_at"]),
    ):
        op.create_index(n(name), n("risk_decisions"), columns, schema=schema)


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    for table in ("risk_decisions", "risk_attempts", "risk_orders", "risk_subjects", "risk_lists"):
        op.drop_table(n(table), schema=schema)
