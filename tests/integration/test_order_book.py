"""The order book on every backend: wallet, coupons, priced creation, cancellation, idempotency,
customers found or created on the fly, bad input that writes nothing, permissions, expiry.

"Nothing written" is checked the strict way: every row of every ordercore table (helpers'
``snapshot``) is the same before and after the refused call — no half-reserved stock, no
leaked coupon use, no ledger entry, no order, no audit record. A refused *permission* writes
exactly one audit record (``permission.denied``) and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from helpers import FakeClock, audit_rows, count_rows, snapshot
from ordercore import (
    Actor,
    AdjustmentKind,
    Authorizer,
    CancelReason,
    CouponNotFound,
    CouponUnusable,
    CurrencyMismatch,
    CustomerNotFound,
    DiscountTooLarge,
    IdempotencyConflict,
    IllegalTransition,
    InsufficientFunds,
    InvalidAmount,
    InvalidField,
    InvalidQuantity,
    ManualDiscount,
    Money,
    NewCustomer,
    OrderCore,
    OrderStatus,
    OutOfStock,
    Permission,
    PermissionDenied,
    ProductInactive,
    ProductNotFound,
    UseAll,
)
from ordercore._orders.wallet import POINTS

ADMIN = Actor.operator("alice", "admin")
SUPPORT = Actor.operator("bob", "support")
FINANCE = Actor.operator("carol", "finance")


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


@pytest.fixture
def core(backend: Any, clock: FakeClock) -> OrderCore:
    """The shared ``core`` fixture's OrderCore, with points worth 0.01 CNY each and a channel
    whose fee the customer bears."""
    return backend.core(
        clock,
        points_rate=Decimal("0.01"),
        channels={"fakepay": {"fee_percent": "1", "fee_borne_by": "customer"}},
    )


@dataclass
class Shop:
    """What every test here starts from."""

    li: int  # 100.00 CNY and 1000 points; has used PERSONAL once
    han: int  # nothing in the wallet
    other: int  # has used ONE (limit_total 1)


@pytest.fixture
def shop(core: OrderCore, clock: FakeClock) -> Shop:
    li = core.customers.add(
        name="Li Lei", email="li@example.com", external_ref="u-1001", actor=ADMIN
    )
    han = core.customers.add(name="Han Meimei", email="han@example.com", actor=ADMIN)
    other = core.customers.add(name="Wang Wu", external_ref="u-3003", actor=ADMIN)
    assert li.id
    assert han.id
    assert other.id
    core.products.add(sku="vpn", name="VPN 1 month", price=cny("30.00"), stock=10, actor=ADMIN)
    core.products.add(sku="limited", name="Limited", price=cny("50.00"), stock=2, actor=ADMIN)
    core.products.add(sku="addon", name="Add-on", price=cny("10.00"), actor=ADMIN)
    core.products.add(sku="retired", name="Retired", price=cny("9.00"), active=False, actor=ADMIN)
    core.products.add(
        sku="jp-plan", name="JP plan", price=Money.of("3000", "JPY"), stock=5, actor=ADMIN
    )
    now = clock()
    core.coupons.add(code="TEN", currency="CNY", percent="10", limit_total=5, actor=ADMIN)
    core.coupons.add(code="OLD", currency="CNY", amount=cny("5.00"), valid_until=now, actor=ADMIN)
    core.coupons.add(
        code="SOON",
        currency="CNY",
        amount=cny("5.00"),
        valid_from=now + timedelta(days=1),
        actor=ADMIN,
    )
    core.coupons.add(code="ONE", currency="CNY", amount=cny("5.00"), limit_total=1, actor=ADMIN)
    core.coupons.add(
        code="PERSONAL", currency="CNY", amount=cny("1.00"), limit_per_customer=1, actor=ADMIN
    )
    core.coupons.add(code="YEN", currency="JPY", amount=Money.of("100", "JPY"), actor=ADMIN)
    core.coupons.add(
        code="MIN100", currency="CNY", amount=cny("8.00"), min_amount=cny("100.00"), actor=ADMIN
    )
    core.coupons.add(code="ADDONLY", currency="CNY", percent="50", skus=["addon"], actor=ADMIN)
    core.coupons.add(code="OFF", currency="CNY", percent="5", actor=ADMIN)
    core.coupons.disable("OFF", actor=ADMIN, reason="campaign over")
    core.wallet.credit(li.id, cny("100.00"), reason="top-up", actor=ADMIN)
    core.wallet.credit_points(li.id, 1000, reason="welcome", actor=ADMIN)
    for who, code in ((other, "ONE"), (li, "PERSONAL")):
        order = core.orders.create(
            customer_id=who.id, items=[("addon", 1)], coupon=code, actor=ADMIN
        )
        core.orders.mark_paid(order.number, actor=ADMIN)
    clock.advance(1)
    return Shop(li=li.id, han=han.id, other=other.id)


def stock(core: OrderCore, sku: str) -> int | None:
    return core.products.get(sku).stock


def uses(core: OrderCore, code: str) -> int:
    return core.coupons.get(code)[1]


def assert_ledger_matches(core: OrderCore, customer_id: int) -> None:
    """The stored balance equals the sum of the ledger, for money and points, and never < 0."""
    cny_balance = core.wallet.balance(customer_id, "CNY")
    assert cny_balance >= cny("0")
    assert core.wallet.ledger_sum(customer_id, "CNY") == cny_balance.to_minor()
    points = core.wallet.points(customer_id)
    assert points >= 0
    assert core.wallet.ledger_sum(customer_id, POINTS) == points


def assert_only_refusal_recorded(
    core: OrderCore, before: dict[str, list[tuple[Any, ...]]], actor: Actor, permission: str
) -> None:
    after = snapshot(core)
    audit = core.tables.audit_log.name
    head = core.tables.audit_head.name
    for table, rows in before.items():
        if table not in (audit, head, core.tables.audit_pending.name):
            assert after[table] == rows, f"{table} changed on a refused call"
    assert after[audit][: len(before[audit])] == before[audit]
    new = audit_rows(core)[len(before[audit]) :]
    assert len(new) == 1
    (record,) = new
    assert record["action"] == "permission.denied"
    assert record["entity_kind"] == "permission"
    assert record["actor_id"] == actor.id
    assert permission in record["after"]
    assert "insufficient permissions" in record["reason"]


# ---------------------------------------------------------------------- create and pay
def test_create_with_coupon_balance_and_points(core: OrderCore, shop: Shop) -> None:
    """2 × 30.00 = 60.00; TEN −6.00; balance −20.00; 500 points −5.00 → 29.00 payable."""
    order = core.orders.create(
        customer_id=shop.li,
        items=[("vpn", 2)],
        coupon="TEN",
        use_balance=cny("20.00"),
        use_points=500,
        note="first order",
        tags=["promo"],
        actor=ADMIN,
    )
    assert order.status is OrderStatus.PENDING
    assert order.amounts.as_dict() == {
        "original": "60.00",
        "coupon": "6.00",
        "balance": "20.00",
        "points": "5.00",
        "payable": "29.00",
        "paid": "0.00",
        "refunded": "0.00",
    }
    assert order.payment_deadline == order.created_at + timedelta(minutes=15)
    assert stock(core, "vpn") == 8
    assert uses(core, "TEN") == 1
    assert core.wallet.balance(shop.li, "CNY") == cny("80.00")
    assert core.wallet.points(shop.li) == 500
    assert_ledger_matches(core, shop.li)

    details = core.orders.details(order.number)
    assert details.coupons == (("TEN", "reserved"),)
    entries = [(e.asset, e.delta, e.reason, e.order_number) for e in details.wallet_entries]
    assert entries == [
        ("CNY", -2000, "order.balance_deduction", order.number),
        (POINTS, -500, "order.points_deduction", order.number),
    ]
    assert [e.balance_after for e in details.wallet_entries] == [8000, 500]
    actions = [r.action for r in details.log]
    assert actions[0] == "order.create"
    assert "order.note" in actions
    wallet_log = core.audit.records("wallet", f"{shop.li}:CNY")
    assert wallet_log[-1].action == "wallet.debit"
    assert order.number in (wallet_log[-1].after or "")

    # The stored order reads back the same.
    stored = core.orders.get(order.number)
    assert stored.amounts == order.amounts
    assert stored.tags == frozenset({"promo"})

    paid = core.orders.mark_paid(order.number, actor=ADMIN)
    assert paid.status is OrderStatus.PAID
    assert paid.amounts.paid == cny("29.00")
    assert core.orders.details(order.number).coupons == (("TEN", "consumed"),)
    assert uses(core, "TEN") == 1


def test_cancel_gives_back_stock_coupon_balance_and_points(
    core: OrderCore, shop: Shop, clock: FakeClock
) -> None:
    order = core.orders.create(
        customer_id=shop.li,
        items=[("vpn", 2), ("limited", 1), ("vpn", 1)],
        coupon="TEN",
        use_balance=cny("20.00"),
        use_points=500,
        actor=ADMIN,
    )
    assert (stock(core, "vpn"), stock(core, "limited")) == (7, 1)
    audit_before = core.audit.count()
    clock.advance(60)
    with pytest.raises(InvalidField):  # an operator says why
        core.orders.cancel(order.number, actor=SUPPORT, reason=CancelReason.ADMIN)
    canceled = core.orders.cancel(
        order.number, actor=SUPPORT, reason=CancelReason.ADMIN, note="customer called"
    )
    assert canceled.status is OrderStatus.CANCELED
    assert canceled.cancel_reason is CancelReason.ADMIN
    assert canceled.canceled_at == clock()
    assert (stock(core, "vpn"), stock(core, "limited")) == (10, 2)
    assert uses(core, "TEN") == 0
    assert core.wallet.balance(shop.li, "CNY") == cny("100.00")
    assert core.wallet.points(shop.li) == 1000
    assert_ledger_matches(core, shop.li)

    details = core.orders.details(order.number)
    assert details.coupons == (("TEN", "released"),)
    returns = [
        (e.asset, e.delta, e.actor)
        for e in details.wallet_entries
        if e.reason == "order.cancel_return"
    ]
    assert returns == [("CNY", 2000, SUPPORT), (POINTS, 500, SUPPORT)]
    assert all(e.order_number == order.number for e in details.wallet_entries)
    log = [r for r in details.log if r.action == "order.cancel"]
    assert len(log) == 1
    assert log[0].actor_id == "bob"
    assert log[0].reason == "admin: customer called"
    assert json_status(log[0].before, log[0].after) == ("pending", "canceled")
    new = audit_rows(core)[audit_before:]
    assert sorted(r["action"] for r in new) == ["order.cancel", "wallet.credit", "wallet.credit"]

    # Cancelling again, or paying now, is refused and changes nothing.
    before = snapshot(core)
    with pytest.raises(IllegalTransition):
        core.orders.cancel(order.number, actor=ADMIN, reason="admin", note="again")
    with pytest.raises(IllegalTransition):
        core.orders.mark_paid(order.number, actor=ADMIN)
    assert snapshot(core) == before


def json_status(before: str | None, after: str | None) -> tuple[str, str]:
    return json.loads(before or "{}")["status"], json.loads(after or "{}")["status"]


def test_a_customer_cancels_its_own_order(core: OrderCore, shop: Shop) -> None:
    order = core.orders.create(
        customer_id=shop.han, items=[("vpn", 1)], actor=Actor.customer(shop.han)
    )
    with pytest.raises(InvalidField):
        core.orders.cancel(order.number, actor=Actor.customer(shop.han), reason="admin", note="x")
    canceled = core.orders.cancel(order.number, actor=Actor.customer(shop.han), reason="user")
    assert canceled.cancel_reason is CancelReason.USER
    assert stock(core, "vpn") == 10


def test_a_paid_order_cannot_be_cancelled(core: OrderCore, shop: Shop) -> None:
    order = core.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=ADMIN)
    core.orders.mark_paid(order.number, actor=ADMIN)
    before = snapshot(core)
    with pytest.raises(IllegalTransition, match="refund"):
        core.orders.cancel(order.number, actor=ADMIN, reason="admin", note="too late")
    assert snapshot(core) == before


@pytest.mark.parametrize(
    "how",
    ["balance-all", "points", "coupon+balance"],
)
def test_a_zero_payable_order_is_paid_at_once(core: OrderCore, shop: Shop, how: str) -> None:
    extra: dict[str, Any] = {
        "balance-all": {"use_balance": UseAll.ALL},
        "points": {"use_points": 1000},  # 10.00 = the add-on's price
        "coupon+balance": {"coupon": "TEN", "use_balance": cny("9.00")},
    }[how]
    order = core.orders.create(customer_id=shop.li, items=[("addon", 1)], actor=ADMIN, **extra)
    assert order.amounts.payable == cny("0.00")
    assert order.status is OrderStatus.PAID
    assert order.paid_at is not None
    stored = core.orders.get(order.number)
    assert stored.status is OrderStatus.PAID
    assert stored.amounts.paid == cny("0.00")
    log = core.orders.details(order.number).log
    assert [r.action for r in log] == ["order.create", "order.pay"]
    assert log[1].actor_kind == "system"
    if "coupon" in extra:
        assert core.orders.details(order.number).coupons == (("TEN", "consumed"),)
    assert_ledger_matches(core, shop.li)
    with pytest.raises(IllegalTransition):
        core.orders.cancel(order.number, actor=ADMIN, reason="admin", note="no")


def test_use_all_takes_only_what_is_held(core: OrderCore, shop: Shop) -> None:
    order = core.orders.create(
        customer_id=shop.li, items=[("vpn", 4)], use_balance=UseAll.ALL, actor=ADMIN
    )
    assert order.amounts.total_of(AdjustmentKind.BALANCE) == cny("100.00")
    assert order.amounts.payable == cny("20.00")
    assert core.wallet.balance(shop.li, "CNY") == cny("0.00")
    assert_ledger_matches(core, shop.li)


def test_a_channel_fee_borne_by_the_customer_is_payable(core: OrderCore, shop: Shop) -> None:
    order = core.orders.create(
        customer_id=shop.han, items=[("vpn", 1)], channel="fakepay", actor=ADMIN
    )
    assert order.amounts.as_dict()["fee"] == "0.30"
    assert order.amounts.payable == cny("30.30")


# ------------------------------------------------------------------------- idempotency
def test_the_same_request_under_one_key_is_one_order(core: OrderCore, shop: Shop) -> None:
    request: dict[str, Any] = {
        "customer_id": shop.li,
        "items": [("vpn", 2)],
        "coupon": "TEN",
        "use_balance": cny("20.00"),
        "use_points": 100,
        "idempotency_key": "checkout-42",
        "actor": Actor.customer(shop.li),
    }
    first = core.orders.create(**request)
    state = snapshot(core)
    again = core.orders.create(**request)
    assert again.number == first.number
    assert again.amounts == first.amounts
    assert snapshot(core) == state  # no second debit, no second reservation, no audit
    assert core.wallet.balance(shop.li, "CNY") == cny("80.00")
    assert core.wallet.points(shop.li) == 900
    assert stock(core, "vpn") == 8
    assert uses(core, "TEN") == 1
    assert len(core.orders.details(first.number).wallet_entries) == 2

    for change in (
        {"items": [("vpn", 3)]},
        {"use_balance": cny("20.01")},
        {"coupon": None},
        {"use_points": 101},
        {"note": "a note"},
        {"customer_id": shop.han, "actor": ADMIN},
    ):
        with pytest.raises(IdempotencyConflict) as info:
            core.orders.create(**{**request, **change})
        assert info.value.order == first.number
        assert snapshot(core) == state


# --------------------------------------------------------------------- new customers
@pytest.mark.parametrize(
    ("new", "found"),
    [
        (NewCustomer(name="Someone", email="li@example.com"), "li"),
        (NewCustomer(name="Someone", external_ref="u-1001"), "li"),
        (NewCustomer(name="Han Meimei"), "han"),
        (NewCustomer(name="Someone", email="nobody@example.com", external_ref="u-3003"), "other"),
    ],
    ids=["email", "external_ref", "name", "external_ref-after-email"],
)
def test_new_customer_finds_an_existing_one(
    core: OrderCore, shop: Shop, new: NewCustomer, found: str
) -> None:
    customers = count_rows(core, core.tables.customers)
    order = core.orders.create(new_customer=new, items=[("vpn", 1)], actor=ADMIN)
    assert order.customer_id == getattr(shop, found)
    assert count_rows(core, core.tables.customers) == customers


def test_new_customer_is_created_with_the_order(core: OrderCore, shop: Shop) -> None:
    customers = count_rows(core, core.tables.customers)
    new = NewCustomer(name="Zhang San", email="zhang@example.com", external_ref="u-9")
    order = core.orders.create(new_customer=new, items=[("vpn", 1)], actor=SUPPORT)
    assert count_rows(core, core.tables.customers) == customers + 1
    created = core.customers.get(order.customer_id)
    assert (created.name, created.email, created.external_ref) == (
        "Zhang San",
        "zhang@example.com",
        "u-9",
    )
    log = core.audit.records("customer", str(created.id))
    assert [r.action for r in log] == ["customer.add"]
    # And the next order finds them.
    second = core.orders.create(
        new_customer=NewCustomer(name="Z", email="zhang@example.com"),
        items=[("vpn", 1)],
        actor=SUPPORT,
    )
    assert second.customer_id == created.id


def test_new_customer_is_not_created_when_the_order_fails(core: OrderCore, shop: Shop) -> None:
    before = snapshot(core)
    new = NewCustomer(name="Ghost", email="ghost@example.com")
    with pytest.raises(OutOfStock):
        core.orders.create(new_customer=new, items=[("limited", 3)], actor=ADMIN)
    assert snapshot(core) == before
    with pytest.raises(PermissionDenied):  # a customer cannot create customers
        core.orders.create(new_customer=new, items=[("vpn", 1)], actor=Actor.customer(1))


def test_new_customer_with_another_email_is_not_someone_with_the_same_name(
    core: OrderCore, shop: Shop
) -> None:
    """A request for "Li Lei <li2@example.com>" must not land on the existing Li Lei
    (li@example.com): an order — and with ``use_balance`` a debit — on a stranger's account.
    The name is a fallback for a request that names no e-mail and no reference."""
    new = NewCustomer(name="Li Lei", email="li2@example.com")
    order = core.orders.create(
        new_customer=new, items=[("vpn", 1)], use_balance=UseAll.ALL, actor=ADMIN
    )
    assert order.customer_id != shop.li
    assert core.wallet.balance(shop.li, "CNY") == cny("100.00")


# ------------------------------------------------------------------- bad input, no writes
Create = Callable[[OrderCore, Shop], Any]


def create(**kwargs: Any) -> Create:
    def call(core: OrderCore, shop: Shop) -> Any:
        values: dict[str, Any] = {"customer_id": shop.li, "items": [("vpn", 1)], "actor": ADMIN}
        values.update(kwargs)
        if isinstance(values["customer_id"], str):  # a name in the shop
            values["customer_id"] = getattr(shop, values["customer_id"])
        return core.orders.create(**values)

    return call


def built_late(build: Callable[[], dict[str, Any]]) -> Create:
    """The request's values are built inside the call (they raise before anything)."""

    def call(core: OrderCore, shop: Shop) -> Any:
        return create(**build())(core, shop)

    return call


BAD_INPUT: list[Any] = [
    pytest.param(create(items=[("nope", 1)]), ProductNotFound, None, id="unknown-sku"),
    pytest.param(create(items=[("retired", 1)]), ProductInactive, None, id="inactive"),
    pytest.param(create(items=[("vpn", 11)]), OutOfStock, None, id="out-of-stock"),
    pytest.param(
        create(items=[("vpn", 2), ("limited", 2), ("limited", 1)]),
        OutOfStock,
        None,
        id="out-of-stock-on-a-later-line",
    ),
    pytest.param(create(coupon="OLD"), CouponUnusable, "expired", id="expired-coupon"),
    pytest.param(create(coupon="SOON"), CouponUnusable, "not_yet_valid", id="future-coupon"),
    pytest.param(create(coupon="ONE"), CouponUnusable, "exhausted", id="exhausted-coupon"),
    pytest.param(create(coupon="PERSONAL"), CouponUnusable, "customer_limit", id="customer-limit"),
    pytest.param(create(coupon="YEN"), CouponUnusable, "currency", id="foreign-coupon"),
    pytest.param(create(coupon="OFF"), CouponUnusable, "inactive", id="disabled-coupon"),
    pytest.param(create(coupon="MIN100"), CouponUnusable, "below_minimum", id="below-minimum"),
    pytest.param(create(coupon="ADDONLY"), CouponUnusable, "not_applicable", id="wrong-product"),
    pytest.param(create(coupon="NOPE"), CouponNotFound, None, id="unknown-coupon"),
    pytest.param(
        create(manual_discount=ManualDiscount(cny("30.01"), "too much")),
        DiscountTooLarge,
        None,
        id="discount-larger-than-base",
    ),
    pytest.param(
        create(coupon="TEN", manual_discount=ManualDiscount(cny("27.01"), "after coupon")),
        DiscountTooLarge,
        None,
        id="discount-larger-than-what-the-coupon-left",
    ),
    pytest.param(
        create(items=[("vpn", 4)], use_balance=cny("100.01")),
        InsufficientFunds,
        None,
        id="balance-more-than-held",
    ),
    pytest.param(
        create(customer_id="han", use_balance=cny("0.01")),
        InsufficientFunds,
        None,
        id="balance-of-an-empty-wallet",
    ),
    pytest.param(
        create(use_balance=cny("30.01")), DiscountTooLarge, None, id="balance-more-than-payable"
    ),
    pytest.param(
        create(items=[("vpn", 4)], use_points=1001),
        InsufficientFunds,
        None,
        id="points-more-than-held",
    ),
    pytest.param(
        create(use_points=-5),
        InvalidField,
        None,
        id="negative-points",
    ),
    pytest.param(
        create(use_balance=cny("-5.00")), InvalidAmount, None, id="negative-balance-amount"
    ),
    pytest.param(
        create(use_balance=Money.of("5", "JPY")), CurrencyMismatch, None, id="balance-currency"
    ),
    pytest.param(
        built_late(lambda: {"use_balance": Money.of("0.001", "CNY")}),
        InvalidAmount,
        None,
        id="fractional-cent",
    ),
    pytest.param(
        built_late(lambda: {"manual_discount": ManualDiscount(cny("-1.00"), "negative")}),
        InvalidAmount,
        None,
        id="negative-discount",
    ),
    pytest.param(
        built_late(lambda: {"manual_discount": ManualDiscount(cny("1.00"), "  ")}),
        InvalidField,
        None,
        id="discount-without-reason",
    ),
    pytest.param(create(items=[("vpn", 0)]), InvalidQuantity, None, id="quantity-0"),
    pytest.param(create(items=[("vpn", -1)]), InvalidQuantity, None, id="quantity-negative"),
    pytest.param(create(items=[("vpn", 1.0)]), InvalidQuantity, None, id="quantity-float"),
    pytest.param(create(items=[("vpn", True)]), InvalidQuantity, None, id="quantity-bool"),
    pytest.param(create(items=[]), InvalidField, None, id="no-items"),
    pytest.param(
        create(items=[("vpn", 1), ("jp-plan", 1)]), CurrencyMismatch, None, id="mixed-currency"
    ),
    pytest.param(create(customer_id=99999), CustomerNotFound, None, id="unknown-customer"),
    pytest.param(create(tags=["Not A Flag"]), InvalidField, None, id="bad-flag"),
    pytest.param(create(idempotency_key=""), InvalidField, None, id="empty-idempotency-key"),
]


def test_bad_input_writes_nothing(core: OrderCore, shop: Shop) -> None:
    """Every case in BAD_INPUT, one after the other on one database (a fresh database per
    case would cost seconds each): each raises its typed error and leaves every table as it
    was. All cases run; the failures are reported together."""
    failures: list[str] = []
    for case in BAD_INPUT:
        (call, error, code), name = case.values, case.id
        before = snapshot(core)
        try:
            call(core, shop)
        except error as exc:
            if code is not None and getattr(exc, "code", None) != code:
                failures.append(f"{name}: code {getattr(exc, 'code', None)!r}, not {code!r}")
            if not str(exc):
                failures.append(f"{name}: {type(exc).__name__} without a message")
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__} ({exc}), not {error.__name__}")
        else:
            failures.append(f"{name}: accepted, {error.__name__} expected")
        if snapshot(core) != before:
            failures.append(f"{name}: the database changed")
    assert failures == []
    # The same, spelled out: stock, coupon uses, wallet, orders (the shop's two).
    assert (stock(core, "vpn"), stock(core, "limited")) == (10, 2)
    assert (uses(core, "ONE"), uses(core, "PERSONAL"), uses(core, "TEN")) == (1, 1, 0)
    assert core.wallet.balance(shop.li, "CNY") == cny("100.00")
    assert core.wallet.points(shop.li) == 1000
    assert count_rows(core, core.tables.orders) == 2


# ------------------------------------------------------------------------- permissions
def test_support_cannot_give_a_manual_discount(core: OrderCore, shop: Shop) -> None:
    before = snapshot(core)
    with pytest.raises(PermissionDenied) as info:
        core.orders.create(
            customer_id=shop.han,
            items=[("vpn", 1)],
            manual_discount=ManualDiscount(cny("5.00"), "goodwill"),
            actor=SUPPORT,
        )
    assert info.value.permission == Permission.ORDERS_DISCOUNT
    assert_only_refusal_recorded(core, before, SUPPORT, Permission.ORDERS_DISCOUNT)
    # Without the discount, support may create the order.
    core.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=SUPPORT)


def test_a_customer_cannot_cancel_another_customers_order(core: OrderCore, shop: Shop) -> None:
    order = core.orders.create(
        customer_id=shop.li, items=[("vpn", 1)], use_balance=cny("5.00"), actor=ADMIN
    )
    intruder = Actor.customer(shop.han)
    before = snapshot(core)
    with pytest.raises(PermissionDenied, match="own orders"):
        core.orders.cancel(order.number, actor=intruder, reason="user")
    assert_only_refusal_recorded(core, before, intruder, Permission.ORDERS_CANCEL)
    assert core.orders.get(order.number).status is OrderStatus.PENDING
    # Nor create one for someone else.
    before = snapshot(core)
    with pytest.raises(PermissionDenied):
        core.orders.create(customer_id=shop.li, items=[("vpn", 1)], actor=intruder)
    assert_only_refusal_recorded(core, before, intruder, Permission.ORDERS_CREATE)


def test_finance_cannot_create_orders(core: OrderCore, shop: Shop) -> None:
    before = snapshot(core)
    with pytest.raises(PermissionDenied):
        core.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=FINANCE)
    assert_only_refusal_recorded(core, before, FINANCE, Permission.ORDERS_CREATE)


def test_support_cannot_adjust_a_wallet(core: OrderCore, shop: Shop) -> None:
    before = snapshot(core)
    with pytest.raises(PermissionDenied):
        core.wallet.credit(shop.han, cny("1.00"), reason="gift", actor=SUPPORT)
    assert_only_refusal_recorded(core, before, SUPPORT, Permission.WALLET_ADJUST)


def test_a_host_defined_role(core: OrderCore, shop: Shop, clock: FakeClock) -> None:
    sales = Actor.operator("dave", "sales")
    authorizer = Authorizer(
        extra_roles={
            "sales": {Permission.ORDERS_CREATE, Permission.ORDERS_DISCOUNT},
            "support": {Permission.ORDERS_VIEW},  # overrides the default support role
        }
    )
    hosted = OrderCore(core.engine, core.settings, clock=clock, authorizer=authorizer)
    order = hosted.orders.create(
        customer_id=shop.han,
        items=[("vpn", 1)],
        manual_discount=ManualDiscount(cny("5.00"), "trade show"),
        actor=sales,
    )
    assert order.amounts.payable == cny("25.00")
    assert hosted.orders.get(order.number).amounts.as_dict()["manual_discount"] == "5.00"
    before = snapshot(core)
    with pytest.raises(PermissionDenied):  # not granted to sales
        hosted.orders.cancel(order.number, actor=sales, reason="admin", note="oops")
    assert_only_refusal_recorded(core, before, sales, Permission.ORDERS_CANCEL)
    before = snapshot(core)
    with pytest.raises(PermissionDenied):  # the overridden support role lost orders.create
        hosted.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=SUPPORT)
    assert_only_refusal_recorded(core, before, SUPPORT, Permission.ORDERS_CREATE)
    # The default authorizer does not know the role at all.
    before = snapshot(core)
    with pytest.raises(PermissionDenied, match="not defined"):
        core.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=sales)
    assert_only_refusal_recorded(core, before, sales, Permission.ORDERS_CREATE)
    # Roles can also replace the defaults entirely: then even "admin" is unknown.
    only_clerks = OrderCore(
        core.engine,
        core.settings,
        clock=clock,
        authorizer=Authorizer(roles={"clerk": {Permission.ORDERS_CREATE}}),
    )
    with pytest.raises(PermissionDenied):
        only_clerks.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=ADMIN)
    clerk_order = only_clerks.orders.create(
        customer_id=shop.han, items=[("vpn", 1)], actor=Actor.operator("eve", "clerk")
    )
    assert clerk_order.status is OrderStatus.PENDING


# ------------------------------------------------------------------------------ wallet
def test_wallet_credit_debit_and_ledger(core: OrderCore, shop: Shop) -> None:
    han = shop.han
    assert core.wallet.balance(han, "CNY") == cny("0.00")
    assert_ledger_matches(core, han)
    steps = [
        ("credit", "50.00", 5000),
        ("debit", "12.34", 3766),
        ("credit", "0.01", 3767),
        ("debit", "37.67", 0),
        ("credit", "8.00", 800),
    ]
    for kind, amount, after in steps:
        method = core.wallet.credit if kind == "credit" else core.wallet.debit
        entry = method(han, cny(amount), reason=f"test {kind}", actor=ADMIN)
        assert entry.balance_after == after
        assert entry.delta == (1 if kind == "credit" else -1) * cny(amount).to_minor()
        assert entry.actor == ADMIN
        assert entry.order_number is None
        assert core.wallet.balance(han, "CNY").to_minor() == after
        assert_ledger_matches(core, han)
    entries = core.wallet.ledger(han)
    assert [e.balance_after for e in reversed(entries)] == [s[2] for s in steps]
    snap = core.wallet.show(han)
    assert snap.balances == {"CNY": cny("8.00")}
    assert snap.points == 0
    wallet_log = core.audit.records("wallet", f"{han}:CNY")
    assert [r.action for r in wallet_log] == [f"wallet.{s[0]}" for s in steps]


def test_wallet_idempotency(core: OrderCore, shop: Shop) -> None:
    han = shop.han
    first = core.wallet.credit(han, cny("5.00"), reason="refund", actor=ADMIN, idempotency_key="k1")
    state = snapshot(core)
    again = core.wallet.credit(han, cny("5.00"), reason="refund", actor=ADMIN, idempotency_key="k1")
    assert again == first
    assert snapshot(core) == state  # not doubled, nothing recorded twice
    assert core.wallet.balance(han, "CNY") == cny("5.00")
    for other in (
        lambda: core.wallet.credit(
            han, cny("6.00"), reason="refund", actor=ADMIN, idempotency_key="k1"
        ),
        lambda: core.wallet.debit(
            han, cny("5.00"), reason="refund", actor=ADMIN, idempotency_key="k1"
        ),
        lambda: core.wallet.credit(
            han, cny("5.00"), reason="other", actor=ADMIN, idempotency_key="k1"
        ),
        lambda: core.wallet.credit(
            shop.li, cny("5.00"), reason="refund", actor=ADMIN, idempotency_key="k1"
        ),
        lambda: core.wallet.credit_points(
            han, 500, reason="refund", actor=ADMIN, idempotency_key="k1"
        ),
    ):
        with pytest.raises(IdempotencyConflict):
            other()
        assert snapshot(core) == state
    assert_ledger_matches(core, han)


def test_wallet_refuses_overdrafts_and_bad_amounts(core: OrderCore, shop: Shop) -> None:
    before = snapshot(core)
    refusals: list[tuple[Callable[[], Any], type[Exception]]] = [
        (
            lambda: core.wallet.debit(shop.li, cny("100.01"), reason="x", actor=ADMIN),
            InsufficientFunds,
        ),
        (
            lambda: core.wallet.debit(shop.han, cny("0.01"), reason="x", actor=ADMIN),
            InsufficientFunds,
        ),
        (
            lambda: core.wallet.debit_points(shop.li, 1001, reason="x", actor=ADMIN),
            InsufficientFunds,
        ),
        (
            lambda: core.wallet.debit(shop.li, Money.of("1", "JPY"), reason="x", actor=ADMIN),
            InsufficientFunds,
        ),
        (lambda: core.wallet.credit(shop.li, cny("0.00"), reason="x", actor=ADMIN), InvalidAmount),
        (lambda: core.wallet.credit(shop.li, cny("-1.00"), reason="x", actor=ADMIN), InvalidAmount),
        (lambda: core.wallet.debit(shop.li, cny("-1.00"), reason="x", actor=ADMIN), InvalidAmount),
        (
            lambda: core.wallet.credit(shop.li, Money.of("0.001", "CNY"), reason="x", actor=ADMIN),
            InvalidAmount,
        ),
        (lambda: core.wallet.credit_points(shop.li, 0, reason="x", actor=ADMIN), InvalidField),
        (lambda: core.wallet.credit_points(shop.li, -3, reason="x", actor=ADMIN), InvalidField),
        (lambda: core.wallet.credit(shop.li, cny("1.00"), reason=" ", actor=ADMIN), InvalidField),
        (lambda: core.wallet.credit(99999, cny("1.00"), reason="x", actor=ADMIN), CustomerNotFound),
    ]
    for call, error in refusals:
        with pytest.raises(error):
            call()
        assert snapshot(core) == before
    assert core.wallet.balance(shop.li, "CNY") == cny("100.00")
    assert_ledger_matches(core, shop.li)


def test_wallet_points(core: OrderCore, shop: Shop) -> None:
    core.wallet.debit_points(shop.li, 999, reason="redeem", actor=ADMIN)
    assert core.wallet.points(shop.li) == 1
    core.wallet.credit_points(shop.li, 41, reason="bonus", actor=ADMIN)
    assert core.wallet.points(shop.li) == 42
    assert core.wallet.show(shop.li).points == 42
    assert_ledger_matches(core, shop.li)


# ----------------------------------------------------------------------- cancel_expired
def test_cancel_expired(core: OrderCore, shop: Shop, clock: FakeClock) -> None:
    pending = core.orders.create(
        customer_id=shop.li,
        items=[("vpn", 2)],
        coupon="TEN",
        use_balance=cny("10.00"),
        actor=ADMIN,
    )
    paid = core.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=ADMIN)
    core.orders.mark_paid(paid.number, actor=ADMIN)
    clock.advance(5 * 60)
    later = core.orders.create(customer_id=shop.han, items=[("vpn", 1)], actor=ADMIN)
    assert stock(core, "vpn") == 6

    clock.advance(10 * 60)  # exactly at the first deadline: not yet past it
    assert clock() == pending.payment_deadline
    assert core.orders.cancel_expired() == []

    clock.advance(1)
    before_audit = core.audit.count()
    assert core.orders.cancel_expired() == [pending.number]
    expired = core.orders.get(pending.number)
    assert expired.status is OrderStatus.CANCELED
    assert expired.cancel_reason is CancelReason.TIMEOUT
    assert core.orders.get(paid.number).status is OrderStatus.PAID
    assert core.orders.get(later.number).status is OrderStatus.PENDING
    assert stock(core, "vpn") == 8
    assert uses(core, "TEN") == 0
    assert core.wallet.balance(shop.li, "CNY") == cny("100.00")
    assert_ledger_matches(core, shop.li)
    log = [r for r in audit_rows(core)[before_audit:] if r["action"] == "order.cancel"]
    assert len(log) == 1
    assert (log[0]["actor_kind"], log[0]["reason"]) == ("system", "timeout")
    assert core.orders.cancel_expired() == []  # nothing twice

    clock.advance(5 * 60)
    assert core.orders.cancel_expired() == [later.number]
    assert core.orders.get(paid.number).status is OrderStatus.PAID


def test_an_order_with_its_own_payment_timeout(
    core: OrderCore, shop: Shop, clock: FakeClock
) -> None:
    order = core.orders.create(
        customer_id=shop.han,
        items=[("vpn", 1)],
        payment_timeout=timedelta(hours=2),
        actor=ADMIN,
    )
    assert order.payment_deadline == clock() + timedelta(hours=2)
    clock.advance(3600)
    assert core.orders.cancel_expired() == []
    clock.advance(3601)
    assert core.orders.cancel_expired() == [order.number]
