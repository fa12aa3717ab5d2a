"""Payment engine: attempts, operations, inbox, applied events, anomalies, outbox, activation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ordercore.adapters.sqlalchemy.tables import Str, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    def fk(table: str) -> str:
        return f"{schema}.{n(table)}.id" if schema else f"{n(table)}.id"

    def add(table: str, column: sa.Column[object]) -> None:
        op.add_column(n(table), column, schema=schema)

    add(
        "products",
        sa.Column("activation_mode", Str(16), nullable=False, server_default="auto"),
    )
    add("products", sa.Column("activation_delay_minutes", sa.Integer, nullable=True))
    add("orders", sa.Column("activation_mode", Str(16), nullable=False, server_default="auto"))
    add("orders", sa.Column("activation_due_at", UTCDateTime, nullable=True))
    add("orders", sa.Column("activation_attempts", sa.Integer, nullable=False, server_default="0"))
    add("orders", sa.Column("activation_error", sa.Text, nullable=True))
    add("orders", sa.Column("activation_locked_until", UTCDateTime, nullable=True))
    add("orders", sa.Column("timeout_locked_until", UTCDateTime, nullable=True))
    op.create_index(
        n("ix_orders_activation_due"), n("orders"), ["activation_due_at"], schema=schema
    )

    op.create_table(
        n("payment_attempts"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=False),
        sa.Column("channel", Str(32), nullable=False),
        sa.Column("method", Str(16), nullable=False),
        sa.Column("out_trade_no", Str(64), nullable=False),
        sa.Column("currency", Str(10), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("status", Str(16), nullable=False),
        sa.Column("channel_trade_no", Str(128), nullable=True),
        sa.Column("received_minor", sa.BigInteger, nullable=True),
        sa.Column("checkout", sa.Text, nullable=True),
        sa.Column("proof_reference", Str(200), nullable=True),
        sa.Column("proof_file", Str(500), nullable=True),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("paid_at", UTCDateTime, nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("next_check_at", UTCDateTime, nullable=True),
        sa.Column("check_count", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("out_trade_no", name=n("uq_payment_attempts_out_trade_no")),
        schema=schema,
    )
    for name, columns in (
        ("ix_payment_attempts_order", ["order_id", "id"]),
        ("ix_payment_attempts_check", ["next_check_at"]),
        ("ix_payment_attempts_status", ["status", "created_at"]),
    ):
        op.create_index(n(name), n("payment_attempts"), columns, schema=schema)

    op.create_table(
        n("payment_operations"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey(fk("payment_attempts")), nullable=True),
        sa.Column("refund_id", sa.Integer, nullable=True),
        sa.Column("kind", Str(16), nullable=False),
        sa.Column("idempotency_key", Str(128), nullable=False),
        sa.Column("state", Str(16), nullable=False),
        sa.Column("request", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("idempotency_key", name=n("uq_payment_operations_key")),
        schema=schema,
    )
    op.create_index(
        n("ix_payment_operations_attempt"),
        n("payment_operations"),
        ["attempt_id", "id"],
        schema=schema,
    )

    op.create_table(
        n("inbox"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", Str(32), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("remote_addr", Str(64), nullable=True),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("status", Str(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("out_trade_no", Str(64), nullable=True),
        sa.Column("order_number", Str(32), nullable=True),
        sa.Column("processed_at", UTCDateTime, nullable=True),
        sa.Column("replay_of", sa.Integer, nullable=True),
        schema=schema,
    )
    op.create_index(n("ix_inbox_received"), n("inbox"), ["received_at", "id"], schema=schema)
    op.create_index(n("ix_inbox_order"), n("inbox"), ["order_number", "id"], schema=schema)

    op.create_table(
        n("payment_events"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_key", Str(200), nullable=False),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey(fk("payment_attempts")), nullable=True),
        sa.Column("inbox_id", sa.Integer, nullable=True),
        sa.Column("applied_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("event_key", name=n("uq_payment_events_key")),
        schema=schema,
    )

    op.create_table(
        n("anomalies"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(fk("orders")), nullable=True),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey(fk("payment_attempts")), nullable=True),
        sa.Column("kind", Str(32), nullable=False),
        sa.Column("status", Str(24), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("dedupe_key", Str(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("resolved_at", UTCDateTime, nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
        sa.UniqueConstraint("dedupe_key", name=n("uq_anomalies_dedupe")),
        schema=schema,
    )
    op.create_index(n("ix_anomalies_status"), n("anomalies"), ["status", "id"], schema=schema)
    op.create_index(n("ix_anomalies_order"), n("anomalies"), ["order_id"], schema=schema)

    op.create_table(
        n("outbox"),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", Str(36), nullable=False),
        sa.Column("kind", Str(64), nullable=False),
        sa.Column("order_number", Str(32), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("available_at", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("event_id", name=n("uq_outbox_event_id")),
        schema=schema,
    )
    op.create_index(
        n("ix_outbox_pending"), n("outbox"), ["delivered_at", "available_at"], schema=schema
    )


def downgrade(prefix: str = "", schema: str | None = None) -> None:
    def n(base: str) -> str:
        return f"{prefix}{base}"

    for table in (
        "outbox",
        "anomalies",
        "payment_events",
        "inbox",
        "payment_operations",
        "payment_attempts",
    ):
        op.drop_table(n(table), schema=schema)
    op.drop_index(n("ix_orders_activation_due"), n("orders"), schema=schema)
    with op.batch_alter_table(n("orders"), schema=schema) as batch:
        for column in (
            "timeout_locked_until",
            "activation_locked_until",
            "activation_error",
            "activation_attempts",
            "activation_due_at",
            "activation_mode",
        ):
            batch.drop_column(column)
    with op.batch_alter_table(n("products"), schema=schema) as batch:
        batch.drop_column("activation_delay_minutes")
        batch.drop_column("activation_mode")
