"""Risk control's tables (see :mod:`ordercore._risk`): list entries, the subjects a check
locks, the context stored with each order and attempt, and every decision. Built by
:func:`~ordercore.adapters.sqlalchemy.tables.build_tables` with the others."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

from .types import Str, UTCDateTime

__all__ = ["risk_tables"]


def risk_tables(
    md: MetaData,
    n: Any,
    fk: Any,
    actor_columns: Any,
) -> dict[str, Table]:
    """Risk control: list entries, the subjects checks lock, the context stored with each
    order and attempt (what velocity counts), and every decision."""
    risk_lists = Table(
        n("risk_lists"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("kind", Str(16), nullable=False),
        Column("value", Str(254), nullable=False),
        Column("allow", Boolean, nullable=False),
        Column("reason", Text, nullable=False),
        Column("added_by", Str(200), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=True),
        UniqueConstraint("kind", "value", name=n("uq_risk_lists_entry")),
    )
    # One row per counted subject (customer, ip, device, email domain): checks lock these
    # rows, so that concurrent checks of one subject count one after the other.
    risk_subjects = Table(
        n("risk_subjects"),
        md,
        Column("kind", Str(16), primary_key=True),
        Column("value", Str(254), primary_key=True),
    )
    risk_orders = Table(
        n("risk_orders"),
        md,
        Column("order_id", Integer, ForeignKey(fk("orders")), primary_key=True),
        Column("customer_id", Integer, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("ip", Str(45), nullable=True),
        Column("device_id", Str(128), nullable=True),
        Column("email", Str(254), nullable=True),
        Column("email_domain", Str(254), nullable=True),
        Column("user_agent", Text, nullable=True),
        Column("verdict", Str(8), nullable=False),
        Column("needs_verification", Boolean, nullable=False),
        Column("review_state", Str(16), nullable=True),
        Column("review_due_at", UTCDateTime, nullable=True),
        Index(n("ix_risk_orders_ip"), "ip", "created_at"),
        Index(n("ix_risk_orders_device"), "device_id", "created_at"),
        Index(n("ix_risk_orders_domain"), "email_domain", "created_at"),
        Index(n("ix_risk_orders_device_customer"), "device_id", "customer_id"),
        Index(n("ix_risk_orders_ip_customer"), "ip", "customer_id"),
        Index(n("ix_risk_orders_review"), "review_state", "review_due_at"),
    )
    risk_attempts = Table(
        n("risk_attempts"),
        md,
        Column("attempt_id", Integer, ForeignKey(fk("payment_attempts")), primary_key=True),
        Column("order_id", Integer, nullable=False),
        Column("customer_id", Integer, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("ip", Str(45), nullable=True),
        Column("device_id", Str(128), nullable=True),
        Column("payer_account", Str(128), nullable=True),
        Column("user_agent", Text, nullable=True),
        Index(n("ix_risk_attempts_ip"), "ip", "created_at"),
        Index(n("ix_risk_attempts_customer"), "customer_id", "created_at"),
        Index(n("ix_risk_attempts_payer"), "payer_account", "customer_id"),
    )
    risk_decisions = Table(
        n("risk_decisions"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("stage", Str(8), nullable=False),
        Column("verdict", Str(8), nullable=False),
        Column("order_number", Str(32), nullable=True),
        Column("out_trade_no", Str(64), nullable=True),
        Column("customer_id", Integer, nullable=True),
        Column("rules", Text, nullable=False),
        Column("context", Text, nullable=False),
        *actor_columns(),
        Column("created_at", UTCDateTime, nullable=False),
        Index(n("ix_risk_decisions_order"), "order_number", "id"),
        Index(n("ix_risk_decisions_verdict"), "verdict", "created_at"),
    )
    return {
        "risk_lists": risk_lists,
        "risk_subjects": risk_subjects,
        "risk_orders": risk_orders,
        "risk_attempts": risk_attempts,
        "risk_decisions": risk_decisions,
    }
