"""Plain-data views of domain objects: what ``--json`` prints and what a host can serialise.

The shapes are a contract: amounts are decimal strings, times ISO 8601 in UTC, statuses
lower-case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from ordercore import (
    AfterSales,
    AfterSalesIssue,
    Anomaly,
    AuditRecord,
    Communication,
    Coupon,
    Customer,
    LedgerEntry,
    Money,
    Order,
    OrderSummary,
    PaymentAttempt,
    Product,
    Refund,
    WalletSnapshot,
)
from ordercore._audit.chain import PendingAuditRecord, iso_utc
from ordercore._orders.domain import SpecValue

__all__ = [
    "after_sales_view",
    "anomaly_view",
    "attempt_view",
    "audit_record_view",
    "communication_view",
    "coupon_view",
    "customer_view",
    "issue_view",
    "ledger_entry_view",
    "listed_order_view",
    "order_summary_view",
    "order_view",
    "product_view",
    "refund_history_view",
    "refund_view",
    "wallet_view",
]


def _time(value: datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


def _specs(specs: Mapping[str, SpecValue]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in specs.items()}


def customer_view(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "external_ref": customer.external_ref,
        "identity_verified": customer.identity_verified,
        "created_at": _time(customer.created_at),
    }


def product_view(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "price": str(product.price.amount),
        "currency": product.price.currency.code,
        "specs": _specs(product.specs),
        "stock": product.stock,
        "low_stock_threshold": product.low_stock_threshold,
        "low_on_stock": product.low_on_stock,
        "active": product.active,
        "tiers": [
            {"min_quantity": t.min_quantity, "percent_off": str(t.percent_off)}
            for t in product.tiers
        ],
        "activation": {
            "mode": product.activation_mode,
            "delay_minutes": product.activation_delay_minutes,
        },
        "created_at": _time(product.created_at),
    }


def _amount(value: Money | None) -> str | None:
    return None if value is None else str(value.amount)


def coupon_view(coupon: Coupon, uses: int | None = None) -> dict[str, Any]:
    return {
        "code": coupon.code,
        "kind": coupon.kind.value,
        "currency": coupon.currency,
        "percent": None if coupon.percent is None else str(coupon.percent),
        "amount": _amount(coupon.amount),
        "max_discount": _amount(coupon.max_discount),
        "min_amount": _amount(coupon.min_amount),
        "valid_from": _time(coupon.valid_from),
        "valid_until": _time(coupon.valid_until),
        "limit_total": coupon.limit_total,
        "limit_per_customer": coupon.limit_per_customer,
        "products": sorted(coupon.skus),
        "active": coupon.active,
        "uses": uses,
    }


def attempt_view(attempt: PaymentAttempt) -> dict[str, Any]:
    return {
        "out_trade_no": attempt.out_trade_no,
        "order": attempt.order_number,
        "channel": attempt.channel,
        "method": attempt.method,
        "status": attempt.status.value,
        "amount": str(attempt.amount.amount),
        "currency": attempt.amount.currency.code,
        "received": None if attempt.received is None else str(attempt.received.amount),
        "channel_trade_no": attempt.channel_trade_no,
        "checkout": dict(attempt.checkout) if attempt.checkout else None,
        "proof": None
        if attempt.proof_reference is None
        else {"reference": attempt.proof_reference, "file": attempt.proof_file},
        "failure_reason": attempt.failure_reason,
        "created_at": _time(attempt.created_at),
        "paid_at": _time(attempt.paid_at),
        "expires_at": _time(attempt.expires_at),
        "next_check_at": _time(attempt.next_check_at),
    }


def anomaly_view(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "id": anomaly.id,
        "kind": anomaly.kind.value,
        "status": anomaly.status.value,
        "order": anomaly.order_number,
        "out_trade_no": anomaly.out_trade_no,
        "evidence": dict(anomaly.evidence),
        "created_at": _time(anomaly.created_at),
        "updated_at": _time(anomaly.updated_at),
        "resolved_at": _time(anomaly.resolved_at),
        "resolution": anomaly.resolution,
    }


def refund_view(refund: Refund) -> dict[str, Any]:
    """One refund; ``id`` is the refund id the channel knows (``<order number>R01``...)."""
    return {
        "id": refund.refund_no,
        "order": refund.order_number,
        "payment": refund.out_trade_no,
        "channel": refund.channel,
        "amount": str(refund.amount.amount),
        "currency": refund.amount.currency.code,
        "destination": refund.destination.value,
        "status": refund.status.value,
        "reason": refund.reason,
        "requested_by": str(refund.requested_by),
        "requested_at": _time(refund.requested_at),
        "decided_by": None if refund.decided_by is None else str(refund.decided_by),
        "decided_at": _time(refund.decided_at),
        "decision_note": refund.decision_note,
        "failure": None if refund.failure is None else refund.failure.value,
        "failure_message": refund.failure_message,
        "retryable": refund.retryable,
        "channel_code": refund.channel_code,
        "channel_refund_no": refund.channel_refund_no,
        "completed_at": _time(refund.completed_at),
        "counts_toward_order": refund.counts_toward_order,
    }


def _json_field(text: str | None) -> Any:
    """A stored JSON side of an audit record; text that does not parse is shown as it is
    (``audit verify`` reports the record)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}


def refund_history_view(
    refund_no: str, log: Iterable[AuditRecord | PendingAuditRecord]
) -> list[dict[str, Any]]:
    """The steps of one refund, from its order's audit log (actions ``refund.*``)."""
    steps = []
    for record in log:
        if not record.action.startswith("refund."):
            continue
        before, after = _json_field(record.before), _json_field(record.after)
        named = [d.get("refund") for d in (before, after) if isinstance(d, dict)]
        if refund_no not in named:
            continue
        steps.append(
            {
                "seq": record.seq if isinstance(record, AuditRecord) else None,
                "at": _time(record.at),
                "action": record.action,
                "actor": ":".join(
                    p for p in (record.actor_kind, record.actor_id, record.actor_role) if p
                ),
                "from": before.get("status") if isinstance(before, dict) else None,
                "to": after.get("status") if isinstance(after, dict) else None,
                "reason": record.reason,
            }
        )
    return steps


def issue_view(issue: AfterSalesIssue) -> dict[str, Any]:
    """One after-sales issue with every step it went through."""
    return {
        "id": issue.id,
        "order": issue.order_number,
        "subject": issue.subject,
        "status": issue.status.value,
        "opened_by": str(issue.opened_by),
        "opened_at": _time(issue.opened_at),
        "resolved_at": _time(issue.resolved_at),
        "steps": [
            {"status": s.status.value, "actor": str(s.actor), "at": _time(s.at), "note": s.note}
            for s in issue.steps
        ],
    }


def communication_view(communication: Communication) -> dict[str, Any]:
    return {
        "channel": communication.channel,
        "direction": communication.direction,
        "text": communication.text,
        "author": str(communication.author),
        "at": _time(communication.at),
    }


def after_sales_view(after_sales: AfterSales) -> dict[str, Any]:
    """An order's after-sales record: money paid, refunded and still refundable, refunds,
    communications with the customer and issues."""
    return {
        "order": after_sales.order_number,
        "currency": after_sales.paid.currency.code,
        "paid": str(after_sales.paid.amount),
        "refunded": str(after_sales.refunded.amount),
        "refundable": str(after_sales.refundable.amount),
        "refunds": [refund_view(r) for r in after_sales.refunds],
        "communications": [communication_view(c) for c in after_sales.communications],
        "issues": [issue_view(i) for i in after_sales.issues],
    }


def ledger_entry_view(entry: LedgerEntry) -> dict[str, Any]:
    if entry.is_points:
        delta: Any = entry.delta
        after: Any = entry.balance_after
    else:
        delta = str(entry.delta_money.amount)
        after = str(entry.balance_after_money.amount)
    return {
        "id": entry.id,
        "customer_id": entry.customer_id,
        "asset": entry.asset,
        "delta": delta,
        "balance_after": after,
        "reason": entry.reason,
        "order": entry.order_number,
        "refund_id": entry.refund_id,
        "actor": str(entry.actor),
        "at": _time(entry.at),
        "idempotency_key": entry.idempotency_key,
        "note": entry.note,
    }


def wallet_view(wallet: WalletSnapshot) -> dict[str, Any]:
    return {
        "customer_id": wallet.customer_id,
        "balances": {code: str(m.amount) for code, m in sorted(wallet.balances.items())},
        "points": wallet.points,
        "entries": [ledger_entry_view(e) for e in wallet.entries],
    }


def listed_order_view(summary: OrderSummary) -> dict[str, Any]:
    """A row of ``orders list``."""
    return {
        "number": summary.number,
        "status": summary.status.value,
        "currency": summary.currency.code,
        "customer_id": summary.customer_id,
        "payable": str(summary.payable.amount),
        "paid": str(summary.paid.amount),
        "refunded": str(summary.refunded.amount),
        "channel": summary.channel,
        "created_at": _time(summary.created_at),
        "special": summary.special,
        "flags": list(summary.flags),
    }


def audit_record_view(record: AuditRecord | PendingAuditRecord) -> dict[str, Any]:
    """A record of the audit log; a pending one (not sealed into the chain yet) has no
    ``seq`` and no ``hash`` yet, and says ``sealed: false``."""
    sealed = isinstance(record, AuditRecord)
    return {
        "seq": record.seq if isinstance(record, AuditRecord) else None,
        "sealed": sealed,
        "at": _time(record.at),
        "actor": {"kind": record.actor_kind, "id": record.actor_id, "role": record.actor_role},
        "entity": {"kind": record.entity_kind, "id": record.entity_id},
        "action": record.action,
        "before": _json_field(record.before),
        "after": _json_field(record.after),
        "reason": record.reason,
        "hash": record.hash if isinstance(record, AuditRecord) else None,
    }


def order_summary_view(order: Order) -> dict[str, Any]:
    return {
        "number": order.number,
        "status": order.status.value,
        "currency": order.currency.code,
        "customer_id": order.customer_id,
        "payable": str(order.amounts.payable.amount),
        "paid": str(order.amounts.paid.amount),
        "refunded": str(order.amounts.refunded.amount),
        "created_at": _time(order.created_at),
        "flags": sorted(order.tags),
        "special": order.special,
    }


def order_view(
    order: Order,
    customer: Customer | None = None,
    log: tuple[AuditRecord | PendingAuditRecord, ...] | list[AuditRecord | PendingAuditRecord] = (),
    *,
    coupons: tuple[tuple[str, str], ...] = (),
    wallet_entries: tuple[LedgerEntry, ...] = (),
    payments: tuple[PaymentAttempt, ...] = (),
    anomalies: tuple[Anomaly, ...] = (),
    activation: Mapping[str, Any] | None = None,
    refunds: tuple[Refund, ...] = (),
    issues: tuple[AfterSalesIssue, ...] = (),
) -> dict[str, Any]:
    """The full order: breakdown, lines, payments, refunds, after-sales issues, history,
    notes, communications, log."""
    return {
        "number": order.number,
        "status": order.status.value,
        "cancel_reason": order.cancel_reason.value if order.cancel_reason else None,
        "currency": order.currency.code,
        "customer": customer_view(customer) if customer else {"id": order.customer_id},
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "specs": _specs(line.specs),
                "unit_price": str(line.unit_price.amount),
                "quantity": line.quantity,
                "total": str(line.total.amount),
            }
            for line in order.lines
        ],
        "amounts": order.amounts.as_dict(),
        "adjustments": [
            {
                "kind": a.kind.value,
                "amount": str(a.amount.amount),
                "label": a.label,
                "per_line": [str(p.amount) for p in a.per_line],
            }
            for a in order.amounts.adjustments
        ],
        "created_at": _time(order.created_at),
        "paid_at": _time(order.paid_at),
        "completed_at": _time(order.completed_at),
        "canceled_at": _time(order.canceled_at),
        "refunded_at": _time(order.refunded_at),
        "payment_deadline": _time(order.payment_deadline),
        "special": order.special,
        "flags": sorted(order.tags),
        "payments": [attempt_view(a) for a in payments],
        "anomalies": [anomaly_view(a) for a in anomalies],
        "activation": None
        if activation is None
        else {
            "mode": activation["mode"],
            "due_at": _time(activation["due_at"]),
            "attempts": activation["attempts"],
            "error": activation["error"],
        },
        "refunds": [refund_view(r) for r in refunds],
        "issues": [issue_view(i) for i in issues],
        "history": [
            {
                "from": t.source.value,
                "to": t.target.value,
                "event": t.event.value,
                "actor": str(t.actor),
                "reason": t.reason,
                "at": _time(t.at),
            }
            for t in order.history
        ],
        "notes": [
            {"text": n.text, "author": str(n.author), "at": _time(n.at)} for n in order.notes
        ],
        "communications": [communication_view(c) for c in order.communications],
        "coupons": [{"code": code, "status": status} for code, status in coupons],
        "wallet": [ledger_entry_view(e) for e in wallet_entries],
        "log": [audit_record_view(r) for r in log],
        "version": order.version,
    }
