"""Unit tests of the pure domain's validation (ordercore._orders.domain) and of Actor."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordercore._actor import Actor, ActorKind
from ordercore._errors import (
    CurrencyMismatch,
    InvalidAmount,
    InvalidEmail,
    InvalidField,
    InvalidQuantity,
    ValidationError,
)
from ordercore._money import Money
from ordercore._orders.amounts import AdjustmentKind, AmountAdjustment, AmountBreakdown
from ordercore._orders.domain import Communication, Customer, Note, Order, OrderLine, Product

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
NAIVE = datetime(2026, 11, 24, 8, 0)
ALICE = Actor.operator("alice", "admin")


def cny(text: str) -> Money:
    return Money.of(text, "CNY")


def usd(text: str) -> Money:
    return Money.of(text, "USD")


def product(**overrides: Any) -> Product:
    fields: dict[str, Any] = {"sku": "PLAN-PRO", "name": "Pro plan", "price": cny("30.00")}
    fields.update(overrides)
    return Product(**fields)


def line(**overrides: Any) -> OrderLine:
    fields: dict[str, Any] = {
        "sku": "PLAN-PRO",
        "name": "Pro plan",
        "unit_price": cny("30.00"),
        "quantity": 1,
    }
    fields.update(overrides)
    return OrderLine(**fields)


def order(**overrides: Any) -> Order:
    lines = overrides.pop("lines", (line(quantity=2),))
    fields: dict[str, Any] = {
        "number": "20261124080000000ABCDE",
        "customer_id": 7,
        "lines": lines,
        "created_at": T0,
    }
    fields.update(overrides)
    if "amounts" not in fields:
        fields["amounts"] = AmountBreakdown.for_lines(list(lines))
    return Order(**fields)


# ------------------------------------------------------------------------------ Customer
def test_valid_customer() -> None:
    customer = Customer(
        name="Li Lei",
        email="li.lei+orders@example.com.cn",
        phone="+86 138-0013-8000",
        external_ref="user-42",
        created_at=T0,
    )
    assert customer.email == "li.lei+orders@example.com.cn"
    assert Customer(name="Han Meimei").email is None


@pytest.mark.parametrize(
    "email",
    [
        "",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice@example.",
        "alice @example.com",
        "alice@exa mple.com",
        "alice@@example.com",
        "alice@example.com\n",
        "alice@example.com ",
        "a" * 250 + "@x.com",
        123,
    ],
    ids=repr,
)
def test_bad_email(email: Any) -> None:
    with pytest.raises(InvalidEmail, match="is not an e-mail address") as info:
        Customer(name="Alice", email=email)
    assert info.value.field == "email"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "phone",
    ["", "abc", "1234", "+", "++8613800138000", "138 0013 8000 ext. 5", "13800138000\n", "1" * 40],
    ids=repr,
)
def test_bad_phone(phone: str) -> None:
    with pytest.raises(InvalidField, match="is not a phone number") as info:
        Customer(name="Alice", phone=phone)
    assert info.value.field == "phone"  # type: ignore[attr-defined]


@pytest.mark.parametrize("phone", [13800138000, b"13800138000"], ids=repr)
def test_phone_that_is_not_text_is_an_invalid_field(phone: Any) -> None:
    with pytest.raises(InvalidField) as info:
        Customer(name="Alice", phone=phone)
    assert info.value.field == "phone"  # type: ignore[attr-defined]


@pytest.mark.parametrize("phone", ["13800138000", "+86 138 0013 8000", "010-1234-5678"])
def test_good_phone(phone: str) -> None:
    assert Customer(name="Alice", phone=phone).phone == phone


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "Alice", "external_ref": ""}, "external_ref"),
        ({"name": "Alice", "external_ref": "r" * 129}, "external_ref"),
        ({"name": "Alice", "created_at": NAIVE}, "created_at"),
    ],
)
def test_customer_field_rules(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as info:
        Customer(**fields)
    assert info.value.field == field  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- Product
def test_valid_product() -> None:
    p = product(
        specs={"seats": 5, "tier": "pro", "trial": False, "gb": Decimal("1.5")},
        stock=10,
        low_stock_threshold=10,
        created_at=T0,
    )
    assert list(p.specs) == ["gb", "seats", "tier", "trial"]  # sorted
    assert p.low_on_stock
    assert not product(stock=11, low_stock_threshold=10).low_on_stock
    assert not product().low_on_stock
    assert product(price=cny("0")).price.is_zero()  # free plans are fine


@pytest.mark.parametrize(
    "sku",
    ["", "-PLAN", ".plan", "plan pro", "plan/pro", "x" * 65, "plän", "PLAN\n", None, 42],
    ids=repr,
)
def test_bad_sku(sku: Any) -> None:
    with pytest.raises(InvalidField, match="sku") as info:
        product(sku=sku)
    assert info.value.field == "sku"  # type: ignore[attr-defined]


@pytest.mark.parametrize("sku", ["a", "PLAN-PRO", "v1.2_3", "9" * 64])
def test_good_sku(sku: str) -> None:
    assert product(sku=sku).sku == sku


@pytest.mark.parametrize(
    "price",
    [cny("-0.01"), Money.of("-1", "JPY"), "30.00", Decimal("30.00"), 30, None],
    ids=repr,
)
def test_bad_price(price: Any) -> None:
    with pytest.raises(InvalidAmount) as info:
        product(price=price)
    assert info.value.field == "price"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["stock", "low_stock_threshold"])
@pytest.mark.parametrize("value", [-1, True, 1.5, "3", Decimal(3)], ids=repr)
def test_bad_stock_numbers(name: str, value: Any) -> None:
    with pytest.raises(InvalidField) as info:
        product(**{name: value})
    assert info.value.field == name  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("specs", "match"),
    [
        ({"gb": 1.5}, "must not be a float"),
        ({"ratio": float("nan")}, "must not be a float"),
        ({"seats": None}, "unsupported type"),
        ({"seats": [1]}, "unsupported type"),
        ({"seats": {"n": 1}}, "unsupported type"),
        ({"1seats": 1}, "must be an identifier"),
        ({"two words": 1}, "must be an identifier"),
        ({"": 1}, "must be an identifier"),
        ({1: 1}, "must be an identifier"),
    ],
    ids=repr,
)
def test_bad_specs(specs: dict[Any, Any], match: str) -> None:
    with pytest.raises(InvalidField, match=match) as info:
        product(specs=specs)
    assert info.value.field == "specs"  # type: ignore[attr-defined]
    with pytest.raises(InvalidField, match=match):
        line(specs=specs)


def test_product_refuses_naive_created_at() -> None:
    with pytest.raises(InvalidField, match="timezone-aware"):
        product(created_at=NAIVE)


# ----------------------------------------------------------------------------- OrderLine
@pytest.mark.parametrize(
    "quantity", [0, -1, 1.5, 1.0, True, False, "1", None, Decimal(1)], ids=repr
)
def test_bad_quantity(quantity: Any) -> None:
    with pytest.raises(InvalidQuantity, match="quantity must be a whole number") as info:
        line(quantity=quantity)
    assert info.value.value == quantity  # type: ignore[attr-defined]
    with pytest.raises(InvalidQuantity):
        OrderLine.from_product(product(), quantity)


def test_line_from_product_and_total() -> None:
    p = product(specs={"seats": 5}, id=3)
    ol = OrderLine.from_product(p, 3)
    assert (ol.sku, ol.name, ol.unit_price, ol.quantity, ol.product_id) == (
        "PLAN-PRO",
        "Pro plan",
        cny("30.00"),
        3,
        3,
    )
    assert ol.specs == {"seats": 5}
    assert ol.total == cny("90.00")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"unit_price": cny("-30.00")}, InvalidAmount),
        ({"unit_price": "30.00"}, InvalidAmount),
        ({"sku": "plan pro"}, InvalidField),
        ({"sku": ""}, InvalidField),
        ({"name": ""}, InvalidField),
    ],
    ids=["negative-unit-price", "unit-price-not-money", "bad-sku", "empty-sku", "empty-name"],
)
def test_order_line_validates_like_the_product_it_snapshots(
    fields: dict[str, Any], error: type[Exception]
) -> None:
    """A line built directly (e.g. read back from storage) must obey the product's rules;
    otherwise a negative line price silently lowers another line's payable amount."""
    with pytest.raises(error):
        line(**fields)


# ------------------------------------------------------------------- amounts and breakdown
def test_breakdown_with_adjustments() -> None:
    breakdown = AmountBreakdown(
        original=cny("100.00"),
        payable=cny("87.00"),
        adjustments=(
            AmountAdjustment(AdjustmentKind.COUPON, cny("10.00"), "WELCOME10"),
            AmountAdjustment("balance", cny("5.00")),
            AmountAdjustment(AdjustmentKind.FEE, cny("2.00"), "channel fee"),
        ),
    )
    assert breakdown.paid == cny("0")
    assert breakdown.refunded == cny("0")
    assert breakdown.total_of(AdjustmentKind.COUPON) == cny("10.00")
    assert breakdown.total_of(AdjustmentKind.POINTS) == cny("0")
    assert breakdown.as_dict() == {
        "original": "100.00",
        "coupon": "10.00",
        "balance": "5.00",
        "fee": "2.00",
        "payable": "87.00",
        "paid": "0.00",
        "refunded": "0.00",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"original": cny("100.00"), "payable": cny("99.99")},
        {"original": cny("100.00"), "payable": cny("100.01")},
        {
            "original": cny("100.00"),
            "payable": cny("100.00"),
            "adjustments": (AmountAdjustment("coupon", cny("10.00")),),
        },
        {
            "original": cny("100.00"),
            "payable": cny("90.00"),
            "adjustments": (AmountAdjustment("fee", cny("10.00")),),
        },
    ],
)
def test_breakdown_that_does_not_sum(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidAmount, match="does not match the breakdown") as info:
        AmountBreakdown(**fields)
    assert info.value.field == "payable"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fields",
    [
        {"original": cny("10.00"), "payable": usd("10.00")},
        {"original": cny("10.00"), "payable": cny("10.00"), "paid": usd("10.00")},
        {"original": cny("10.00"), "payable": cny("10.00"), "refunded": usd("0")},
        {
            "original": cny("10.00"),
            "payable": cny("9.00"),
            "adjustments": (AmountAdjustment("coupon", usd("1.00")),),
        },
    ],
    ids=["payable", "paid", "refunded", "adjustment"],
)
def test_breakdown_with_mixed_currencies(fields: dict[str, Any]) -> None:
    with pytest.raises(CurrencyMismatch):
        AmountBreakdown(**fields)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"original": cny("-10.00"), "payable": cny("-10.00")}, "must not be negative"),
        (
            {
                "original": cny("10.00"),
                "payable": cny("-5.00"),
                "adjustments": (AmountAdjustment("coupon", cny("15.00")),),
            },
            "must not be negative",
        ),
        (
            {"original": cny("10"), "payable": cny("10"), "paid": cny("5"), "refunded": cny("6")},
            "between 0 and paid",
        ),
        (
            {"original": cny("10"), "payable": cny("10"), "refunded": cny("-1")},
            "between 0 and paid",
        ),
        ({"original": cny("10"), "payable": cny("10"), "paid": cny("-1")}, None),
    ],
    ids=[
        "negative-original",
        "negative-payable",
        "refund-over-paid",
        "negative-refund",
        "negative-paid",
    ],
)
def test_breakdown_bounds(fields: dict[str, Any], match: str | None) -> None:
    with pytest.raises(InvalidAmount, match=match):
        AmountBreakdown(**fields)


def test_breakdown_refuses_paid_above_payable() -> None:
    """Guarantee 4 of the design: 0 ≤ refunded ≤ paid ≤ payable."""
    with pytest.raises(InvalidAmount):
        AmountBreakdown(original=cny("10.00"), payable=cny("10.00"), paid=cny("20.00"))


def test_breakdown_for_lines() -> None:
    lines = [line(quantity=2), line(sku="ADDON", unit_price=cny("4.50"), quantity=3)]
    breakdown = AmountBreakdown.for_lines(lines)
    assert breakdown.original == breakdown.payable == cny("73.50")
    with pytest.raises(InvalidField, match="at least one line"):
        AmountBreakdown.for_lines([])
    with pytest.raises(CurrencyMismatch):
        AmountBreakdown.for_lines([line(), line(unit_price=usd("1.00"))])


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"kind": "coupon", "amount": cny("-1.00")}, InvalidAmount, "must not be negative"),
        (
            {"kind": "coupon", "amount": cny("10.00"), "per_line": (cny("3.00"), cny("6.99"))},
            InvalidAmount,
            "sums to 9.99 CNY, not 10.00 CNY",
        ),
        (
            {"kind": "coupon", "amount": cny("10.00"), "per_line": (cny("5.00"), usd("5.00"))},
            CurrencyMismatch,
            None,
        ),
        ({"kind": "bogus", "amount": cny("1.00")}, ValidationError, None),
    ],
    ids=["negative", "per-line-does-not-sum", "per-line-mixed-currency", "unknown-kind"],
)
def test_adjustment_rules(
    fields: dict[str, Any], error: type[Exception], match: str | None
) -> None:
    with pytest.raises(error, match=match):
        AmountAdjustment(**fields)


def test_adjustment_split_over_lines() -> None:
    adj = AmountAdjustment("coupon", cny("10.00"), per_line=(cny("3.33"), cny("6.67")))
    assert adj.kind is AdjustmentKind.COUPON
    assert AdjustmentKind.FEE.sign == 1
    assert AdjustmentKind.COUPON.sign == -1


# ------------------------------------------------------------------ notes, communications
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": ""}, "note"),
        ({"text": "  \n"}, "note"),
        ({"text": "x" * 4001}, "note"),
        ({"text": 42}, "note"),
        ({"at": NAIVE}, "at"),
    ],
)
def test_note_rules(fields: dict[str, Any], field: str) -> None:
    values = {"text": "called the customer", "author": ALICE, "at": T0, **fields}
    with pytest.raises(InvalidField) as info:
        Note(**values)
    assert info.value.field == field  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": ""}, "channel"),
        ({"channel": "x" * 33}, "channel"),
        ({"text": ""}, "text"),
        ({"text": "x" * 4001}, "text"),
        ({"direction": "sideways"}, "direction"),
        ({"direction": "Inbound"}, "direction"),
        ({"at": NAIVE}, "at"),
    ],
)
def test_communication_rules(fields: dict[str, Any], field: str) -> None:
    values = {"channel": "email", "text": "receipt sent", "author": ALICE, "at": T0, **fields}
    with pytest.raises(InvalidField) as info:
        Communication(**values)
    assert info.value.field == field  # type: ignore[attr-defined]


def test_valid_note_and_communication() -> None:
    assert Note("x" * 4000, ALICE, T0).text == "x" * 4000
    assert Communication("phone", "called back", ALICE, T0, "inbound").direction == "inbound"


# ---------------------------------------------------------------------------- Order shape
def test_order_needs_lines_in_its_currency_and_aware_times() -> None:
    with pytest.raises(InvalidField, match="at least one line"):
        order(lines=(), amounts=AmountBreakdown(cny("0"), cny("0")))
    with pytest.raises(CurrencyMismatch, match="line ADDON is in USD") as info:
        order(
            lines=(line(), line(sku="ADDON", unit_price=usd("1.00"))),
            amounts=AmountBreakdown(cny("30.00"), cny("30.00")),
        )
    assert info.value.order == "20261124080000000ABCDE"  # type: ignore[attr-defined]
    for name in ("created_at", "paid_at", "payment_deadline"):
        with pytest.raises(InvalidField, match="timezone-aware") as field_info:
            order(**{name: NAIVE})
        assert field_info.value.field == name  # type: ignore[attr-defined]


def test_operator_actions_are_audited() -> None:
    o = order()
    o.add_note("VIP customer", ALICE, T0)
    o.add_communication("email", "receipt sent", ALICE, T0 + timedelta(minutes=1))
    o.set_special(True, ALICE, T0, "VIP")
    o.set_special(True, ALICE, T0, "again: no change")
    o.add_tag("vip", ALICE, T0)
    o.add_tag("vip", ALICE, T0)  # already there: no change
    o.remove_tag("vip", ALICE, T0)
    assert [e.action for e in o.pending_audit] == [
        "order.note",
        "order.communication",
        "order.special",
        "order.flag",
        "order.unflag",
    ]
    assert o.special
    assert o.tags == frozenset()
    assert len(o.notes) == 1
    assert len(o.communications) == 1
    assert o.status.value == "pending"  # none of this is a state change
    assert o.history == []


@pytest.mark.parametrize("tag", ["", "VIP", "has space", "x" * 41, "-start"])
def test_bad_tags_are_refused_and_change_nothing(tag: str) -> None:
    o = order()
    with pytest.raises(InvalidField, match="flag") as info:
        o.add_tag(tag, ALICE, T0)
    assert info.value.field == "flag"  # type: ignore[attr-defined]
    assert o.tags == frozenset()
    assert o.pending_audit == []


def test_removing_a_missing_tag_is_refused() -> None:
    o = order()
    with pytest.raises(InvalidField, match="has no flag 'vip'"):
        o.remove_tag("vip", ALICE, T0)
    assert o.pending_audit == []


def test_bad_note_on_an_order_changes_nothing() -> None:
    o = order()
    with pytest.raises(InvalidField):
        o.add_note("", ALICE, T0)
    with pytest.raises(InvalidField):
        o.add_communication("email", "sent", ALICE, T0, direction="up")
    assert o.notes == []
    assert o.communications == []
    assert o.pending_audit == []


# ------------------------------------------------------------------------------- Actor
@pytest.mark.parametrize(
    ("text", "actor"),
    [
        ("operator:alice:admin", Actor(ActorKind.OPERATOR, "alice", "admin")),
        ("operator:bob", Actor(ActorKind.OPERATOR, "bob")),
        ("customer:42", Actor(ActorKind.CUSTOMER, "42")),
        ("system:ordercore", Actor(ActorKind.SYSTEM, "ordercore")),
        ("channel:alipay", Actor(ActorKind.CHANNEL, "alipay")),
    ],
)
def test_actor_parse(text: str, actor: Actor) -> None:
    assert Actor.parse(text) == actor
    assert str(Actor.parse(text)) == text


@pytest.mark.parametrize(
    "actor",
    [
        Actor.customer(42),
        Actor.customer("u-1"),
        Actor.operator("alice", "admin"),
        Actor.operator("bob"),
        Actor.system(),
        Actor.system("cron"),
        Actor.channel("wechat"),
    ],
    ids=str,
)
def test_actor_from_named_constructors_round_trips_through_text(actor: Actor) -> None:
    assert Actor.parse(str(actor)) == actor


_ID_TEXT = st.text(
    alphabet=st.characters(blacklist_characters=":", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
).filter(str.strip)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(ActorKind)),
    id=_ID_TEXT,
    role=st.one_of(st.none(), _ID_TEXT),
)
def test_actor_text_round_trip(kind: ActorKind, id: str, role: str | None) -> None:
    actor = Actor(kind, id, role if kind is ActorKind.OPERATOR else None)
    text = str(actor)
    assert Actor.parse(text) == actor
    assert str(Actor.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice",
        "operator",
        "operator:",
        "operator::admin",
        "operator: :admin",
        ":alice",
        "robot:r2d2",
        "OPERATOR:alice",
        "operator:alice:admin:extra",
        "a:b:c:d:e",
    ],
)
def test_actor_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidField) as info:
        Actor.parse(text)
    assert info.value.field == "actor"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "id"),
    [("robot", "r2d2"), ("operator", ""), ("operator", "   "), ("operator", 7), ("customer", None)],
)
def test_actor_constructor_rejects_garbage(kind: Any, id: Any) -> None:
    with pytest.raises(InvalidField):
        Actor(kind, id)


def test_actor_kind_is_coerced_and_str() -> None:
    actor = Actor("channel", "alipay")  # type: ignore[arg-type]
    assert actor.kind is ActorKind.CHANNEL
    assert str(ActorKind.CHANNEL) == "channel"
    assert str(Actor.operator("alice")) == "operator:alice"
    assert Actor.system().role is None  # system actors get the "system" role by kind


def test_paid_amount_and_refunded_amount_are_deprecated_aliases() -> None:
    breakdown = AmountBreakdown(
        original=cny("30.00"), payable=cny("30.00"), paid=cny("30.00"), refunded=cny("5.00")
    )
    with pytest.warns(DeprecationWarning, match=r"use \.paid"):
        assert breakdown.paid_amount == breakdown.paid == cny("30.00")
    with pytest.warns(DeprecationWarning, match=r"use \.refunded"):
        assert breakdown.refunded_amount == breakdown.refunded == cny("5.00")
