"""The pure order domain: customers, products, orders and their lines (amounts are in
:mod:`.amounts`).

No I/O, no clock, no database: times come in as arguments, and every change an aggregate
makes to itself is collected in ``pending_audit`` for the unit of work to store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from attrs import define, field, frozen

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._errors import (
    CurrencyMismatch,
    IllegalTransition,
    InvalidAmount,
    InvalidEmail,
    InvalidField,
    InvalidQuantity,
)
from ordercore._money import Currency, Money, to_decimal
from ordercore._state import ORDER_MACHINE, CancelReason, OrderEvent, OrderStatus, Transition

from .amounts import AmountBreakdown

__all__ = [
    "Communication",
    "Customer",
    "Note",
    "Order",
    "OrderLine",
    "Product",
    "QuantityTier",
    "SpecValue",
]

SpecValue = str | int | bool | Decimal

_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z")
_PHONE: Final = re.compile(r"\+?[0-9][0-9 ()\-]{4,30}\Z")
_SKU: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}\Z")
_TAG: Final = re.compile(r"[a-z0-9][a-z0-9_\-:.]{0,39}\Z")
_SPEC_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,39}\Z")


def _aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidField(f"{name} must be timezone-aware (UTC)", field=name)


def _text(value: object, name: str, *, max_len: int = 200, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidField(f"{name} must be text", field=name)
    if not allow_empty and not value.strip():
        raise InvalidField(f"{name} must not be empty", field=name)
    if len(value) > max_len:
        raise InvalidField(f"{name} is longer than {max_len} characters", field=name)
    if "\x00" in value:
        raise InvalidField(f"{name} must not contain NUL characters", field=name)
    return value


def validate_email(email: str) -> str:
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email):
        raise InvalidEmail(f"{email!r} is not an e-mail address", field="email", value=email)
    return email


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise InvalidField(
            f"flag {tag!r} must be 1-40 lower-case letters, digits or _-:.", field="flag"
        )
    return tag


def _specs(value: Mapping[str, Any]) -> Mapping[str, SpecValue]:
    out: dict[str, SpecValue] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _SPEC_KEY.match(key):
            raise InvalidField(f"spec name {key!r} must be an identifier", field="specs")
        if isinstance(val, float):
            raise InvalidField(
                f"spec {key} must not be a float; use text or Decimal", field="specs"
            )
        if not isinstance(val, (str, int, bool, Decimal)):
            raise InvalidField(
                f"spec {key} has unsupported type {type(val).__name__}", field="specs"
            )
        out[key] = val
    return dict(sorted(out.items()))


@frozen
class Customer:
    """A customer of the host application."""

    name: str
    email: str | None = None
    phone: str | None = None
    external_ref: str | None = None
    identity_verified: bool = False
    id: int | None = None
    created_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        _text(self.name, "name")
        if self.email is not None:
            # E-mail addresses are compared case-insensitively everywhere: stored lower-case.
            object.__setattr__(self, "email", validate_email(self.email).lower())
        if self.phone is not None and (
            not isinstance(self.phone, str) or not _PHONE.match(self.phone)
        ):
            raise InvalidField(f"{self.phone!r} is not a phone number", field="phone")
        if self.external_ref is not None:
            _text(self.external_ref, "external_ref", max_len=128)
            if self.external_ref != self.external_ref.strip():
                raise InvalidField(
                    "external_ref must not start or end with white space", field="external_ref"
                )
        _aware(self.created_at, "created_at")


def _percent(value: object) -> Decimal:
    try:
        pct = to_decimal(value, what="percent")
    except InvalidAmount:
        raise InvalidField(f"percent {value!r} is not a decimal number", field="percent") from None
    if not Decimal(0) < pct <= Decimal(100):
        raise InvalidField(f"percent must be above 0 and at most 100, not {pct}", field="percent")
    return pct


def _tier_quantity(value: object) -> int:
    return _quantity(value)


@frozen
class QuantityTier:
    """From ``min_quantity`` units on, each unit costs ``percent_off`` % less (3+ months −10 %)."""

    min_quantity: int = field(converter=_tier_quantity)
    percent_off: Decimal = field(converter=_percent)


def _tiers(value: Iterable[QuantityTier]) -> tuple[QuantityTier, ...]:
    tiers = tuple(value)
    for tier in tiers:
        if not isinstance(tier, QuantityTier):
            raise InvalidField("tiers must be QuantityTier values", field="tiers")
    ordered = tuple(sorted(tiers, key=lambda t: t.min_quantity))
    if len({t.min_quantity for t in ordered}) != len(ordered):
        raise InvalidField("two tiers start at the same quantity", field="tiers")
    return ordered


@frozen
class Product:
    """Something the business sells: a plan, a top-up, a licence."""

    sku: str
    name: str
    price: Money
    specs: Mapping[str, SpecValue] = field(factory=dict, converter=_specs)
    stock: int | None = None
    low_stock_threshold: int | None = None
    active: bool = True
    tiers: tuple[QuantityTier, ...] = field(default=(), converter=_tiers)
    activation_mode: str = "auto"
    activation_delay_minutes: int | None = None
    id: int | None = None
    created_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.sku, str) or not _SKU.match(self.sku):
            raise InvalidField(
                f"sku {self.sku!r} must be 1-64 letters, digits or ._- (starting with a letter "
                "or digit)",
                field="sku",
            )
        _text(self.name, "name")
        if not isinstance(self.price, Money):
            raise InvalidAmount("price must be Money", field="price")
        if self.price.is_negative():
            raise InvalidAmount(f"price must not be negative ({self.price})", field="price")
        for name in ("stock", "low_stock_threshold"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidField(f"{name} must be a whole number ≥ 0", field=name)
        _aware(self.created_at, "created_at")
        if self.activation_mode not in ("auto", "manual", "delayed"):
            raise InvalidField(
                f"activation must be auto, manual or delayed, not {self.activation_mode!r}",
                field="activation_mode",
            )
        delay = self.activation_delay_minutes
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, int) or delay < 0
        ):
            raise InvalidField(
                "activation delay must be whole minutes ≥ 0", field="activation_delay"
            )

    def tier_for(self, quantity: int) -> QuantityTier | None:
        """The best tier that ``quantity`` reaches, if any."""
        best = None
        for tier in self.tiers:
            if quantity >= tier.min_quantity:
                best = tier
        return best

    @property
    def low_on_stock(self) -> bool:
        return (
            self.stock is not None
            and self.low_stock_threshold is not None
            and self.stock <= self.low_stock_threshold
        )


def _quantity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidQuantity(f"quantity must be a whole number ≥ 1, not {value!r}", value=value)
    return value


@frozen
class OrderLine:
    """One line of an order: a snapshot of the product as it was sold."""

    sku: str
    name: str
    unit_price: Money
    quantity: int = field(converter=_quantity)
    specs: Mapping[str, SpecValue] = field(factory=dict, converter=_specs)
    product_id: int | None = None
    tier_percent_off: Decimal | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.sku, str) or not _SKU.match(self.sku):
            raise InvalidField(f"line sku {self.sku!r} is not a sku", field="sku")
        _text(self.name, "name")
        if not isinstance(self.unit_price, Money):
            raise InvalidAmount("a line's unit price must be Money", field="unit_price")
        if self.unit_price.is_negative():
            raise InvalidAmount(
                f"line {self.sku}: unit price must not be negative ({self.unit_price})",
                field="unit_price",
            )
        if self.tier_percent_off is not None:
            object.__setattr__(self, "tier_percent_off", _percent(self.tier_percent_off))

    @classmethod
    def from_product(cls, product: Product, quantity: int) -> OrderLine:
        tier = product.tier_for(quantity)
        return cls(
            sku=product.sku,
            name=product.name,
            unit_price=product.price,
            quantity=quantity,
            specs=product.specs,
            product_id=product.id,
            tier_percent_off=tier.percent_off if tier else None,
        )

    @property
    def total(self) -> Money:
        return self.unit_price * self.quantity


@frozen
class Note:
    """An internal note on an order."""

    text: str
    author: Actor
    at: datetime

    def __attrs_post_init__(self) -> None:
        _text(self.text, "note", max_len=4000)
        _aware(self.at, "at")


@frozen
class Communication:
    """A record of contact with the customer (e-mail, phone call, chat message...)."""

    channel: str
    text: str
    author: Actor
    at: datetime
    direction: str = "outbound"

    def __attrs_post_init__(self) -> None:
        _text(self.channel, "channel", max_len=32)
        _text(self.text, "text", max_len=4000)
        if self.direction not in ("inbound", "outbound"):
            raise InvalidField("direction must be inbound or outbound", field="direction")
        _aware(self.at, "at")


@define
class Order:
    """The order aggregate. Its status changes only through :data:`ORDER_MACHINE`.

    Every change appends an :class:`AuditEntry` to ``pending_audit`` (and every status change
    a :class:`Transition` to ``history``); the unit of work stores them with the order.
    """

    number: str
    customer_id: int
    lines: tuple[OrderLine, ...]
    amounts: AmountBreakdown
    created_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    cancel_reason: CancelReason | None = None
    paid_at: datetime | None = None
    completed_at: datetime | None = None
    canceled_at: datetime | None = None
    refunded_at: datetime | None = None
    payment_deadline: datetime | None = None
    special: bool = False
    tags: frozenset[str] = frozenset()
    notes: list[Note] = field(factory=list)
    communications: list[Communication] = field(factory=list)
    history: list[Transition[OrderStatus, OrderEvent]] = field(factory=list)
    id: int | None = None
    version: int = 0
    pending_audit: list[AuditEntry] = field(factory=list, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.lines:
            raise InvalidField("an order needs at least one line", field="lines")
        for line in self.lines:
            if line.unit_price.currency != self.amounts.currency:
                raise CurrencyMismatch(
                    f"order {self.number}: line {line.sku} is in {line.unit_price.currency.code}, "
                    f"the order in {self.amounts.currency.code}",
                    order=self.number,
                )
        for name in (
            "created_at",
            "paid_at",
            "completed_at",
            "canceled_at",
            "refunded_at",
            "payment_deadline",
        ):
            _aware(getattr(self, name), name)

    @property
    def currency(self) -> Currency:
        return self.amounts.currency

    # -- state changes ---------------------------------------------------------------
    def _record(
        self,
        action: str,
        actor: Actor,
        at: datetime,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        reason: str | None = None,
    ) -> None:
        _aware(at, "at")
        self.pending_audit.append(
            AuditEntry(
                entity_kind="order",
                entity_id=self.number,
                action=action,
                actor=actor,
                at=at,
                before=before,
                after=after,
                reason=reason,
            )
        )

    def _apply(
        self, event: OrderEvent, actor: Actor, at: datetime, reason: str | None
    ) -> Transition[OrderStatus, OrderEvent]:
        transition = ORDER_MACHINE.transition(
            self.number, self.status, event, actor=actor, at=at, reason=reason
        )
        self.status = transition.target
        self.history.append(transition)
        self._record(
            f"order.{event.value}",
            actor,
            at,
            {"status": transition.source.value},
            {"status": transition.target.value},
            reason,
        )
        return transition

    def mark_paid(
        self,
        amount: Money,
        actor: Actor,
        at: datetime,
        reason: str | None = None,
        *,
        accept_short: bool = False,
    ) -> Transition[OrderStatus, OrderEvent]:
        """Record that the payable amount arrived. Any other amount is refused, unless an
        operator accepts a smaller positive amount (``accept_short``: an amount mismatch
        settled by decision); the order is then paid that amount."""
        _aware(at, "at")
        ORDER_MACHINE.next_state(self.number, self.status, OrderEvent.PAY)
        if amount.currency != self.currency:
            raise CurrencyMismatch(
                f"order {self.number} is in {self.currency.code}, paid {amount}",
                order=self.number,
            )
        short_ok = accept_short and amount.is_positive() and amount < self.amounts.payable
        if amount != self.amounts.payable and not short_ok:
            raise InvalidAmount(
                f"order {self.number}: paid {amount} but {self.amounts.payable} is payable",
                order=self.number,
            )
        transition = self._apply(OrderEvent.PAY, actor, at, reason)
        self.amounts = AmountBreakdown(
            original=self.amounts.original,
            payable=self.amounts.payable,
            adjustments=self.amounts.adjustments,
            paid=amount,
            refunded=self.amounts.refunded,
        )
        self.paid_at = at
        return transition

    def complete(
        self, actor: Actor, at: datetime, reason: str | None = None
    ) -> Transition[OrderStatus, OrderEvent]:
        """What was bought has been activated."""
        _aware(at, "at")
        transition = self._apply(OrderEvent.COMPLETE, actor, at, reason)
        self.completed_at = at
        return transition

    def cancel(
        self, cancel_reason: CancelReason | str, actor: Actor, at: datetime, note: str | None = None
    ) -> Transition[OrderStatus, OrderEvent]:
        """Give the order up before payment. A paid order must be refunded instead."""
        _aware(at, "at")
        try:
            why = CancelReason(cancel_reason)
        except ValueError:
            reasons = ", ".join(r.value for r in CancelReason)
            raise InvalidField(
                f"cancel reason must be one of {reasons}, not {cancel_reason!r}", field="reason"
            ) from None
        if self.status in (OrderStatus.PAID, OrderStatus.COMPLETED):
            raise IllegalTransition(
                f"order {self.number} is {self.status.value}: a paid order cannot be cancelled, "
                "refund it instead",
                machine="order",
                entity=self.number,
                state=self.status,
                event=OrderEvent.CANCEL,
            )
        reason = why.value if not note else f"{why.value}: {note}"
        transition = self._apply(OrderEvent.CANCEL, actor, at, reason)
        self.cancel_reason = why
        self.canceled_at = at
        return transition

    def record_refund(
        self, amount: Money, actor: Actor, at: datetime, reason: str | None = None
    ) -> Transition[OrderStatus, OrderEvent] | None:
        """Add a completed refund. Reaching the paid amount moves the order to ``refunded``;
        a partial refund keeps the status and only raises the refunded amount."""
        _aware(at, "at")
        if self.status not in (OrderStatus.PAID, OrderStatus.COMPLETED):
            ORDER_MACHINE.next_state(self.number, self.status, OrderEvent.REFUND)
        if not amount.is_positive():
            raise InvalidAmount(f"a refund must be positive, not {amount}", order=self.number)
        if amount.currency != self.currency:
            raise CurrencyMismatch(
                f"order {self.number} is in {self.currency.code}, refund in {amount.currency.code}",
                order=self.number,
            )
        new_refunded = self.amounts.refunded + amount
        if new_refunded > self.amounts.paid:
            raise InvalidAmount(
                f"order {self.number}: refunding {amount} would exceed the paid "
                f"{self.amounts.paid} (already refunded {self.amounts.refunded})",
                order=self.number,
            )
        before = str(self.amounts.refunded.amount)
        self.amounts = AmountBreakdown(
            original=self.amounts.original,
            payable=self.amounts.payable,
            adjustments=self.amounts.adjustments,
            paid=self.amounts.paid,
            refunded=new_refunded,
        )
        self._record(
            "order.refunded_amount",
            actor,
            at,
            {"refunded": before},
            {"refunded": str(new_refunded.amount)},
            reason,
        )
        if new_refunded == self.amounts.paid:
            transition = self._apply(OrderEvent.REFUND, actor, at, reason)
            self.refunded_at = at
            return transition
        return None

    # -- operator actions ------------------------------------------------------------
    def add_note(self, text: str, actor: Actor, at: datetime) -> Note:
        note = Note(text=text, author=actor, at=at)
        self.notes.append(note)
        self._record("order.note", actor, at, None, {"note": text})
        return note

    def add_communication(
        self, channel: str, text: str, actor: Actor, at: datetime, direction: str = "outbound"
    ) -> Communication:
        record = Communication(channel=channel, text=text, author=actor, at=at, direction=direction)
        self.communications.append(record)
        self._record(
            "order.communication",
            actor,
            at,
            None,
            {"channel": channel, "direction": direction, "text": text},
        )
        return record

    def set_special(
        self, special: bool, actor: Actor, at: datetime, reason: str | None = None
    ) -> None:
        if special == self.special:
            return
        self._record(
            "order.special", actor, at, {"special": self.special}, {"special": special}, reason
        )
        self.special = special

    def add_tag(self, tag: str, actor: Actor, at: datetime) -> None:
        validate_tag(tag)
        if tag in self.tags:
            return
        before = sorted(self.tags)
        self.tags = self.tags | {tag}
        self._record("order.flag", actor, at, {"tags": before}, {"tags": sorted(self.tags)})

    def remove_tag(self, tag: str, actor: Actor, at: datetime) -> None:
        if tag not in self.tags:
            raise InvalidField(f"order {self.number} has no flag {tag!r}", field="flag")
        before = sorted(self.tags)
        self.tags = self.tags - {tag}
        self._record("order.unflag", actor, at, {"tags": before}, {"tags": sorted(self.tags)})
