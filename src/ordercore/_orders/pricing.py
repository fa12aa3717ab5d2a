"""Pricing: a pure function from an order's request to its itemised amount breakdown.

Steps, in this order, each on what the previous ones left:

1. line totals (unit price × quantity);
2. quantity-tier discounts per line (3+ months −10 %);
3. the coupon, on the lines it applies to (capped by its maximum and by its base);
4. an operator's manual discount (never more than what is left);
5. balance deduction, then 6. points deduction (never more than what is left);
7. the channel fee on what is left to pay: borne by the customer (added to payable) or by
   the merchant (shown, not charged).

Every discount and deduction says which line it fell on (largest-remainder allocation over
the lines' remaining amounts, so no minor unit is lost), and the breakdown's own invariants
(``payable = original − discounts − deductions + customer fee ≥ 0``) are checked on build.
"""

from __future__ import annotations

import decimal
import enum
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from attrs import field, frozen

from ordercore._errors import (
    CouponUnusable,
    CurrencyMismatch,
    DiscountTooLarge,
    InsufficientFunds,
    InvalidAmount,
    InvalidField,
)
from ordercore._money import Money, to_decimal

from .amounts import AdjustmentKind, AmountAdjustment, AmountBreakdown
from .domain import OrderLine

__all__ = [
    "Coupon",
    "CouponKind",
    "FeeRule",
    "ManualDiscount",
    "PricedOrder",
    "UseAll",
    "price_order",
]


class CouponKind(str, enum.Enum):
    PERCENT = "percent"
    FIXED = "fixed"

    def __str__(self) -> str:
        return self.value


def _percent(value: object) -> Decimal:
    pct = to_decimal(value, what="percent")
    if not Decimal(0) < pct <= Decimal(100):
        raise InvalidField(f"percent must be above 0 and at most 100, not {pct}", field="percent")
    return pct


def _positive_int(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidField(f"{name} must be a whole number ≥ 1", field=name)


@frozen
class Coupon:
    """A coupon: ``percent`` off (optionally capped by ``max_discount``) or a fixed ``amount``
    off, with a minimum order amount, a validity window, usage limits, product restrictions
    (``skus``; empty means every product) and an active flag. ``currency`` is the currency of
    its money fields (a coupon applies to orders in that currency only)."""

    code: str
    kind: CouponKind = field(converter=CouponKind)
    currency: str
    percent: Decimal | None = None
    amount: Money | None = None
    max_discount: Money | None = None
    min_amount: Money | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    limit_total: int | None = None
    limit_per_customer: int | None = None
    skus: frozenset[str] = frozenset()
    active: bool = True
    id: int | None = None

    def __attrs_post_init__(self) -> None:
        if (
            not isinstance(self.code, str)
            or not (1 <= len(self.code) <= 64)
            or not all(c.isalnum() or c in "-_" for c in self.code)
        ):
            raise InvalidField(
                f"coupon code {self.code!r} must be 1-64 letters, digits, - or _", field="code"
            )
        if self.kind is CouponKind.PERCENT:
            if self.percent is None or self.amount is not None:
                raise InvalidField(
                    "a percent coupon needs a percent and no amount", field="percent"
                )
            object.__setattr__(self, "percent", _percent(self.percent))
        else:
            if self.amount is None or self.percent is not None:
                raise InvalidField("a fixed coupon needs an amount and no percent", field="amount")
            if not self.amount.is_positive():
                raise InvalidAmount("a coupon's amount must be positive", field="amount")
        for name in ("amount", "max_discount", "min_amount"):
            value: Money | None = getattr(self, name)
            if value is not None:
                if value.currency.code != self.currency:
                    raise CurrencyMismatch(f"coupon {self.code}: {name} is not in {self.currency}")
                if value.is_negative():
                    raise InvalidAmount(
                        f"coupon {self.code}: {name} must not be negative", field=name
                    )
        for name in ("valid_from", "valid_until"):
            when: datetime | None = getattr(self, name)
            if when is not None and (when.tzinfo is None or when.utcoffset() is None):
                raise InvalidField(f"coupon {self.code}: {name} must be timezone-aware", field=name)
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise InvalidField("valid_from must be before valid_until", field="valid_until")
        _positive_int(self.limit_total, "limit_total")
        _positive_int(self.limit_per_customer, "limit_per_customer")

    def applies_to(self, sku: str) -> bool:
        return not self.skus or sku in self.skus

    def check_window(self, now: datetime) -> None:
        """Raise CouponUnusable if inactive or outside its validity window at ``now``."""
        if not self.active:
            raise CouponUnusable(
                f"coupon {self.code} is disabled", code="inactive", coupon=self.code
            )
        if self.valid_from is not None and now < self.valid_from:
            raise CouponUnusable(
                f"coupon {self.code} is valid from {self.valid_from.isoformat()}",
                code="not_yet_valid",
                coupon=self.code,
            )
        if self.valid_until is not None and now >= self.valid_until:
            raise CouponUnusable(
                f"coupon {self.code} expired at {self.valid_until.isoformat()}",
                code="expired",
                coupon=self.code,
            )

    def discount_on(self, base: Money) -> Money:
        """The discount this coupon gives on ``base`` (never more than ``base``)."""
        if self.kind is CouponKind.PERCENT:
            assert self.percent is not None
            discount = base.multiply(self.percent / 100)
        else:
            assert self.amount is not None
            discount = self.amount
        if self.max_discount is not None:
            discount = discount.min(self.max_discount)
        return discount.min(base)


@frozen
class ManualDiscount:
    """An operator's discount; the reason is required and recorded."""

    amount: Money
    reason: str

    def __attrs_post_init__(self) -> None:
        if not self.amount.is_positive():
            raise InvalidAmount(
                f"a manual discount must be positive, not {self.amount}", field="manual_discount"
            )
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise InvalidField("a manual discount needs a reason", field="reason")


def _fee_percent(value: object) -> Decimal:
    return to_decimal(value, what="fee percent")


@frozen
class FeeRule:
    """A channel fee: ``percent`` of the amount plus ``fixed``; ``borne_by`` the ``merchant``
    (shown, not charged) or the ``customer`` (added to payable)."""

    percent: Decimal = field(default=Decimal(0), converter=_fee_percent)
    fixed: Money | None = None
    borne_by: str = "merchant"

    def __attrs_post_init__(self) -> None:
        if not Decimal(0) <= self.percent < Decimal(100):
            raise InvalidField("fee percent must be from 0 to below 100", field="fee")
        if self.fixed is not None and self.fixed.is_negative():
            raise InvalidAmount("a fixed fee must not be negative", field="fee")
        if self.borne_by not in ("merchant", "customer"):
            raise InvalidField("fee borne_by must be merchant or customer", field="fee")

    def fee_for(self, amount: Money) -> Money:
        if not amount.is_positive():
            return Money.zero(amount.currency)
        fee = amount.multiply(self.percent / 100)
        if self.fixed is not None:
            if self.fixed.currency != amount.currency:
                raise CurrencyMismatch(
                    f"fixed fee in {self.fixed.currency.code}, order in {amount.currency.code}"
                )
            fee = fee + self.fixed
        return fee


class UseAll(enum.Enum):
    """Use as much balance as the order can take: ``use_balance=UseAll.ALL``."""

    ALL = "all"


@frozen
class PricedOrder:
    """The result of :func:`price_order`."""

    breakdown: AmountBreakdown
    balance_used: Money
    points_used: int
    coupon_discount: Money


def _allocate(amount: Money, nets: list[Money]) -> tuple[Money, ...]:
    if amount.is_zero():
        return tuple(Money.zero(amount.currency) for _ in nets)
    return tuple(amount.allocate(nets))


def price_order(
    lines: Sequence[OrderLine],
    *,
    now: datetime,
    coupon: Coupon | None = None,
    manual_discount: ManualDiscount | None = None,
    use_balance: Money | UseAll | None = None,
    balance_available: Money | None = None,
    use_points: int = 0,
    points_available: int = 0,
    points_rate: Decimal | None = None,
    fee_rule: FeeRule | None = None,
) -> PricedOrder:
    """Price ``lines``. See the module docstring for the order of the steps.

    ``points_rate`` is the money one point is worth (``Decimal("0.01")``: 100 points = 1.00).
    Coupon usage limits are checked by the caller under a lock; everything else is here.
    """
    if not lines:
        raise InvalidField("an order needs at least one line", field="lines")
    currency = lines[0].unit_price.currency
    for line in lines:
        if line.unit_price.currency != currency:
            raise CurrencyMismatch(
                f"an order is in one currency; {line.sku} is in {line.unit_price.currency.code}, "
                f"not {currency.code}"
            )
    zero = Money.zero(currency)
    original = zero
    for line in lines:
        original = original + line.total
    nets = [line.total for line in lines]
    adjustments: list[AmountAdjustment] = []

    def take(kind: AdjustmentKind, per_line: Sequence[Money], label: str | None = None) -> Money:
        total = zero
        for i, part in enumerate(per_line):
            if part > nets[i]:  # pragma: no cover - guarded by every caller
                raise DiscountTooLarge(f"{kind} exceeds line {lines[i].sku}")
            nets[i] = nets[i] - part
            total = total + part
        if total.is_positive():
            adjustments.append(
                AmountAdjustment(kind=kind, amount=total, label=label, per_line=tuple(per_line))
            )
        return total

    # 2. quantity tiers
    tier_parts = [
        line.total.multiply(line.tier_percent_off / 100) if line.tier_percent_off else zero
        for line in lines
    ]
    take(AdjustmentKind.TIER_DISCOUNT, tier_parts, "quantity tier")

    # 3. coupon
    coupon_discount = zero
    if coupon is not None:
        if coupon.currency != currency.code:
            raise CouponUnusable(
                f"coupon {coupon.code} is for {coupon.currency} orders, "
                f"this one is in {currency.code}",
                code="currency",
                coupon=coupon.code,
            )
        coupon.check_window(now)
        eligible = [i for i, line in enumerate(lines) if coupon.applies_to(line.sku)]
        if not eligible:
            raise CouponUnusable(
                f"coupon {coupon.code} does not apply to any product in this order",
                code="not_applicable",
                coupon=coupon.code,
            )
        base = zero
        for i in eligible:
            base = base + nets[i]
        if coupon.min_amount is not None and base < coupon.min_amount:
            raise CouponUnusable(
                f"coupon {coupon.code} needs at least {coupon.min_amount} of eligible products "
                f"(this order has {base})",
                code="below_minimum",
                coupon=coupon.code,
            )
        coupon_discount = coupon.discount_on(base)
        parts = [zero] * len(lines)
        if coupon_discount.is_positive():
            for i, part in zip(
                eligible, coupon_discount.allocate([nets[i] for i in eligible]), strict=True
            ):
                parts[i] = part
        take(AdjustmentKind.COUPON, parts, coupon.code)

    def remaining() -> Money:
        total = zero
        for net in nets:
            total = total + net
        return total

    # 4. manual discount
    if manual_discount is not None:
        if manual_discount.amount.currency != currency:
            raise CurrencyMismatch("the manual discount is not in the order's currency")
        left = remaining()
        if manual_discount.amount > left:
            raise DiscountTooLarge(
                f"manual discount {manual_discount.amount} is larger than what is left "
                f"to pay ({left})",
                field="manual_discount",
            )
        take(
            AdjustmentKind.MANUAL_DISCOUNT,
            _allocate(manual_discount.amount, nets),
            manual_discount.reason,
        )

    # 5. balance
    balance_used = zero
    if use_balance is not None:
        available = balance_available if balance_available is not None else zero
        if available.currency != currency:
            raise CurrencyMismatch("the balance is not in the order's currency")
        left = remaining()
        if isinstance(use_balance, UseAll):
            balance_used = available.min(left).max(zero)
        else:
            if use_balance.currency != currency:
                raise CurrencyMismatch("the balance to use is not in the order's currency")
            if use_balance.is_negative():
                raise InvalidAmount("the balance to use must not be negative", field="use_balance")
            if use_balance > available:
                raise InsufficientFunds(
                    f"the customer holds {available} of balance, {use_balance} was asked for",
                    field="use_balance",
                )
            if use_balance > left:
                raise DiscountTooLarge(
                    f"balance {use_balance} is more than what is left to pay ({left})",
                    field="use_balance",
                )
            balance_used = use_balance
        take(AdjustmentKind.BALANCE, _allocate(balance_used, nets), "balance")

    # 6. points
    if isinstance(use_points, bool) or not isinstance(use_points, int) or use_points < 0:
        raise InvalidField("points to use must be a whole number ≥ 0", field="use_points")
    if use_points:
        if points_rate is None:
            raise InvalidField(
                "points cannot be used: no points rate is configured", field="use_points"
            )
        if use_points > points_available:
            raise InsufficientFunds(
                f"the customer holds {points_available} points, {use_points} were asked for",
                field="use_points",
            )
        rate = to_decimal(points_rate)
        value = Money.rounded(rate * use_points, currency, "ROUND_DOWN")
        left = remaining()
        if value > left:
            raise DiscountTooLarge(
                f"{use_points} points are worth {value}, more than what is left to pay ({left})",
                field="use_points",
            )
        # Spend only the points the deduction is worth: the fraction of a minor unit that
        # rounding dropped is not taken from the customer (50 points at 0.01 on a JPY order
        # are worth nothing, so none are spent).
        points_used = int((value.amount / rate).to_integral_value(rounding=decimal.ROUND_CEILING))
        if points_used:
            take(AdjustmentKind.POINTS, _allocate(value, nets), f"{points_used} points")

    else:
        points_used = 0

    # 7. fee
    to_pay = remaining()
    if fee_rule is not None:
        fee = fee_rule.fee_for(to_pay)
        if fee.is_positive():
            kind = (
                AdjustmentKind.FEE
                if fee_rule.borne_by == "customer"
                else AdjustmentKind.MERCHANT_FEE
            )
            adjustments.append(
                AmountAdjustment(kind=kind, amount=fee, label=f"channel fee ({fee_rule.borne_by})")
            )
            if kind is AdjustmentKind.FEE:
                to_pay = to_pay + fee
    breakdown = AmountBreakdown(original=original, payable=to_pay, adjustments=tuple(adjustments))
    return PricedOrder(
        breakdown=breakdown,
        balance_used=balance_used,
        points_used=points_used,
        coupon_discount=coupon_discount,
    )
