"""Two amounts (pure domain): what a crypto gateway locked when the invoice was created —
the coin amount, its rate, until when — and how a reported payment compares with it.

A crypto attempt keeps the order's amount (``PaymentAttempt.amount``, e.g. ``27.00 CNY``)
*and* the gateway's quote (``12.5 USDT`` at ``2.16`` CNY per USDT until 10:30). The payer
sends coins, so the coins decide: fewer than quoted never pays, more pays and the excess is
recorded, after the quote expired is for an operator. Nothing here is specific to one
gateway: any channel that fills :attr:`~ordercore.channels.Checkout.coin_amount` and
:attr:`~ordercore.channels.PaymentEvent.coin_amount` gets the same rules.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from attrs import frozen

from ordercore._errors import InvalidAmount
from ordercore._money import Money

__all__ = ["CoinQuote", "Coverage", "coverage", "fiat_share"]


class Coverage(str, enum.Enum):
    """How a reported coin amount compares with the locked one."""

    NONE = "none"  #: nothing arrived
    UNDER = "under"
    EXACT = "exact"
    OVER = "over"

    def __str__(self) -> str:
        return self.value


@frozen
class CoinQuote:
    """What a gateway locked for one attempt: ``amount`` in the coin, the ``rate`` (order
    currency per coin, when the gateway says it) and ``pay_by`` (the invoice's expiry)."""

    amount: Money
    rate: Decimal | None = None
    pay_by: datetime | None = None

    def __attrs_post_init__(self) -> None:
        if not self.amount.is_positive():
            raise InvalidAmount(f"a locked coin amount must be positive, not {self.amount}")
        if self.rate is not None and (not self.rate.is_finite() or self.rate <= 0):
            raise InvalidAmount(f"a locked rate must be positive, not {self.rate}")

    def is_late(self, at: datetime | None) -> bool:
        """True when ``at`` is after the quote's expiry (unknown times are not late)."""
        return self.pay_by is not None and at is not None and at > self.pay_by


def coverage(quote: CoinQuote, received: Money | None) -> Coverage:
    """Compare ``received`` with the locked amount; a coin other than the quoted one raises
    :class:`~ordercore.CurrencyMismatch` (the caller records it as an anomaly)."""
    if received is None or received.is_zero():
        return Coverage.NONE
    if received < quote.amount:
        return Coverage.UNDER
    if received > quote.amount:
        return Coverage.OVER
    return Coverage.EXACT


def fiat_share(order_amount: Money, quote: CoinQuote, received: Money) -> Money:
    """The part of ``order_amount`` that ``received`` coins cover, in proportion to the
    locked amount and rounded down (what an operator would accept for an underpayment)."""
    share = order_amount.amount * received.amount / quote.amount.amount
    exponent = order_amount.currency.exponent
    return Money.of(share.quantize(exponent, rounding=ROUND_DOWN), order_amount.currency.code)
