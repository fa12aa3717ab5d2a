"""Refunds and after-sales: refunds, after-sales issues and their steps; which payment
attempt settled its order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import Str, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _actor(prefix: str = "", nullable: bool = False) -> list[sa.Column[object]]:
    return [
        sa.Column(f"{prefix}actor_kind", Str(16), nullable=nullable),
        sa.Column(f"{prefix}actor_id", Str(128), nullable=nullable),
        sa.Column(f"{prefix}actor_role", Str(64), nullable=True),
    ]


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    def fk(table: str) -> str:
        return f"{schema}.{n(table)}.id" if schema else f"{n(table)}.id"

    op.add_column(
        n("payment_attempts"),
        sa.Column("settles_order", sa.Boolean, nullable=False, server_default="0"),
        schema=schema,
    )
    # Before this revision the attempt that paid an order was the succeeded one without a
    # duplicate-payment or payment-after-cancel anomaly.
    attempts = sa.table(
        n("payment_attempts"),
        sa.column("id"),
        sa.column("status"),
        sa.column("settles_order"),
        schema=schema,
    )
    anomalies = sa.table(n("anomalies"), sa.column("attempt_id"), sa.column("kind"), schema=schema)
    extra = (
        sa.select(anomalies.c.attempt_id)
        .where(anomalies.c.attempt_id.is_not(None))
        .where(anomalies.c.kind.in_(["duplicate_payment", "payment_after_cancel"]))
    )
    op.execute(
        attempts.update()
        .where(attempts.c.status == "succeeded")
        .where(attempts.c.id.not_in(extra))
        .values(settles_order=True)
    )

    op.create_table(
        n("refunds"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("refund_no", Str(64), nullable=False),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=False),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey(fk("payment_attempts")), nullable=True),
        sa.Column("channel", Str(32), nullable=True),
        sa.Column("currency", Str(10), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("destination", Str(16), nullable=False),
        sa.Column("counts_toward_order", sa.Boolean, nullable=False),
        sa.Column("status", Str(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        *_actor("requested_by_"),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        *_actor("decided_by_", nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("decision_note", sa.Text, nullable=True),
        sa.Column("failure", Str(40), nullable=True),
        sa.Column("failure_message", sa.Text, nullable=True),
        sa.Column("channel_code", Str(64), nullable=True),
        sa.Column("channel_refund_no", Str(128), nullable=True),
        sa.Column("completed_at", UTCDateTime, nullable=True),
        sa.Column("next_check_at", UTCDateTime, nullable=True),
        sa.Column("check_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("uncertain", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("refund_no", name=n("uq_refunds_refund_no")),
        schema=schema,
    )
    for name, columns in (
        ("ix_refunds_order", ["order_id", "id"]),
        ("ix_refunds_attempt", ["attempt_id"]),
        ("ix_refunds_status", ["status", "id"]),
        ("ix_refunds_check", ["next_check_at"]),
    ):
        op.create_index(n(name), n("refunds"), columns, schema=schema)

    op.create_table(
        n("after_sales_issues"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=False),
        sa.Column("subject", Str(200), nullable=False),
        sa.Column("status", Str(24), nullable=False),
        *_actor("opened_by_"),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("resolved_at", UTCDateTime, nullable=True),
        schema=schema,
    )
    for name, columns in (
        ("ix_after_sales_issues_order", ["order_id", "id"]),
        ("ix_after_sales_issues_status", ["status", "id"]),
    ):
        op.create_index(n(name), n("after_sales_issues"), columns, schema=schema)

    op.create_table(
        n("after_sales_steps"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "issue_id", sa.Integer, sa.ForeignKey(fk("after_sales_issues")), nullable=False
        ),
        sa.Column("status", Str(24), nullable=False),
        *_actor(),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        schema=schema,
    )
    op.create_index(
        n("ix_after_sales_steps_issue"), n("after_sales_steps"), ["issue_id", "id"], schema=schema
    )


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    for table in ("after_sales_steps", "after_sales_issues", "refunds"):
        op.drop_table(n(table), schema=schema)
    with op.batch_alter_table(n("payment_attempts"), schema=schema) as batch:
        batch.drop_column("settles_order")
