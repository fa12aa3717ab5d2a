"""The tables, as SQLAlchemy Core objects built per host configuration.

:func:`build_tables` returns a fresh :class:`Tables` for a table-name ``prefix`` and a database
``schema``, so that a host application can keep ordercore's tables beside its own. Money is
stored as integer minor units next to its currency code; times as UTC with microseconds.
"""

from __future__ import annotations

import functools
from typing import Any

from attrs import frozen
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

from .risk_tables import risk_tables
from .types import Str, UTCDateTime, money_column

__all__ = ["Str", "Tables", "UTCDateTime", "build_tables"]


@frozen
class Tables:
    """Every table ordercore uses, sharing one :class:`~sqlalchemy.MetaData`."""

    metadata: MetaData
    prefix: str
    schema: str | None
    customers: Table
    products: Table
    orders: Table
    order_lines: Table
    order_tags: Table
    order_notes: Table
    order_communications: Table
    audit_log: Table
    audit_head: Table
    audit_pending: Table
    coupons: Table
    coupon_redemptions: Table
    wallet_accounts: Table
    wallet_ledger: Table
    payment_attempts: Table
    payment_operations: Table
    payment_events: Table
    inbox: Table
    anomalies: Table
    outbox: Table
    refunds: Table
    issues: Table
    issue_steps: Table
    risk_lists: Table
    risk_subjects: Table
    risk_orders: Table
    risk_attempts: Table
    risk_decisions: Table

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"


@functools.lru_cache(maxsize=32)
def build_tables(prefix: str = "", schema: str | None = None) -> Tables:
    """The table objects for table-name ``prefix`` (e.g. ``"oc_"``) and ``schema`` (built once
    per pair: the definitions are immutable and cheap to share, expensive to rebuild)."""
    md = MetaData(schema=schema)

    def n(base: str) -> str:
        return f"{prefix}{base}"

    def fk(table: str, column: str = "id") -> str:
        return f"{schema}.{n(table)}.{column}" if schema else f"{n(table)}.{column}"

    customers = Table(
        n("customers"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("external_ref", Str(128), nullable=True),
        Column("name", Str(200), nullable=False),
        Column("email", Str(254), nullable=True),
        Column("phone", Str(40), nullable=True),
        Column("identity_verified", Boolean, nullable=False, default=False),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("external_ref", name=n("uq_customers_external_ref")),
        UniqueConstraint("email", name=n("uq_customers_email")),
        Index(n("ix_customers_name"), "name"),
    )

    products = Table(
        n("products"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("sku", Str(64), nullable=False),
        Column("name", Str(200), nullable=False),
        Column("currency", Str(10), nullable=False),
        money_column("price"),
        Column("specs", Text, nullable=False),
        Column("stock", Integer, nullable=True),
        Column("low_stock_threshold", Integer, nullable=True),
        Column("active", Boolean, nullable=False, default=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("tiers", Text, nullable=False, server_default="[]"),
        Column("activation_mode", Str(16), nullable=False, server_default="auto"),
        Column("activation_delay_minutes", Integer, nullable=True),
        UniqueConstraint("sku", name=n("uq_products_sku")),
    )

    orders = Table(
        n("orders"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("number", Str(32), nullable=False),
        Column("customer_id", Integer, ForeignKey(fk("customers")), nullable=False),
        Column("currency", Str(10), nullable=False),
        Column("status", Str(16), nullable=False),
        Column("cancel_reason", Str(16), nullable=True),
        money_column("original"),
        money_column("payable"),
        money_column("paid"),
        money_column("refunded"),
        Column("adjustments", Text, nullable=False),
        Column("channel", Str(32), nullable=True),
        Column("special", Boolean, nullable=False, default=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("paid_at", UTCDateTime, nullable=True),
        Column("completed_at", UTCDateTime, nullable=True),
        Column("canceled_at", UTCDateTime, nullable=True),
        Column("refunded_at", UTCDateTime, nullable=True),
        Column("payment_deadline", UTCDateTime, nullable=True),
        Column("version", Integer, nullable=False, default=0),
        Column("idempotency_key", Str(128), nullable=True),
        Column("request_hash", Str(64), nullable=True),
        Column("activation_mode", Str(16), nullable=False, server_default="auto"),
        Column("activation_due_at", UTCDateTime, nullable=True),
        Column("activation_attempts", Integer, nullable=False, server_default="0"),
        Column("activation_error", Text, nullable=True),
        Column("activation_locked_until", UTCDateTime, nullable=True),
        Column("timeout_locked_until", UTCDateTime, nullable=True),
        UniqueConstraint("number", name=n("uq_orders_number")),
        Index(n("ix_orders_activation_due"), "activation_due_at"),
        Index(n("ux_orders_idempotency_key"), "idempotency_key", unique=True),
        Index(n("ix_orders_created"), "created_at", "id"),
        Index(n("ix_orders_status_created"), "status", "created_at", "id"),
        Index(n("ix_orders_customer_created"), "customer_id", "created_at", "id"),
        Index(n("ix_orders_channel_created"), "channel", "created_at", "id"),
        Index(n("ix_orders_payable"), "payable_minor", "created_at", "id"),
        Index(n("ix_orders_deadline"), "status", "payment_deadline"),
        # statistics (migration 0008): a period's orders by creation, by payment, and a
        # customer's earlier payments, read from the index alone
        Index(n("ix_orders_stats_created"), "created_at", "currency", "paid_at", "channel"),
        Index(
            n("ix_orders_stats_paid"),
            "paid_at",
            "currency",
            "channel",
            "customer_id",
            "paid_minor",
            "created_at",
        ),
        Index(n("ix_orders_stats_customer"), "customer_id", "currency", "paid_at", "channel"),
    )

    order_lines = Table(
        n("order_lines"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=False),
        Column("position", Integer, nullable=False),
        Column("product_id", Integer, ForeignKey(fk("products")), nullable=True),
        Column("sku", Str(64), nullable=False),
        Column("name", Str(200), nullable=False),
        Column("specs", Text, nullable=False),
        money_column("unit_price"),
        Column("quantity", Integer, nullable=False),
        Column("tier_percent_off", Str(16), nullable=True),
        # A copy of orders.created_at (which never changes): the order list filtered by a sku
        # walks ix_order_lines_sku_created in list order (migration 0009).
        Column("order_created_at", UTCDateTime, nullable=False),
        UniqueConstraint("order_id", "position", name=n("uq_order_lines_position")),
        Index(n("ix_order_lines_sku_created"), "sku", "order_created_at", "order_id", "position"),
    )

    order_tags = Table(
        n("order_tags"),
        md,
        Column("order_id", Integer, ForeignKey(fk("orders")), primary_key=True),
        Column("tag", Str(40), primary_key=True),
        # The order's created_at, whenever the flag was set (see order_lines).
        Column("order_created_at", UTCDateTime, nullable=False),
        Index(n("ix_order_tags_tag_created"), "tag", "order_created_at", "order_id"),
    )

    def _actor_columns() -> list[Column[Any]]:
        return [
            Column("actor_kind", Str(16), nullable=False),
            Column("actor_id", Str(128), nullable=False),
            Column("actor_role", Str(64), nullable=True),
        ]

    order_notes = Table(
        n("order_notes"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=False),
        Column("text", Text, nullable=False),
        *_actor_columns(),
        Column("at", UTCDateTime, nullable=False),
        Index(n("ix_order_notes_order"), "order_id", "id"),
    )

    order_communications = Table(
        n("order_communications"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=False),
        Column("channel", Str(32), nullable=False),
        Column("direction", Str(8), nullable=False),
        Column("text", Text, nullable=False),
        *_actor_columns(),
        Column("at", UTCDateTime, nullable=False),
        Index(n("ix_order_communications_order"), "order_id", "id"),
    )

    audit_log = Table(
        n("audit_log"),
        md,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("at", UTCDateTime, nullable=False),
        *_actor_columns(),
        Column("entity_kind", Str(32), nullable=False),
        Column("entity_id", Str(64), nullable=False),
        Column("action", Str(64), nullable=False),
        Column("before", Text, nullable=True),
        Column("after", Text, nullable=True),
        Column("reason", Text, nullable=True),
        Column("prev_hash", Str(64), nullable=False),
        Column("hash", Str(64), nullable=False),
        Index(n("ix_audit_log_entity"), "entity_kind", "entity_id", "seq"),
    )

    audit_head = Table(
        n("audit_head"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", BigInteger, nullable=False),
        Column("hash", Str(64), nullable=False),
        # HMAC of (seq, hash) with the audit key; None without a key
        Column("mac", Str(64), nullable=True),
    )

    # Entries written but not yet sealed into audit_log: ``id`` comes from the database's
    # auto-increment, so writers never wait for each other (see adapters/sqlalchemy/audit.py).
    audit_pending = Table(
        n("audit_pending"),
        md,
        # BIGINT, but INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("nonce", Str(32), nullable=False),
        Column("at", UTCDateTime, nullable=False),
        *_actor_columns(),
        Column("entity_kind", Str(32), nullable=False),
        Column("entity_id", Str(64), nullable=False),
        Column("action", Str(64), nullable=False),
        Column("before", Text, nullable=True),
        Column("after", Text, nullable=True),
        Column("reason", Text, nullable=True),
        Column("entry_hash", Str(64), nullable=False),
        UniqueConstraint("nonce", name=n("uq_audit_pending_nonce")),
        Index(n("ix_audit_pending_entity"), "entity_kind", "entity_id", "id"),
    )

    coupons = Table(
        n("coupons"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("code", Str(64), nullable=False),
        Column("kind", Str(8), nullable=False),
        Column("currency", Str(10), nullable=False),
        Column("percent", Str(16), nullable=True),
        money_column("amount", nullable=True),
        money_column("max_discount", nullable=True),
        money_column("min_amount", nullable=True),
        Column("valid_from", UTCDateTime, nullable=True),
        Column("valid_until", UTCDateTime, nullable=True),
        Column("limit_total", Integer, nullable=True),
        Column("limit_per_customer", Integer, nullable=True),
        Column("skus", Text, nullable=False),
        Column("active", Boolean, nullable=False),
        Column("uses", Integer, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("code", name=n("uq_coupons_code")),
    )

    coupon_redemptions = Table(
        n("coupon_redemptions"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("coupon_id", Integer, ForeignKey(fk("coupons")), nullable=False),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=False),
        Column("customer_id", Integer, ForeignKey(fk("customers")), nullable=False),
        Column("status", Str(10), nullable=False),
        money_column("discount"),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("coupon_id", "order_id", name=n("uq_coupon_redemptions_order")),
        Index(n("ix_coupon_redemptions_customer"), "coupon_id", "customer_id", "status"),
        Index(n("ix_coupon_redemptions_order"), "order_id"),
    )

    wallet_accounts = Table(
        n("wallet_accounts"),
        md,
        Column("customer_id", Integer, ForeignKey(fk("customers")), primary_key=True),
        Column("asset", Str(10), primary_key=True),
        Column("balance", BigInteger, nullable=False),
        CheckConstraint("balance >= 0", name=n("ck_wallet_accounts_balance")),
    )

    wallet_ledger = Table(
        n("wallet_ledger"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("customer_id", Integer, ForeignKey(fk("customers")), nullable=False),
        Column("asset", Str(10), nullable=False),
        Column("delta", BigInteger, nullable=False),
        Column("balance_after", BigInteger, nullable=False),
        Column("reason", Str(64), nullable=False),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=True),
        Column("refund_id", Integer, nullable=True),
        *_actor_columns(),
        Column("at", UTCDateTime, nullable=False),
        Column("idempotency_key", Str(128), nullable=True),
        Column("note", Text, nullable=True),
        Index(n("ix_wallet_ledger_account"), "customer_id", "asset", "id"),
        Index(n("ix_wallet_ledger_order"), "order_id"),
        Index(n("ux_wallet_ledger_idempotency_key"), "idempotency_key", unique=True),
    )

    payment_attempts = Table(
        n("payment_attempts"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=False),
        Column("channel", Str(32), nullable=False),
        Column("method", Str(16), nullable=False),
        Column("out_trade_no", Str(64), nullable=False),
        Column("currency", Str(10), nullable=False),
        money_column("amount"),
        Column("status", Str(16), nullable=False),
        Column("channel_trade_no", Str(128), nullable=True),
        money_column("received", nullable=True),
        Column("checkout", Text, nullable=True),
        Column("proof_reference", Str(200), nullable=True),
        Column("proof_file", Str(500), nullable=True),
        Column("failure_reason", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("paid_at", UTCDateTime, nullable=True),
        Column("expires_at", UTCDateTime, nullable=True),
        Column("next_check_at", UTCDateTime, nullable=True),
        Column("check_count", Integer, nullable=False, server_default="0"),
        # True for the attempt whose money paid the order (not a duplicate, not after cancel).
        Column("settles_order", Boolean, nullable=False, server_default="0"),
        # Crypto: the coin amount, rate and expiry the gateway locked, and what arrived.
        Column("coin_currency", Str(10), nullable=True),
        money_column("coin_amount", nullable=True),
        Column("coin_rate", Str(40), nullable=True),
        Column("coin_pay_by", UTCDateTime, nullable=True),
        money_column("coin_received", nullable=True),
        UniqueConstraint("out_trade_no", name=n("uq_payment_attempts_out_trade_no")),
        Index(n("ix_payment_attempts_order"), "order_id", "id"),
        Index(n("ix_payment_attempts_check"), "next_check_at"),
        Index(n("ix_payment_attempts_status"), "status", "created_at"),
        Index(
            n("ix_payment_attempts_stats"),
            "created_at",
            "currency",
            "channel",
            "status",
            "order_id",
        ),
    )

    payment_operations = Table(
        n("payment_operations"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("attempt_id", Integer, ForeignKey(fk("payment_attempts")), nullable=True),
        Column("refund_id", Integer, nullable=True),
        Column("kind", Str(16), nullable=False),
        Column("idempotency_key", Str(128), nullable=False),
        Column("state", Str(16), nullable=False),
        Column("request", Text, nullable=True),
        Column("response", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("finished_at", UTCDateTime, nullable=True),
        UniqueConstraint("idempotency_key", name=n("uq_payment_operations_key")),
        Index(n("ix_payment_operations_attempt"), "attempt_id", "id"),
    )

    inbox = Table(
        n("inbox"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("channel", Str(32), nullable=False),
        Column("received_at", UTCDateTime, nullable=False),
        Column("remote_addr", Str(64), nullable=True),
        Column("headers", Text, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("status", Str(16), nullable=False),
        Column("reason", Text, nullable=True),
        Column("out_trade_no", Str(64), nullable=True),
        Column("order_number", Str(32), nullable=True),
        Column("processed_at", UTCDateTime, nullable=True),
        Column("replay_of", Integer, nullable=True),
        Index(n("ix_inbox_received"), "received_at", "id"),
        Index(n("ix_inbox_order"), "order_number", "id"),
    )

    payment_events = Table(
        n("payment_events"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_key", Str(200), nullable=False),
        Column("attempt_id", Integer, ForeignKey(fk("payment_attempts")), nullable=True),
        Column("inbox_id", Integer, nullable=True),
        Column("applied_at", UTCDateTime, nullable=False),
        UniqueConstraint("event_key", name=n("uq_payment_events_key")),
    )

    anomalies = Table(
        n("anomalies"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=True),
        Column("attempt_id", Integer, ForeignKey(fk("payment_attempts")), nullable=True),
        Column("kind", Str(32), nullable=False),
        Column("status", Str(24), nullable=False),
        Column("evidence", Text, nullable=False),
        Column("dedupe_key", Str(200), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("resolved_at", UTCDateTime, nullable=True),
        Column("resolution", Text, nullable=True),
        UniqueConstraint("dedupe_key", name=n("uq_anomalies_dedupe")),
        Index(n("ix_anomalies_status"), "status", "id"),
        Index(n("ix_anomalies_order"), "order_id"),
    )

    outbox = Table(
        n("outbox"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", Str(36), nullable=False),
        Column("kind", Str(64), nullable=False),
        Column("order_number", Str(32), nullable=True),
        Column("payload", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("available_at", UTCDateTime, nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("delivered_at", UTCDateTime, nullable=True),
        Column("last_error", Text, nullable=True),
        UniqueConstraint("event_id", name=n("uq_outbox_event_id")),
        Index(n("ix_outbox_pending"), "delivered_at", "available_at"),
    )

    refunds = Table(
        n("refunds"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("refund_no", Str(64), nullable=False),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=False),
        Column("attempt_id", Integer, ForeignKey(fk("payment_attempts")), nullable=True),
        Column("channel", Str(32), nullable=True),
        Column("currency", Str(10), nullable=False),
        money_column("amount"),
        Column("destination", Str(16), nullable=False),
        Column("counts_toward_order", Boolean, nullable=False),
        Column("status", Str(16), nullable=False),
        Column("reason", Text, nullable=False),
        *[Column(f"requested_by_{c.name}", c.type, nullable=c.nullable) for c in _actor_columns()],
        Column("requested_at", UTCDateTime, nullable=False),
        *[Column(f"decided_by_{c.name}", c.type, nullable=True) for c in _actor_columns()],
        Column("decided_at", UTCDateTime, nullable=True),
        Column("decision_note", Text, nullable=True),
        Column("failure", Str(40), nullable=True),
        Column("failure_message", Text, nullable=True),
        Column("channel_code", Str(64), nullable=True),
        Column("channel_refund_no", Str(128), nullable=True),
        Column("completed_at", UTCDateTime, nullable=True),
        Column("next_check_at", UTCDateTime, nullable=True),
        Column("check_count", Integer, nullable=False, server_default="0"),
        Column("tries", Integer, nullable=False, server_default="0"),
        Column("uncertain", Boolean, nullable=False, server_default="0"),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("refund_no", name=n("uq_refunds_refund_no")),
        Index(n("ix_refunds_order"), "order_id", "id"),
        Index(n("ix_refunds_attempt"), "attempt_id"),
        Index(n("ix_refunds_status"), "status", "id"),
        Index(n("ix_refunds_check"), "next_check_at"),
        Index(n("ix_refunds_completed"), "completed_at"),
    )

    issues = Table(
        n("after_sales_issues"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", Integer, ForeignKey(fk("orders")), nullable=False),
        Column("subject", Str(200), nullable=False),
        Column("status", Str(24), nullable=False),
        *[Column(f"opened_by_{c.name}", c.type, nullable=c.nullable) for c in _actor_columns()],
        Column("opened_at", UTCDateTime, nullable=False),
        Column("resolved_at", UTCDateTime, nullable=True),
        Index(n("ix_after_sales_issues_order"), "order_id", "id"),
        Index(n("ix_after_sales_issues_status"), "status", "id"),
    )

    issue_steps = Table(
        n("after_sales_steps"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("issue_id", Integer, ForeignKey(fk("after_sales_issues")), nullable=False),
        Column("status", Str(24), nullable=False),
        *_actor_columns(),
        Column("at", UTCDateTime, nullable=False),
        Column("note", Text, nullable=False),
        Index(n("ix_after_sales_steps_issue"), "issue_id", "id"),
    )

    risk = risk_tables(md, n, fk, _actor_columns)

    return Tables(
        metadata=md,
        prefix=prefix,
        schema=schema,
        customers=customers,
        products=products,
        orders=orders,
        order_lines=order_lines,
        order_tags=order_tags,
        order_notes=order_notes,
        order_communications=order_communications,
        audit_log=audit_log,
        audit_head=audit_head,
        audit_pending=audit_pending,
        coupons=coupons,
        coupon_redemptions=coupon_redemptions,
        wallet_accounts=wallet_accounts,
        wallet_ledger=wallet_ledger,
        payment_attempts=payment_attempts,
        payment_operations=payment_operations,
        payment_events=payment_events,
        inbox=inbox,
        anomalies=anomalies,
        outbox=outbox,
        refunds=refunds,
        issues=issues,
        issue_steps=issue_steps,
        **risk,
    )
