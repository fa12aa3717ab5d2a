"""The export's field catalogue (pure: no I/O, no clock).

An export row is built from an :class:`OrderRecord` (one order with its customer, lines,
tags, note count and settling payment, as the export query reads them) by the getters of the
fields asked for, in the order asked for. Every field has a name (``--fields``), a column
title, a kind (how writers write it) and, for personal data, the mask applied unless an
operator with ``orders.export_unmasked`` asks otherwise. ``docs/concepts/export.md`` lists
the catalogue; :data:`FIELDS` is the source of that list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

from attrs import define, frozen

from ordercore._errors import InvalidField

from .masking import MaskKind, mask

__all__ = [
    "ADJUSTMENT_FIELDS",
    "DEFAULT_FIELDS",
    "FIELDS",
    "ExportField",
    "FieldKind",
    "OrderRecord",
    "Value",
    "resolve_fields",
    "row_values",
]

FieldKind = Literal["text", "amount", "time", "int", "bool"]
#: A cell's value before a writer formats it: text, a whole number, a yes/no, an exact
#: amount (a Decimal with the currency's decimals), a UTC time, or nothing.
Value = str | int | bool | Decimal | datetime | None


@define(slots=True)
class OrderRecord:
    """One order as the export reads it (plain values; amounts in minor units)."""

    id: int
    number: str
    status: str
    cancel_reason: str | None
    currency: str
    minor_units: int
    original_minor: int
    payable_minor: int
    paid_minor: int
    refunded_minor: int
    adjustments: str
    channel: str | None
    special: bool
    created_at: datetime
    paid_at: datetime | None
    completed_at: datetime | None
    canceled_at: datetime | None
    refunded_at: datetime | None
    customer_id: int
    customer_ref: str | None
    customer_name: str
    customer_email: str | None
    customer_phone: str | None
    #: ``(sku, name, quantity)`` in line order
    lines: list[tuple[str, str, int]]
    tags: list[str]
    notes_count: int = 0
    method: str | None = None
    out_trade_no: str | None = None
    trade_no: str | None = None
    payer_ip: str | None = None

    def amount(self, minor: int) -> Decimal:
        """``minor`` units as an exact Decimal with the currency's decimals."""
        return Decimal(minor).scaleb(-self.minor_units)


#: What each field needs beyond the ``orders`` and ``customers`` columns: the export query
#: reads a detail table only when a chosen field needs it.
Need = Literal[
    "lines",
    "tags",
    "notes",
    "payment",
    "ip",
    "paid_at",
    "completed_at",
    "canceled_at",
    "refunded_at",
]


@frozen
class ExportField:
    """One column of an export."""

    name: str
    title: str
    kind: FieldKind
    description: str
    get: Callable[[OrderRecord], Value]
    mask: MaskKind | None = None
    needs: Need | None = None


def _adjustment(kind: str) -> Callable[[OrderRecord], Value]:
    def get(r: OrderRecord) -> Value:
        total = sum(int(a["amount"]) for a in json.loads(r.adjustments) if a["kind"] == kind)
        return r.amount(total)

    return get


def _products(r: OrderRecord) -> str:
    return "; ".join(f"{name} ×{qty}" for _sku, name, qty in r.lines)


def _skus(r: OrderRecord) -> str:
    return "; ".join(f"{sku}:{qty}" for sku, _name, qty in r.lines)


_F = ExportField
_BASE: Final[tuple[ExportField, ...]] = (
    _F("number", "Order number", "text", "The order number.", lambda r: r.number),
    _F(
        "status",
        "Status",
        "text",
        "pending, paid, completed, canceled or refunded.",
        lambda r: r.status,
    ),
    _F(
        "cancel_reason",
        "Cancel reason",
        "text",
        "Why a canceled order was canceled.",
        lambda r: r.cancel_reason,
    ),
    _F(
        "created_at",
        "Created",
        "time",
        "When the order was created (in --tz).",
        lambda r: r.created_at,
    ),
    _F("paid_at", "Paid", "time", "When it was paid.", lambda r: r.paid_at, needs="paid_at"),
    _F(
        "completed_at",
        "Completed",
        "time",
        "When it was activated.",
        lambda r: r.completed_at,
        needs="completed_at",
    ),
    _F(
        "canceled_at",
        "Canceled",
        "time",
        "When it was canceled.",
        lambda r: r.canceled_at,
        needs="canceled_at",
    ),
    _F(
        "refunded_at",
        "Refunded",
        "time",
        "When refunds reached the paid amount.",
        lambda r: r.refunded_at,
        needs="refunded_at",
    ),
    _F("customer_id", "Customer id", "int", "The customer's id.", lambda r: r.customer_id),
    _F(
        "customer_ref",
        "Customer reference",
        "text",
        "The host's reference for the customer.",
        lambda r: r.customer_ref,
    ),
    _F(
        "customer_name",
        "Customer",
        "text",
        "The customer's name (masked: 张*, L** Lei).",
        lambda r: r.customer_name,
        mask="name",
    ),
    _F(
        "customer_email",
        "E-mail",
        "text",
        "The customer's e-mail (masked: z***@example.com).",
        lambda r: r.customer_email,
        mask="email",
    ),
    _F(
        "customer_phone",
        "Phone",
        "text",
        "The customer's phone (masked: 138****5678).",
        lambda r: r.customer_phone,
        mask="phone",
    ),
    _F(
        "products",
        "Products",
        "text",
        "Product names and quantities: `Pro plan ×2; Add-on ×1`.",
        _products,
        needs="lines",
    ),
    _F("skus", "SKUs", "text", "Skus and quantities: `plan-pro:2; addon:1`.", _skus, needs="lines"),
    _F(
        "quantity",
        "Quantity",
        "int",
        "The total quantity of the order's lines.",
        lambda r: sum(q for _s, _n, q in r.lines),
        needs="lines",
    ),
    _F("currency", "Currency", "text", "The order's currency code.", lambda r: r.currency),
    _F(
        "original",
        "Original",
        "amount",
        "The lines' total before any adjustment.",
        lambda r: r.amount(r.original_minor),
    ),
)

#: The adjustment kinds of the amount breakdown, each a field of its own (a positive amount).
ADJUSTMENT_FIELDS: Final = (
    ("tier_discount", "Tier discount", "Quantity-tier discounts."),
    ("coupon", "Coupon", "The coupon discount."),
    ("manual_discount", "Manual discount", "An operator's discount."),
    ("balance", "Balance used", "Account balance used."),
    ("points", "Points used", "The value of the points used."),
    ("fee", "Fee", "The channel fee the customer bears."),
    ("merchant_fee", "Merchant fee", "The channel fee the merchant bears (not charged)."),
)

_MONEY: Final[tuple[ExportField, ...]] = (
    _F(
        "payable",
        "Payable",
        "amount",
        "What the customer pays.",
        lambda r: r.amount(r.payable_minor),
    ),
    _F("paid", "Paid", "amount", "What was paid.", lambda r: r.amount(r.paid_minor)),
    _F(
        "refunded",
        "Refunded",
        "amount",
        "What was refunded so far.",
        lambda r: r.amount(r.refunded_minor),
    ),
    _F("channel", "Channel", "text", "The payment channel.", lambda r: r.channel),
    _F(
        "method",
        "Method",
        "text",
        "The method of the successful payment (native, page...).",
        lambda r: r.method,
        needs="payment",
    ),
    _F(
        "out_trade_no",
        "Out trade no",
        "text",
        "ordercore's number of the successful payment.",
        lambda r: r.out_trade_no,
        needs="payment",
    ),
    _F(
        "trade_no",
        "Trade no",
        "text",
        "The channel's number of the successful payment.",
        lambda r: r.trade_no,
        needs="payment",
    ),
    _F(
        "payer_ip",
        "Payer IP",
        "text",
        "The address the last payment notification came from (masked: 203.0.*.*).",
        lambda r: r.payer_ip,
        mask="ip",
        needs="ip",
    ),
    _F("special", "Special", "bool", "Whether the order is marked special.", lambda r: r.special),
    _F(
        "tags",
        "Tags",
        "text",
        "The order's flags, space-separated.",
        lambda r: " ".join(r.tags),
        needs="tags",
    ),
    _F(
        "notes_count",
        "Notes",
        "int",
        "How many notes the order has.",
        lambda r: r.notes_count,
        needs="notes",
    ),
)

#: Every field, by name, in catalogue order.
FIELDS: Final[dict[str, ExportField]] = {
    f.name: f
    for f in (
        *_BASE,
        *(
            _F(kind, title, "amount", text, _adjustment(kind))
            for kind, title, text in ADJUSTMENT_FIELDS
        ),
        *_MONEY,
    )
}

#: The fields of an export without ``--fields``.
DEFAULT_FIELDS: Final = (
    "number",
    "created_at",
    "status",
    "customer_name",
    "customer_email",
    "products",
    "currency",
    "payable",
    "paid",
    "refunded",
    "channel",
    "method",
    "trade_no",
)


def resolve_fields(names: Iterable[str] | str | None) -> tuple[ExportField, ...]:
    """The fields named (a sequence, or comma-separated text), in that order; None gives
    :data:`DEFAULT_FIELDS`. An unknown or repeated name is an :class:`InvalidField` that
    lists the valid ones."""
    if names is None:
        return tuple(FIELDS[n] for n in DEFAULT_FIELDS)
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen: list[ExportField] = []
    for raw in items:
        name = raw.strip() if isinstance(raw, str) else raw
        if name not in FIELDS:
            raise InvalidField(
                f"unknown export field {name!r}; valid fields: {', '.join(FIELDS)}",
                field="fields",
                value=str(name),
            )
        if any(f.name == name for f in chosen):
            raise InvalidField(f"export field {name!r} is given twice", field="fields")
        chosen.append(FIELDS[name])
    if not chosen:
        raise InvalidField(
            f"give at least one export field; valid fields: {', '.join(FIELDS)}", field="fields"
        )
    return tuple(chosen)


def row_values(fields: Sequence[ExportField], record: OrderRecord, *, masked: bool) -> list[Value]:
    """The values of ``record`` for ``fields``, personal data masked when ``masked``."""
    out: list[Value] = []
    for f in fields:
        value = f.get(record)
        if masked and f.mask is not None and isinstance(value, str):
            value = mask(f.mask, value)
        out.append(value)
    return out


def needs(fields: Sequence[ExportField]) -> frozenset[str]:
    """The detail tables the ``fields`` need (see :data:`Need`)."""
    return frozenset(f.needs for f in fields if f.needs is not None)


def describe(fields: Sequence[ExportField]) -> list[dict[str, Any]]:
    """The catalogue as plain data (for ``--json`` and the docs)."""
    return [
        {
            "name": f.name,
            "title": f.title,
            "kind": f.kind,
            "masked": f.mask,
            "description": f.description,
        }
        for f in fields
    ]
