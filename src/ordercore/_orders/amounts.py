"""The amount breakdown of an order: every adjustment (discounts, coupons, balance and
points, fees) between the subtotal and what is payable, paid and refunded. Pure, like the
rest of the order domain.
"""

from __future__ import annotations

import enum
import warnings
from typing import TYPE_CHECKING

from attrs import field, frozen

from ordercore._errors import (
    CurrencyMismatch,
    InvalidAmount,
    InvalidField,
)
from ordercore._money import Currency, Money

if TYPE_CHECKING:
    from .domain import OrderLine

__all__ = ["AdjustmentKind", "AmountAdjustment", "AmountBreakdown"]


class AdjustmentKind(str, enum.Enum):
    """What moved the amount between the original total and the payable."""

    TIER_DISCOUNT = "tier_discount"
    COUPON = "coupon"
    MANUAL_DISCOUNT = "manual_discount"
    BALANCE = "balance"
    POINTS = "points"
    FEE = "fee"
    MERCHANT_FEE = "merchant_fee"

    def __str__(self) -> str:
        return self.value

    @property
    def sign(self) -> int:
        """``-1`` for discounts and deductions, ``+1`` for a fee the customer bears, ``0`` for
        a fee the merchant bears (shown in the breakdown, not charged)."""
        if self is AdjustmentKind.FEE:
            return 1
        return 0 if self is AdjustmentKind.MERCHANT_FEE else -1


def _adjustment_kind(value: object) -> AdjustmentKind:
    try:
        return AdjustmentKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in AdjustmentKind)
        raise InvalidField(
            f"adjustment kind must be one of {kinds}, not {value!r}", field="kind"
        ) from None


@frozen
class AmountAdjustment:
    """A discount, a deduction or a fee, with how it fell on each line (``per_line``)."""

    kind: AdjustmentKind = field(converter=_adjustment_kind)
    amount: Money
    label: str | None = None
    per_line: tuple[Money, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.amount.is_negative():
            raise InvalidAmount(f"{self.kind} amount must not be negative", field=str(self.kind))
        if self.per_line:
            total = Money.zero(self.amount.currency)
            for part in self.per_line:
                total = total + part
            if total != self.amount:
                raise InvalidAmount(
                    f"{self.kind} split over lines sums to {total}, not {self.amount}",
                    field=str(self.kind),
                )


@frozen
class AmountBreakdown:
    """Original total, each adjustment, payable, and what was paid and refunded.

    Invariants: one currency; ``payable = original - discounts - deductions + fees`` and is
    never negative; ``0 ≤ refunded ≤ paid``.
    """

    original: Money
    payable: Money
    adjustments: tuple[AmountAdjustment, ...] = ()
    #: what was paid (zero in the original's currency when not given)
    paid: Money = field()
    #: what was refunded (zero when not given)
    refunded: Money = field()

    @paid.default
    def _no_payment(self) -> Money:
        return Money.zero(self.original.currency)

    @refunded.default
    def _no_refund(self) -> Money:
        return Money.zero(self.original.currency)

    def __attrs_post_init__(self) -> None:
        currency = self.original.currency
        zero = Money.zero(currency)
        for m in (self.payable, self.paid, self.refunded, *(a.amount for a in self.adjustments)):
            if m.currency != currency:
                raise CurrencyMismatch(
                    f"amount breakdown mixes {currency.code} and {m.currency.code}"
                )
        expected = self.original
        for adj in self.adjustments:
            if adj.kind.sign > 0:
                expected = expected + adj.amount
            elif adj.kind.sign < 0:
                expected = expected - adj.amount
        if expected != self.payable:
            raise InvalidAmount(
                f"payable {self.payable} does not match the breakdown ({expected})", field="payable"
            )
        if self.original.is_negative() or self.payable.is_negative():
            raise InvalidAmount(
                "original and payable amounts must not be negative", field="payable"
            )
        if self.paid > self.payable:
            raise InvalidAmount(
                f"paid {self.paid} must not exceed payable {self.payable}", field="paid"
            )
        if not (zero <= self.refunded <= self.paid):
            raise InvalidAmount(
                f"refunded {self.refunded} must be between 0 and paid {self.paid}", field="refunded"
            )

    @classmethod
    def for_lines(cls, lines: tuple[OrderLine, ...] | list[OrderLine]) -> AmountBreakdown:
        """The breakdown of lines with no adjustment: payable is the sum of the line totals."""
        if not lines:
            raise InvalidField("an order needs at least one line", field="lines")
        total = lines[0].total
        for line in lines[1:]:
            total = total + line.total
        return cls(original=total, payable=total)

    @property
    def currency(self) -> Currency:
        return self.original.currency

    @property
    def paid_amount(self) -> Money:
        """Deprecated alias of :attr:`paid` (removed in 0.3)."""
        warnings.warn(
            "AmountBreakdown.paid_amount is deprecated: use .paid", DeprecationWarning, stacklevel=2
        )
        return self.paid

    @property
    def refunded_amount(self) -> Money:
        """Deprecated alias of :attr:`refunded` (removed in 0.3)."""
        warnings.warn(
            "AmountBreakdown.refunded_amount is deprecated: use .refunded",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.refunded

    def total_of(self, kind: AdjustmentKind) -> Money:
        total = Money.zero(self.currency)
        for adj in self.adjustments:
            if adj.kind is kind:
                total = total + adj.amount
        return total

    def as_dict(self) -> dict[str, str]:
        """Decimal strings: original, one key per adjustment kind, payable, paid, refunded."""
        out = {"original": str(self.original.amount)}
        for kind in AdjustmentKind:
            if any(a.kind is kind for a in self.adjustments):
                out[kind.value] = str(self.total_of(kind).amount)
        out["payable"] = str(self.payable.amount)
        out["paid"] = str(self.paid.amount)
        out["refunded"] = str(self.refunded.amount)
        return out
