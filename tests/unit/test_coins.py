"""The two-amounts rules of crypto payments (pure domain): how reported coins compare with
the locked ones, the share of the order an underpayment covers, lateness."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordercore import CurrencyMismatch, InvalidAmount, Money
from ordercore._payments.coins import CoinQuote, Coverage, coverage, fiat_share

AT = datetime(2026, 12, 3, 10, 30, tzinfo=timezone.utc)
QUOTE = CoinQuote(Money.of("3.750000", "USDT"), rate=Decimal("7.2"), pay_by=AT)


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (None, Coverage.NONE),
        ("0", Coverage.NONE),
        ("3.749999", Coverage.UNDER),
        ("3.75", Coverage.EXACT),
        ("3.750001", Coverage.OVER),
    ],
)
def test_coverage(received: str | None, expected: Coverage) -> None:
    money = None if received is None else Money.of(received, "USDT")
    assert coverage(QUOTE, money) is expected


def test_another_coin_is_a_mismatch_not_a_comparison() -> None:
    with pytest.raises(CurrencyMismatch):
        coverage(QUOTE, Money.of("3.75", "BTC"))


def test_a_quote_must_be_positive_and_its_rate_too() -> None:
    with pytest.raises(InvalidAmount):
        CoinQuote(Money.of("0", "USDT"))
    with pytest.raises(InvalidAmount):
        CoinQuote(Money.of("1", "USDT"), rate=Decimal("-1"))
    with pytest.raises(InvalidAmount):
        CoinQuote(Money.of("1", "USDT"), rate=Decimal("NaN"))


def test_lateness_is_after_pay_by_only() -> None:
    assert not QUOTE.is_late(AT)
    assert QUOTE.is_late(AT + timedelta(seconds=1))
    assert not QUOTE.is_late(None)
    assert not CoinQuote(Money.of("1", "USDT")).is_late(AT)


def test_fiat_share_rounds_down() -> None:
    order = Money.of("27.00", "CNY")
    assert fiat_share(order, QUOTE, Money.of("1.875", "USDT")) == Money.of("13.50", "CNY")
    assert fiat_share(order, QUOTE, Money.of("0.000001", "USDT")) == Money.of("0.00", "CNY")
    assert fiat_share(order, QUOTE, Money.of("3.749999", "USDT")) == Money.of("26.99", "CNY")


@given(
    locked=st.integers(min_value=1, max_value=10**12),
    received=st.integers(min_value=1, max_value=10**12),
    order=st.integers(min_value=1, max_value=10**10),
)
def test_the_share_of_an_underpayment_never_reaches_the_order_amount(
    locked: int, received: int, order: int
) -> None:
    quote = CoinQuote(Money.from_minor(locked, "BTC"))
    paid = Money.from_minor(received, "BTC")
    amount = Money.from_minor(order, "CNY")
    share = fiat_share(amount, quote, paid)
    assert isinstance(share.amount, Decimal)
    if coverage(quote, paid) is Coverage.UNDER:
        assert share <= amount
        assert share.amount <= amount.amount * received / locked
    else:
        assert share >= amount
