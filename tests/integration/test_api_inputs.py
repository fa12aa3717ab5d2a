"""One way to pass amounts, and wrong types refused by name (issue 11, items 7-8): every API
that takes money takes a Money, or a Decimal or decimal text with the currency it needs; a
float is refused everywhere; a wrong type, shape or out-of-range id is an ordercore error that
names the argument — never AttributeError, an unpacking ValueError or a database error."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from helpers import BACKENDS, Backend, FakeClock, snapshot
from ordercore import (
    Actor,
    InvalidAmount,
    InvalidField,
    InvalidQuantity,
    Money,
    OrderCore,
    OrderCoreError,
)

ADMIN = Actor.operator("alice", "admin")
pytestmark = pytest.mark.parametrize("backend", BACKENDS[:2], indirect=True)


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> tuple[OrderCore, int]:
    core = backend.core(clock)
    customer = core.customers.add(name="Li Lei", actor=ADMIN)
    assert customer.id is not None
    core.products.add(sku="VPN", name="VPN", price=Money.of("30.00", "CNY"), actor=ADMIN)
    return core, customer.id


def test_amounts_are_money_or_decimal_text_with_their_currency(
    shop: tuple[OrderCore, int],
) -> None:
    core, li = shop
    core.wallet.credit(li, "10.00", currency="CNY", reason="top-up", actor=ADMIN)
    core.wallet.credit(li, Decimal("5"), currency="CNY", reason="top-up", actor=ADMIN)
    core.wallet.debit(li, Money.of("1.00", "CNY"), reason="fix", actor=ADMIN)
    assert core.wallet.balance(li, "CNY") == Money.of("14.00", "CNY")
    order = core.orders.create(customer_id=li, items=[("VPN", 1)], use_balance="5.00", actor=ADMIN)
    assert order.amounts.payable == Money.of("25.00", "CNY")
    coupon = core.coupons.add(code="THREE", amount="3.00", currency="CNY", actor=ADMIN)
    assert coupon.amount == Money.of("3.00", "CNY")
    assert core.coupons.add(code="TEN", percent="10", currency="CNY", actor=ADMIN).percent == 10


REFUSED: list[tuple[str, Callable[[OrderCore, int], Any], type[OrderCoreError], str]] = [
    (
        "float credit",
        lambda c, li: c.wallet.credit(li, 10.0, currency="CNY", reason="r", actor=ADMIN),
        InvalidAmount,
        "float",
    ),
    (
        "credit without a currency",
        lambda c, li: c.wallet.credit(li, "10.00", reason="r", actor=ADMIN),
        InvalidAmount,
        "needs a currency",
    ),
    (
        "credit in the wrong currency",
        lambda c, li: c.wallet.credit(
            li, Money.of("1", "USD"), currency="CNY", reason="r", actor=ADMIN
        ),
        OrderCoreError,
        "USD",
    ),
    (
        "float use_balance",
        lambda c, li: c.orders.create(
            customer_id=li, items=[("VPN", 1)], use_balance=5.0, actor=ADMIN
        ),
        InvalidAmount,
        "float",
    ),
    (
        "float coupon percent",
        lambda c, li: c.coupons.add(code="P", percent=20.0, currency="CNY", actor=ADMIN),
        InvalidAmount,
        "float",
    ),
    (
        "an actor that is a string",
        lambda c, li: c.orders.create(customer_id=li, items=[("VPN", 1)], actor="alice"),
        InvalidField,
        "Actor",
    ),
    (
        "items that are skus",
        lambda c, li: c.orders.create(customer_id=li, items=["VPN"], actor=ADMIN),
        InvalidField,
        "(sku, quantity) pairs",
    ),
    (
        "items that are a string",
        lambda c, li: c.orders.create(customer_id=li, items="VPN", actor=ADMIN),
        InvalidField,
        "at least one item",
    ),
    (
        "a customer id that is text",
        lambda c, li: c.orders.create(customer_id=str(li), items=[("VPN", 1)], actor=ADMIN),
        InvalidField,
        "customer_id",
    ),
    (
        "a customer id past the integer range",
        lambda c, li: c.orders.create(customer_id=2**63, items=[("VPN", 1)], actor=ADMIN),
        InvalidField,
        "customer_id",
    ),
    (
        "a quantity past the range",
        lambda c, li: c.orders.create(customer_id=li, items=[("VPN", 2**40)], actor=ADMIN),
        InvalidQuantity,
        "quantity",
    ),
    (
        "a wallet id past the integer range",
        lambda c, li: c.wallet.balance(2**64, "CNY"),
        InvalidField,
        "customer_id",
    ),
    (
        "a wallet id that is a bool",
        lambda c, li: c.wallet.credit(True, "1", currency="CNY", reason="r", actor=ADMIN),
        InvalidField,
        "customer_id",
    ),
    (
        "a NUL character in a name",
        lambda c, li: c.customers.add(name="Li\x00Lei", actor=ADMIN),
        InvalidField,
        "NUL",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "says"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_wrong_input_is_refused_by_name_and_writes_nothing(
    shop: tuple[OrderCore, int],
    call: Callable[[OrderCore, int], Any],
    error: type[OrderCoreError],
    says: str,
) -> None:
    core, li = shop
    before = snapshot(core)
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)")):
        call(core, li)
    assert snapshot(core) == before
