"""The export's field catalogue (pure: no I/O, no clock).

An export row is built from an :class:`OrderRecord` (one order with its customer, lines,
tags, note count and settling payment, as the export query reads them) by the getters of the
fields asked for, in the order asked for. Every field has a name (``--fields``), a column
title, a kind (how writers write it) and, for personal data, the mask applied unless an
operator with ``orders.export_unmasked`` asks otherwise. ``docs/concepts/export.md`` lists
the catalogue; :data:`FIELDS` is the source of that list.

A record is a named tuple, not an attrs class: an export builds one per order, a million
for a large book, and a tuple is the cheapest thing Python builds (the columns the export
query reads come first, in :data:`QUERY_COLUMNS`, so that the query's row is its start).
An amount field also carries its amount in minor units (:attr:`ExportField.minor`), which
the CSV writer turns into exact text with integer arithmetic instead of a Decimal a cell.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple

from attrs import frozen

from ordercore._errors import InvalidField

from .masking import MaskKind, mask

__all__ = [
    "ADJUSTMENT_FIELDS",
    "DEFAULT_FIELDS",
    "FIELDS",
    "QUERY_COLUMNS",
    "TIMES",
    "TIMES_AT",
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


class OrderRecord(NamedTuple):
    """One order as the export reads it (plain values; amounts in minor units; times
    timezone-aware)."""

    id: int
    number: str
    status: str
    cancel_reason: str | None
    currency: str
    original_minor: int
    payable_minor: int
    paid_minor: int
    refunded_minor: int
    adjustments: str
    channel: str | None
    #: true or false (SQLite and MariaDB give 1 or 0)
    special: bool | int
    customer_id: int
    customer_ref: str | None
    customer_name: str
    customer_email: str | None
    customer_phone: str | None
    #: the settling payment: the last succeeded attempt's
    method: str | None
    out_trade_no: str | None
    trade_no: str | None
    created_at: datetime
    paid_at: datetime | None
    completed_at: datetime | None
    canceled_at: datetime | None
    refunded_at: datetime | None
    #: the currency's decimals (from here on: not a column of the export query)
    minor_units: int
    #: ``(sku, name, quantity)`` in line order
    lines: Sequence[tuple[str, str, int]] = ()
    tags: Sequence[str] = ()
    notes_count: int = 0
    payer_ip: str | None = None

    def amount(self, minor: int) -> Decimal:
        """``minor`` units as an exact Decimal with the currency's decimals."""
        return Decimal(minor).scaleb(-self.minor_units)


#: The fields of :class:`OrderRecord` the export query reads, in its column order (the
#: times last: they are the ones a reader may have to convert).
QUERY_COLUMNS: Final = OrderRecord._fields[: OrderRecord._fields.index("minor_units")]
#: The times of a record, in their order, from :data:`TIMES_AT` on.
TIMES: Final = ("created_at", "paid_at", "completed_at", "canceled_at", "refunded_at")
TIMES_AT: Final = OrderRecord._fields.index("created_at")


#: What a field needs beyond the record's column it shows (if any): a detail table, a time
#: (``paid_at``...), or the column a computed value comes from. The export query reads a
#: detail table, or a column, only when a chosen field needs it.
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
    "special",
    "adjustments",
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
    #: the attribute of the record ``get`` reads as it is (for an amount: its minor units),
    #: or None when ``get`` computes the value
    column: str | None = None
    #: for an amount: the amount in minor units (``get`` is it as a Decimal)
    minor: Callable[[OrderRecord], int] | None = None


def _column(name: str) -> Callable[[OrderRecord], Any]:
    """The getter of the record's attribute ``name``."""
    i = OrderRecord._fields.index(name)
    return lambda r: r[i]


def _F(
    name: str,
    title: str,
    kind: FieldKind,
    description: str,
    get: Callable[[OrderRecord], Value] | str,
    *,
    mask: MaskKind | None = None,
    needs: Need | None = None,
) -> ExportField:
    """A field; ``get`` a function of the record, or the name of the attribute shown."""
    if isinstance(get, str):
        return ExportField(name, title, kind, description, _column(get), mask, needs, column=get)
    return ExportField(name, title, kind, description, get, mask, needs)


def _amount_field(
    name: str,
    title: str,
    description: str,
    minor: Callable[[OrderRecord], int] | str,
    needs: Need | None = None,
) -> ExportField:
    """An amount field; ``minor`` the amount in minor units, or the attribute holding it."""
    column = minor if isinstance(minor, str) else None
    in_minor: Callable[[OrderRecord], int] = _column(minor) if isinstance(minor, str) else minor

    def get(r: OrderRecord) -> Value:
        return r.amount(in_minor(r))

    return ExportField(
        name, title, "amount", description, get, needs=needs, column=column, minor=in_minor
    )


@lru_cache(maxsize=1024)
def _adjustment_totals(adjustments: str) -> dict[str, int]:
    """The adjustments column (JSON) as the total of each kind, in minor units. Cached: most
    orders share a handful of texts (``[]`` above all)."""
    totals: dict[str, int] = {}
    for a in json.loads(adjustments):
        totals[a["kind"]] = totals.get(a["kind"], 0) + int(a["amount"])
    return totals


def _adjustment(kind: str) -> Callable[[OrderRecord], int]:
    def minor(r: OrderRecord) -> int:
        return _adjustment_totals(r.adjustments).get(kind, 0)

    return minor


def _products(r: OrderRecord) -> str:
    return "; ".join([f"{name} ×{qty}" for _sku, name, qty in r.lines])


def _skus(r: OrderRecord) -> str:
    return "; ".join([f"{sku}:{qty}" for sku, _name, qty in r.lines])


_BASE: Final[tuple[ExportField, ...]] = (
    _F("number", "Order number", "text", "The order number.", "number"),
    _F(
        "status",
        "Status",
        "text",
        "pending, paid, completed, canceled or refunded.",
        "status",
    ),
    _F(
        "cancel_reason",
        "Cancel reason",
        "text",
        "Why a canceled order was canceled.",
        "cancel_reason",
    ),
    _F(
        "created_at",
        "Created",
        "time",
        "When the order was created (in --tz).",
        "created_at",
    ),
    _F("paid_at", "Paid", "time", "When it was paid.", "paid_at", needs="paid_at"),
    _F(
        "completed_at",
        "Completed",
        "time",
        "When it was activated.",
        "completed_at",
        needs="completed_at",
    ),
    _F(
        "canceled_at",
        "Canceled",
        "time",
        "When it was canceled.",
        "canceled_at",
        needs="canceled_at",
    ),
    _F(
        "refunded_at",
        "Refunded",
        "time",
        "When refunds reached the paid amount.",
        "refunded_at",
        needs="refunded_at",
    ),
    _F("customer_id", "Customer id", "int", "The customer's id.", "customer_id"),
    _F(
        "customer_ref",
        "Customer reference",
        "text",
        "The host's reference for the customer.",
        "customer_ref",
    ),
    _F(
        "customer_name",
        "Customer",
        "text",
        "The customer's name (masked: 张*, L** Lei).",
        "customer_name",
        mask="name",
    ),
    _F(
        "customer_email",
        "E-mail",
        "text",
        "The customer's e-mail (masked: z***@example.com).",
        "customer_email",
        mask="email",
    ),
    _F(
        "customer_phone",
        "Phone",
        "text",
        "The customer's phone (masked: 138****5678).",
        "customer_phone",
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
    _F("currency", "Currency", "text", "The order's currency code.", "currency"),
    _amount_field(
        "original", "Original", "The lines' total before any adjustment.", "original_minor"
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
    _amount_field("payable", "Payable", "What the customer pays.", "payable_minor"),
    _amount_field("paid", "Paid", "What was paid.", "paid_minor"),
    _amount_field("refunded", "Refunded", "What was refunded so far.", "refunded_minor"),
    _F("channel", "Channel", "text", "The payment channel.", "channel"),
    _F(
        "method",
        "Method",
        "text",
        "The method of the successful payment (native, page...).",
        "method",
        needs="payment",
    ),
    _F(
        "out_trade_no",
        "Out trade no",
        "text",
        "ordercore's number of the successful payment.",
        "out_trade_no",
        needs="payment",
    ),
    _F(
        "trade_no",
        "Trade no",
        "text",
        "The channel's number of the successful payment.",
        "trade_no",
        needs="payment",
    ),
    _F(
        "payer_ip",
        "Payer IP",
        "text",
        "The address the last payment notification came from (masked: 203.0.*.*).",
        "payer_ip",
        mask="ip",
        needs="ip",
    ),
    _F(
        "special",
        "Special",
        "bool",
        "Whether the order is marked special.",
        lambda r: bool(r.special),
        needs="special",
    ),
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
        "notes_count",
        needs="notes",
    ),
)

#: Every field, by name, in catalogue order.
FIELDS: Final[dict[str, ExportField]] = {
    f.name: f
    for f in (
        *_BASE,
        *(
            _amount_field(kind, title, text, _adjustment(kind), needs="adjustments")
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
    """What the export query must read for ``fields``: the detail tables and computed
    values they need (see :data:`Need`) and the record's columns they show. (A column no
    chosen field reads is left NULL: every column read costs, a million times.)"""
    out: set[str] = {f.needs for f in fields if f.needs is not None}
    out.update(f.column for f in fields if f.column is not None)
    return frozenset(out)


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
