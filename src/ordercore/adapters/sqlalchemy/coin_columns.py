"""The payment attempt's crypto columns: the locked quote (coin amount, rate, expiry) and
the coin amount that arrived, read from a row and written back (integer minor units of the
coin, the rate as Decimal text)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Row

from ordercore._money import Money, get_currency
from ordercore._payments.coins import CoinQuote
from ordercore._payments.domain import PaymentAttempt

__all__ = ["coin_values", "quote_from_row", "received_from_row"]


def quote_from_row(row: Row[Any]) -> CoinQuote | None:
    if row.coin_currency is None or row.coin_amount_minor is None:
        return None
    return CoinQuote(
        Money.from_minor(row.coin_amount_minor, get_currency(row.coin_currency)),
        rate=None if row.coin_rate is None else Decimal(row.coin_rate),
        pay_by=row.coin_pay_by,
    )


def received_from_row(row: Row[Any]) -> Money | None:
    if row.coin_received_minor is None or row.coin_currency is None:
        return None
    return Money.from_minor(row.coin_received_minor, get_currency(row.coin_currency))


def coin_values(attempt: PaymentAttempt) -> dict[str, Any]:
    quote, received = attempt.quote, attempt.coin_received
    currency = quote.amount.currency.code if quote is not None else None
    if currency is None and received is not None:
        currency = received.currency.code
    return {
        "coin_currency": currency,
        "coin_amount_minor": None if quote is None else quote.amount.to_minor(),
        "coin_rate": None if quote is None or quote.rate is None else str(quote.rate),
        "coin_pay_by": None if quote is None else quote.pay_by,
        "coin_received_minor": None if received is None else received.to_minor(),
    }
