"""Pricing: properties of :func:`price_order` over random orders, and hand-computed examples.

The property test throws random lines (1-5, CNY or JPY, with and without quantity tiers),
coupons, manual discounts, balance and points deductions and channel fees at ``price_order``
and checks, whenever it succeeds, the breakdown's invariants by replaying it step by step
(what each step took, from which line, on what base); whenever it fails, that it failed with
one of the typed errors, for a reason the input really has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ordercore import (
    AdjustmentKind,
    Coupon,
    CouponKind,
    CouponUnusable,
    CurrencyMismatch,
    DiscountTooLarge,
    FeeRule,
    InsufficientFunds,
    InvalidAmount,
    InvalidField,
    ManualDiscount,
    Money,
    OrderLine,
    Product,
    QuantityTier,
    UseAll,
)
from ordercore._orders.pricing import PricedOrder, price_order

NOW = datetime(2026, 11, 24, 8, 30, 15, 123456, tzinfo=timezone.utc)
TYPED = (
    DiscountTooLarge,
    InsufficientFunds,
    CouponUnusable,
    InvalidField,
    InvalidAmount,
    CurrencyMismatch,
)
#: The documented order of the steps; each kind appears at most once.
STEP_ORDER = [
    AdjustmentKind.TIER_DISCOUNT,
    AdjustmentKind.COUPON,
    AdjustmentKind.MANUAL_DISCOUNT,
    AdjustmentKind.BALANCE,
    AdjustmentKind.POINTS,
    AdjustmentKind.FEE,
    AdjustmentKind.MERCHANT_FEE,
]
DEDUCTIONS = STEP_ORDER[:5]
SKUS = ["vpn-1m", "vpn-12m", "ip-addon", "storage", "topup"]
#: The largest price the strategies draw, in minor units: 9999.99 CNY, 9999 JPY.
MAX_MINOR = {"CNY": 999_999, "JPY": 9_999}


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def money(units: int, currency: str) -> Money:
    return Money.from_minor(units, currency)


def line(sku: str, price: str, quantity: int, *tiers: tuple[int, str]) -> OrderLine:
    product = Product(
        sku=sku,
        name=sku,
        price=cny(price),
        tiers=tuple(QuantityTier(q, Decimal(p)) for q, p in tiers),
    )
    return OrderLine.from_product(product, quantity)


def total(amounts: Sequence[Money], currency: Any) -> Money:
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result


# ------------------------------------------------------------------------------ strategies
@st.composite
def order_lines(draw: st.DrawFn, currency: str) -> list[OrderLine]:
    count = draw(st.integers(1, 5))
    skus = draw(st.lists(st.sampled_from(SKUS), min_size=count, max_size=count))
    lines = []
    for sku in skus:
        # Now and then a free line, and small prices often, so that rounding is exercised.
        units = draw(
            st.one_of(
                st.just(0),
                st.integers(1, 100),
                st.integers(0, MAX_MINOR[currency]),
            )
        )
        tiers = draw(
            st.lists(
                st.builds(
                    QuantityTier,
                    min_quantity=st.integers(2, 12),
                    percent_off=st.sampled_from(
                        [
                            Decimal("5"),
                            Decimal("10"),
                            Decimal("12.5"),
                            Decimal("33.33"),
                            Decimal("100"),
                        ]
                    ),
                ),
                max_size=3,
                unique_by=lambda t: t.min_quantity,
            )
        )
        product = Product(sku=sku, name=sku, price=money(units, currency), tiers=tiers)
        lines.append(OrderLine.from_product(product, draw(st.integers(1, 20))))
    return lines


def amounts(currency: str, max_minor: int = 2_000_000) -> st.SearchStrategy[Money]:
    """Small amounts as often as large ones, so that every step gets to succeed."""
    return st.one_of(st.integers(0, 2_000), st.integers(0, max_minor)).map(
        lambda u: money(u, currency)
    )


def positive_amounts(currency: str, max_minor: int = 2_000_000) -> st.SearchStrategy[Money]:
    return st.one_of(st.integers(1, 2_000), st.integers(1, max_minor)).map(
        lambda u: money(u, currency)
    )


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (a middle value: Hypothesis favours the ends), and
    False when shrunk."""
    return st.integers(1, n).map(lambda i: i == n // 2 + 1)


@st.composite
def coupons(draw: st.DrawFn, currency: str, skus: Sequence[str] = SKUS) -> Coupon:
    # Mostly usable; now and then foreign, disabled, not yet valid or expired.
    ccy = "USD" if draw(one_in(12)) else currency
    kind = draw(st.sampled_from(CouponKind))
    percent = amount = None
    if kind is CouponKind.PERCENT:
        percent = draw(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2))
    else:
        amount = draw(positive_amounts(ccy, 500_000))
    start = draw(
        st.sampled_from([NOW, NOW + timedelta(microseconds=1), NOW + timedelta(days=1)])
        if draw(one_in(8))
        else st.sampled_from([None, NOW - timedelta(days=1), NOW])
    )
    end = draw(
        st.sampled_from([NOW - timedelta(days=1), NOW])
        if draw(one_in(8))
        else st.sampled_from([None, NOW + timedelta(microseconds=1), NOW + timedelta(days=2)])
    )
    assume(not (start and end and start >= end))
    return Coupon(
        code=draw(st.sampled_from(["SAVE", "VIP-2026", "x_1"])),
        kind=kind,
        currency=ccy,
        percent=percent,
        amount=amount,
        max_discount=draw(st.none() | amounts(ccy, 300_000)),
        min_amount=draw(st.none() | amounts(ccy, 1_000_000)),
        valid_from=start,
        valid_until=end,
        # Restricted to some products now and then: mostly some of the order's own.
        skus=frozenset(
            draw(st.lists(st.sampled_from([*sorted(set(skus)), "other"]), min_size=1, max_size=3))
            if draw(one_in(2))
            else ()
        ),
        active=not draw(one_in(10)),
    )


@st.composite
def fee_rules(draw: st.DrawFn, currency: str) -> FeeRule | None:
    shape = draw(st.sampled_from(["none", "percent", "fixed", "both"]))
    if shape == "none":
        return None
    percent = (
        draw(st.decimals(min_value=Decimal("0"), max_value=Decimal("99.99"), places=2))
        if shape in ("percent", "both")
        else Decimal(0)
    )
    fixed = None
    if shape in ("fixed", "both"):
        fixed = draw(amounts("USD" if draw(one_in(15)) else currency, 10_000))
    return FeeRule(
        percent=percent, fixed=fixed, borne_by=draw(st.sampled_from(["merchant", "customer"]))
    )


@dataclass(frozen=True)
class Case:
    lines: list[OrderLine]
    coupon: Coupon | None
    manual: ManualDiscount | None
    use_balance: Money | UseAll | None
    balance_available: Money | None
    use_points: int
    points_available: int
    points_rate: Decimal | None
    fee_rule: FeeRule | None

    def price(self, **overrides: Any) -> PricedOrder:
        values: dict[str, Any] = {
            "now": NOW,
            "coupon": self.coupon,
            "manual_discount": self.manual,
            "use_balance": self.use_balance,
            "balance_available": self.balance_available,
            "use_points": self.use_points,
            "points_available": self.points_available,
            "points_rate": self.points_rate,
            "fee_rule": self.fee_rule,
        }
        values.update(overrides)
        return price_order(self.lines, **values)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    currency = draw(st.sampled_from(["CNY", "JPY"]))
    lines = draw(order_lines(currency))
    if draw(one_in(30)):  # now and then an order mixing two currencies
        stray = Product(sku="stray", name="stray", price=Money.of("1", "USD"))
        lines.append(OrderLine.from_product(stray, 1))
    manual = None
    if draw(st.booleans()):
        manual = ManualDiscount(
            draw(positive_amounts(currency, 3_000_000)),
            draw(st.sampled_from(["goodwill", "service outage", "VIP"])),
        )
    use_balance: Money | UseAll | None = draw(
        st.sampled_from([None, UseAll.ALL, "amount", "amount"])
    )
    if use_balance == "amount":
        use_balance = draw(amounts(currency, 3_000_000))
    return Case(
        lines=lines,
        coupon=draw(st.none() | coupons(currency, [ln.sku for ln in lines])),
        manual=manual,
        use_balance=use_balance,
        balance_available=None if draw(one_in(6)) else draw(amounts(currency, 3_000_000)),
        use_points=draw(st.sampled_from([0, 1, 50, 100, 999, 5_000, 0, 200_000])),
        points_available=draw(st.sampled_from([100, 10_000, 0, 1_000_000])),
        points_rate=None
        if draw(one_in(8))
        else draw(st.sampled_from([Decimal(r) for r in ("0.01", "0.1", "1", "0.003")])),
        fee_rule=draw(fee_rules(currency)),
    )


# ----------------------------------------------------------------------- the oracle
def check_breakdown(case: Case, priced: PricedOrder) -> None:
    """Replay the breakdown step by step and check every invariant of it."""
    lines = case.lines
    b = priced.breakdown
    currency = b.currency
    zero = Money.zero(currency)

    # Payable is never negative, and the breakdown sums to it.
    assert b.payable >= zero
    assert b.original == total([ln.total for ln in lines], currency)
    discounts = total([a.amount for a in b.adjustments if a.kind in DEDUCTIONS], currency)
    customer_fee = b.total_of(AdjustmentKind.FEE)
    assert b.original - discounts + customer_fee == b.payable

    # The steps come in the documented order, each at most once, none of them zero.
    kinds = [a.kind for a in b.adjustments]
    assert kinds == sorted(kinds, key=STEP_ORDER.index)
    assert len(set(kinds)) == len(kinds)
    assert all(a.amount.is_positive() for a in b.adjustments)

    # Walk the steps with each line's remaining amount.
    nets = [ln.total for ln in lines]
    by_kind = {a.kind: a for a in b.adjustments}
    for adj in b.adjustments:
        if adj.kind not in DEDUCTIONS:
            assert adj.per_line == ()
            continue
        assert len(adj.per_line) == len(lines)
        assert total(list(adj.per_line), currency) == adj.amount
        base = total(nets, currency)
        assert adj.amount <= base, f"{adj.kind} {adj.amount} exceeds its base {base}"
        for i, part in enumerate(adj.per_line):
            assert zero <= part <= nets[i], f"{adj.kind} takes {part} of line {i} ({nets[i]})"
        if adj.kind is AdjustmentKind.TIER_DISCOUNT:
            for ln, part in zip(lines, adj.per_line, strict=True):
                pct = ln.tier_percent_off or Decimal(0)
                assert part == ln.total.multiply(pct / 100)
        elif adj.kind is AdjustmentKind.COUPON:
            coupon = case.coupon
            assert coupon is not None
            eligible = [i for i, ln in enumerate(lines) if coupon.applies_to(ln.sku)]
            coupon_base = total([nets[i] for i in eligible], currency)
            assert adj.amount <= coupon_base
            for i, part in enumerate(adj.per_line):
                if i not in eligible:
                    assert part.is_zero(), "the coupon fell on a line it does not apply to"
            assert adj.amount == expected_coupon(coupon, coupon_base)
            assert adj.label == coupon.code
        elif adj.kind is AdjustmentKind.MANUAL_DISCOUNT:
            assert case.manual is not None
            assert adj.amount == case.manual.amount
            assert adj.label == case.manual.reason
        elif adj.kind is AdjustmentKind.BALANCE:
            assert case.balance_available is not None
            assert adj.amount <= case.balance_available
            if isinstance(case.use_balance, UseAll):
                assert adj.amount == case.balance_available.min(base)
            else:
                assert adj.amount == case.use_balance
        elif adj.kind is AdjustmentKind.POINTS:
            assert case.points_rate is not None
            worth = (case.points_rate * case.use_points).quantize(
                currency.exponent, rounding=ROUND_DOWN
            )
            assert adj.amount.amount == worth
            assert 0 < case.use_points <= case.points_available
        nets = [n - p for n, p in zip(nets, adj.per_line, strict=True)]
    assert all(n >= zero for n in nets)
    to_pay = total(nets, currency)

    # A step that did not show up took nothing.
    if AdjustmentKind.COUPON not in by_kind and case.coupon is not None:
        assert priced.coupon_discount.is_zero()
    if AdjustmentKind.MANUAL_DISCOUNT not in by_kind:
        assert case.manual is None
    assert priced.balance_used == b.total_of(AdjustmentKind.BALANCE)
    assert priced.coupon_discount == b.total_of(AdjustmentKind.COUPON)
    # Only the points the deduction is worth are spent (never more than asked).
    worth_points = b.total_of(AdjustmentKind.POINTS).amount
    if case.use_points and case.points_rate is not None:
        spent = int((worth_points / case.points_rate).to_integral_value(rounding=ROUND_CEILING))
        assert priced.points_used == spent
        assert priced.points_used <= case.use_points
    else:
        assert priced.points_used == 0

    # The fee is computed on what is left to pay; the merchant's does not change payable.
    fee = by_kind.get(AdjustmentKind.FEE) or by_kind.get(AdjustmentKind.MERCHANT_FEE)
    rule = case.fee_rule
    expected_fee = zero
    if rule is not None and to_pay.is_positive():
        expected_fee = to_pay.multiply(rule.percent / 100) + (rule.fixed or zero)
    assert (fee.amount if fee else zero) == expected_fee
    if fee is not None:
        assert rule is not None
        assert fee.kind is (
            AdjustmentKind.FEE if rule.borne_by == "customer" else AdjustmentKind.MERCHANT_FEE
        )
    if fee is None or fee.kind is AdjustmentKind.MERCHANT_FEE:
        assert b.payable == to_pay
    else:
        assert b.payable == to_pay + fee.amount
    without_fee = case.price(fee_rule=None).breakdown
    assert without_fee.payable == to_pay
    assert [a for a in b.adjustments if a.kind in DEDUCTIONS] == list(without_fee.adjustments)


def expected_coupon(coupon: Coupon, base: Money) -> Money:
    if coupon.kind is CouponKind.PERCENT:
        assert coupon.percent is not None
        discount = Money.rounded(base.amount * coupon.percent / 100, base.currency)
    else:
        assert coupon.amount is not None
        discount = coupon.amount
    if coupon.max_discount is not None:
        discount = discount.min(coupon.max_discount)
    return discount.min(base)


def check_refusal(case: Case, exc: Exception) -> None:
    """The error is typed, and the input really has what the error says."""
    assert isinstance(exc, TYPED), f"untyped error {type(exc).__name__}: {exc}"
    currencies = {ln.unit_price.currency for ln in case.lines}
    if isinstance(exc, CouponUnusable):
        coupon = case.coupon
        assert coupon is not None
        assert exc.coupon == coupon.code
        code = exc.code
        if code == "currency":
            assert coupon.currency not in {c.code for c in currencies}
        elif code == "inactive":
            assert not coupon.active
        elif code == "not_yet_valid":
            assert coupon.valid_from is not None
            assert coupon.valid_from > NOW
        elif code == "expired":
            assert coupon.valid_until is not None
            assert coupon.valid_until <= NOW
        elif code == "not_applicable":
            assert not any(coupon.applies_to(ln.sku) for ln in case.lines)
        else:
            assert code == "below_minimum", code
            assert coupon.min_amount is not None
    elif isinstance(exc, InsufficientFunds):
        if exc.field == "use_balance":
            held = case.balance_available or Money.zero(case.lines[0].unit_price.currency)
            assert isinstance(case.use_balance, Money)
            assert case.use_balance > held
        else:
            assert exc.field == "use_points"
            assert case.use_points > case.points_available
    elif isinstance(exc, DiscountTooLarge):
        # Only an explicit amount can be too large: never a coupon, a tier or UseAll.ALL.
        assert exc.field in ("manual_discount", "use_balance", "use_points"), exc.field
        if exc.field == "manual_discount":
            assert case.manual is not None
        elif exc.field == "use_balance":
            assert isinstance(case.use_balance, Money)
        else:
            assert case.use_points > 0
    elif isinstance(exc, CurrencyMismatch):
        foreign_fee = case.fee_rule is not None and case.fee_rule.fixed is not None
        assert len(currencies) > 1 or foreign_fee
    elif isinstance(exc, InvalidField):
        assert case.use_points
        assert case.points_rate is None
    else:
        # Every amount drawn is valid: an InvalidAmount here is a broken breakdown invariant.
        pytest.fail(f"price_order broke its own invariant: {exc!r}")


# ------------------------------------------------------------------------ the property
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=cases())
def test_price_order_invariants(case: Case) -> None:
    try:
        priced = case.price()
    except Exception as exc:  # the point is to see which error it is
        check_refusal(case, exc)
        return
    check_breakdown(case, priced)


@settings(max_examples=200, deadline=None)
@given(
    prices=st.lists(st.integers(0, 999_999), min_size=1, max_size=5),
    quantities=st.lists(st.integers(1, 20), min_size=5, max_size=5),
    percent=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2),
    cap=st.none() | st.integers(0, 100_000),
)
def test_a_coupon_never_exceeds_its_base_and_loses_no_cent(
    prices: list[int], quantities: list[int], percent: Decimal, cap: int | None
) -> None:
    lines = [
        OrderLine(sku=f"s{i}", name="x", unit_price=money(p, "CNY"), quantity=q)
        for i, (p, q) in enumerate(zip(prices, quantities, strict=False))
    ]
    coupon = Coupon(
        code="PCT",
        kind="percent",
        currency="CNY",
        percent=percent,
        max_discount=None if cap is None else money(cap, "CNY"),
    )
    priced = price_order(lines, now=NOW, coupon=coupon)
    original = priced.breakdown.original
    assert priced.coupon_discount <= original
    assert priced.coupon_discount == expected_coupon(coupon, original)
    assert priced.breakdown.payable == original - priced.coupon_discount
    if percent == 100 and cap is None:
        assert priced.breakdown.payable.is_zero()


# ------------------------------------------------------------------------- examples
def full_order(fee: FeeRule | None) -> PricedOrder:
    return price_order(
        [line("vpn-1m", "30.00", 3, (3, "10")), line("vpn-12m", "100.00", 1)],
        now=NOW,
        coupon=Coupon(
            code="WELCOME20",
            kind="percent",
            currency="CNY",
            percent=Decimal("20"),
            max_discount=cny("50.00"),
        ),
        manual_discount=ManualDiscount(cny("4.80"), "goodwill"),
        use_balance=cny("40.00"),
        balance_available=cny("55.00"),
        use_points=1000,
        points_available=1500,
        points_rate=Decimal("0.01"),
        fee_rule=fee,
    )


def parts(priced: PricedOrder) -> list[tuple[str, str, list[str]]]:
    return [
        (a.kind.value, str(a.amount.amount), [str(p.amount) for p in a.per_line])
        for a in priced.breakdown.adjustments
    ]


def test_the_steps_in_their_documented_order() -> None:
    """tier → coupon → manual → balance → points → fee, each on what the previous left.

    3 × 30.00 with a 3+ tier of 10 % and 1 × 100.00: original 190.00.
    tier     9.00 on line 1                                   → 81.00 + 100.00 = 181.00
    coupon   20 % of 181.00 = 36.20 (under its 50.00 cap), split 81:100 → 16.20 + 20.00
                                                              → 64.80 + 80.00 = 144.80
    manual   4.80 split 64.80:80.00 = 2.148…:2.651… → 2.14 + 2.65, the spare cent to the
             larger remainder (line 1)                → 2.15 + 2.65 → 62.65 + 77.35 = 140.00
    balance  40.00 split 62.65:77.35 → 17.90 + 22.10       → 44.75 + 55.25 = 100.00
    points   1000 × 0.01 = 10.00 split 44.75:55.25 → 4.475:5.525 → 4.47 + 5.52 and the
             spare cent to the earlier line on a tie → 4.48 + 5.52 → 40.27 + 49.73 = 90.00
    fee      0.6 % of 90.00 = 0.54, + 1.00 fixed = 1.54, borne by the customer → 91.54
    """
    priced = full_order(FeeRule(percent=Decimal("0.6"), fixed=cny("1.00"), borne_by="customer"))
    b = priced.breakdown
    assert b.original == cny("190.00")
    assert parts(priced) == [
        ("tier_discount", "9.00", ["9.00", "0.00"]),
        ("coupon", "36.20", ["16.20", "20.00"]),
        ("manual_discount", "4.80", ["2.15", "2.65"]),
        ("balance", "40.00", ["17.90", "22.10"]),
        ("points", "10.00", ["4.48", "5.52"]),
        ("fee", "1.54", []),
    ]
    assert b.payable == cny("91.54")
    assert priced.balance_used == cny("40.00")
    assert priced.points_used == 1000
    assert priced.coupon_discount == cny("36.20")
    assert b.as_dict() == {
        "original": "190.00",
        "tier_discount": "9.00",
        "coupon": "36.20",
        "manual_discount": "4.80",
        "balance": "40.00",
        "points": "10.00",
        "fee": "1.54",
        "payable": "91.54",
        "paid": "0.00",
        "refunded": "0.00",
    }


def test_a_merchant_fee_is_shown_and_not_charged() -> None:
    merchant = full_order(FeeRule(percent=Decimal("0.6"), fixed=cny("1.00")))
    assert parts(merchant)[-1] == ("merchant_fee", "1.54", [])
    assert merchant.breakdown.payable == cny("90.00")
    assert full_order(None).breakdown.payable == cny("90.00")
    assert parts(full_order(None)) == parts(merchant)[:-1]


@pytest.mark.parametrize(
    ("rule", "fee"),
    [
        (FeeRule(), None),
        (FeeRule(percent=Decimal("2.5"), borne_by="customer"), "2.25"),
        (FeeRule(fixed=cny("0.30"), borne_by="customer"), "0.30"),
        (FeeRule(percent=Decimal("0.55"), fixed=cny("0.30"), borne_by="customer"), "0.80"),
    ],
    ids=["none", "percent", "fixed", "percent+fixed"],
)
def test_fee_rules(rule: FeeRule, fee: str | None) -> None:
    """On 90.00: 2.5 % = 2.25; 0.30 fixed; 0.55 % = 0.495 → 0.50 (half up) + 0.30 = 0.80."""
    priced = price_order([line("a", "90.00", 1)], now=NOW, fee_rule=rule)
    if fee is None:
        assert priced.breakdown.adjustments == ()
        assert priced.breakdown.payable == cny("90.00")
    else:
        assert parts(priced) == [("fee", fee, [])]
        assert priced.breakdown.payable == cny("90.00") + cny(fee)


def test_a_coupon_only_falls_on_the_lines_it_applies_to() -> None:
    coupon = Coupon(
        code="ADDON",
        kind="fixed",
        currency="CNY",
        amount=cny("50.00"),
        skus=frozenset({"ip-addon"}),
    )
    priced = price_order(
        [line("vpn-1m", "30.00", 1), line("ip-addon", "20.00", 2)], now=NOW, coupon=coupon
    )
    # 50.00 off, but its base is the add-on line (40.00): the discount stops there.
    assert parts(priced) == [("coupon", "40.00", ["0.00", "40.00"])]
    assert priced.breakdown.payable == cny("30.00")


def test_a_coupons_cap_and_minimum_use_the_eligible_amount_after_tiers() -> None:
    coupon = Coupon(
        code="BIG",
        kind="percent",
        currency="CNY",
        percent=Decimal("50"),
        max_discount=cny("12.34"),
        min_amount=cny("81.00"),
    )
    priced = price_order([line("a", "30.00", 3, (3, "10"))], now=NOW, coupon=coupon)
    assert parts(priced) == [
        ("tier_discount", "9.00", ["9.00"]),
        ("coupon", "12.34", ["12.34"]),
    ]
    with pytest.raises(CouponUnusable) as info:
        price_order([line("a", "30.00", 3, (3, "10.01"))], now=NOW, coupon=coupon)
    assert info.value.code == "below_minimum"


def test_jpy_has_no_minor_units() -> None:
    lines = [
        OrderLine(sku="a", name="a", unit_price=Money.of("333", "JPY"), quantity=1),
        OrderLine(sku="b", name="b", unit_price=Money.of("667", "JPY"), quantity=1),
    ]
    coupon = Coupon(code="J", kind="percent", currency="JPY", percent=Decimal("15"))
    priced = price_order(
        lines,
        now=NOW,
        coupon=coupon,
        use_points=7,
        points_available=7,
        points_rate=Decimal("1"),
        fee_rule=FeeRule(percent=Decimal("3.25"), borne_by="customer"),
    )
    # 15 % of 1000 = 150, split 333:667 → 49.95:100.05 → 50 + 100; 7 points = 7 JPY
    # (843 left: 283:560 → 2.349…:4.650… → 2 + 5); fee 3.25 % of 843 = 27.3975 → 27.
    assert parts(priced) == [
        ("coupon", "150", ["50", "100"]),
        ("points", "7", ["2", "5"]),
        ("fee", "27", []),
    ]
    assert priced.breakdown.payable == Money.of("870", "JPY")


# -------------------------------------------------------------- coupons that are refused
def _coupon(**overrides: Any) -> Coupon:
    values: dict[str, Any] = {
        "code": "C1",
        "kind": "fixed",
        "currency": "CNY",
        "amount": cny("5.00"),
    }
    values.update(overrides)
    return Coupon(**values)


@pytest.mark.parametrize(
    ("coupon", "code"),
    [
        (_coupon(valid_until=NOW - timedelta(seconds=1)), "expired"),
        (_coupon(valid_until=NOW), "expired"),
        (_coupon(valid_from=NOW + timedelta(microseconds=1)), "not_yet_valid"),
        (_coupon(active=False), "inactive"),
        (_coupon(currency="JPY", amount=Money.of("500", "JPY")), "currency"),
        (_coupon(min_amount=cny("30.01")), "below_minimum"),
        (_coupon(skus=frozenset({"something-else"})), "not_applicable"),
    ],
    ids=[
        "expired",
        "expired-at-the-edge",
        "not-yet-valid",
        "inactive",
        "foreign-currency",
        "below-minimum",
        "not-applicable",
    ],
)
def test_an_unusable_coupon_says_why(coupon: Coupon, code: str) -> None:
    with pytest.raises(CouponUnusable) as info:
        price_order([line("vpn-1m", "30.00", 1)], now=NOW, coupon=coupon)
    assert info.value.code == code
    assert info.value.coupon == "C1"
    assert "C1" in str(info.value)


def test_a_coupon_at_its_edges_is_usable() -> None:
    coupon = _coupon(
        valid_from=NOW, valid_until=NOW + timedelta(microseconds=1), min_amount=cny("30.00")
    )
    priced = price_order([line("vpn-1m", "30.00", 1)], now=NOW, coupon=coupon)
    assert priced.breakdown.payable == cny("25.00")


@pytest.mark.parametrize(
    "field",
    ["valid_from", "valid_until"],
)
def test_a_coupon_refuses_a_naive_validity_time(field: str) -> None:
    """A naive time cannot be compared with the aware clock (TypeError at pricing) and cannot
    be stored (the UTC column refuses it): the coupon must refuse it, typed, when built."""
    with pytest.raises(InvalidField):
        _coupon(**{field: datetime(2026, 12, 1)})  # naive on purpose


# ----------------------------------------------------------------------- zero and refusals
def test_payable_may_be_zero() -> None:
    lines = [line("vpn-1m", "30.00", 1)]
    by_balance = price_order(
        lines, now=NOW, use_balance=UseAll.ALL, balance_available=cny("100.00")
    )
    assert by_balance.breakdown.payable == cny("0.00")
    assert by_balance.balance_used == cny("30.00")
    by_points = price_order(
        lines, now=NOW, use_points=3000, points_available=3000, points_rate=Decimal("0.01")
    )
    assert by_points.breakdown.payable.is_zero()
    coupon = _coupon(kind="percent", amount=None, percent=Decimal("100"))
    with_fee = price_order(
        lines,
        now=NOW,
        coupon=coupon,
        fee_rule=FeeRule(percent=Decimal("1"), fixed=cny("0.50"), borne_by="customer"),
    )
    assert with_fee.breakdown.payable.is_zero()  # no fee on nothing
    assert parts(with_fee) == [("coupon", "30.00", ["30.00"])]
    free = price_order([line("gift", "0.00", 2)], now=NOW, use_balance=UseAll.ALL)
    assert free.breakdown.payable.is_zero()
    assert free.breakdown.adjustments == ()


def test_use_all_takes_what_is_held_when_less_than_payable() -> None:
    priced = price_order(
        [line("a", "30.00", 1)], now=NOW, use_balance=UseAll.ALL, balance_available=cny("12.34")
    )
    assert priced.balance_used == cny("12.34")
    assert priced.breakdown.payable == cny("17.66")
    nothing = price_order([line("a", "30.00", 1)], now=NOW, use_balance=UseAll.ALL)
    assert nothing.balance_used.is_zero()
    assert nothing.breakdown.adjustments == ()


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        (
            {"manual_discount": ManualDiscount(cny("30.01"), "too much")},
            DiscountTooLarge,
            "manual_discount",
        ),
        (
            {"use_balance": cny("30.01"), "balance_available": cny("100.00")},
            DiscountTooLarge,
            "use_balance",
        ),
        (
            {"use_balance": cny("10.00"), "balance_available": cny("9.99")},
            InsufficientFunds,
            "use_balance",
        ),
        ({"use_balance": cny("10.00")}, InsufficientFunds, "use_balance"),
        (
            {"use_balance": cny("-1.00"), "balance_available": cny("9.99")},
            InvalidAmount,
            "use_balance",
        ),
        (
            {"use_points": 3001, "points_available": 5000, "points_rate": Decimal("0.01")},
            DiscountTooLarge,
            "use_points",
        ),
        (
            {"use_points": 10, "points_available": 9, "points_rate": Decimal("0.01")},
            InsufficientFunds,
            "use_points",
        ),
        ({"use_points": 10, "points_available": 10}, InvalidField, "use_points"),
        ({"use_points": -1}, InvalidField, "use_points"),
        ({"manual_discount": ManualDiscount(Money.of("5", "JPY"), "x")}, CurrencyMismatch, None),
        (
            {"use_balance": Money.of("5", "JPY"), "balance_available": cny("9.00")},
            CurrencyMismatch,
            None,
        ),
        ({"fee_rule": FeeRule(fixed=Money.of("1.00", "USD"))}, CurrencyMismatch, None),
    ],
    ids=[
        "manual>left",
        "balance>left",
        "balance>held",
        "balance-none-held",
        "negative-balance",
        "points>left",
        "points>held",
        "points-no-rate",
        "negative-points",
        "manual-currency",
        "balance-currency",
        "fee-currency",
    ],
)
def test_refusals_are_typed(kwargs: dict[str, Any], error: type[Exception], field: str) -> None:
    with pytest.raises(error) as info:
        price_order([line("a", "30.00", 1)], now=NOW, **kwargs)
    if field is not None:
        assert info.value.field == field


def test_a_discount_after_a_full_coupon_is_too_large() -> None:
    coupon = _coupon(amount=cny("30.00"))
    with pytest.raises(DiscountTooLarge):
        price_order(
            [line("a", "30.00", 1)],
            now=NOW,
            coupon=coupon,
            manual_discount=ManualDiscount(cny("0.01"), "one cent"),
        )


def test_orders_mixing_currencies_and_empty_orders_are_refused() -> None:
    mixed = [line("a", "30.00", 1), OrderLine("b", "b", Money.of("5", "JPY"), 1)]
    with pytest.raises(CurrencyMismatch):
        price_order(mixed, now=NOW)
    with pytest.raises(InvalidField):
        price_order([], now=NOW)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ManualDiscount(cny("0.00"), "nothing"),
        lambda: ManualDiscount(cny("-1.00"), "negative"),
        lambda: ManualDiscount(cny("1.00"), " "),
        lambda: Coupon(code="bad code", kind="fixed", currency="CNY", amount=cny("1.00")),
        lambda: Coupon(code="P", kind="percent", currency="CNY", percent=Decimal("0")),
        lambda: Coupon(code="P", kind="percent", currency="CNY", percent=Decimal("100.01")),
        lambda: Coupon(code="F", kind="fixed", currency="CNY", amount=cny("0.00")),
        lambda: Coupon(code="F", kind="fixed", currency="CNY", amount=Money.of("1", "JPY")),
        lambda: Coupon(code="F", kind="fixed", currency="CNY", amount=cny("1"), limit_total=0),
        lambda: Coupon(
            code="F",
            kind="fixed",
            currency="CNY",
            amount=cny("1"),
            valid_from=NOW,
            valid_until=NOW,
        ),
        lambda: FeeRule(percent=Decimal("100")),
        lambda: FeeRule(percent=Decimal("-1")),
        lambda: FeeRule(fixed=cny("-0.01")),
        lambda: FeeRule(borne_by="nobody"),
        lambda: Money.of("0.001", "CNY"),
        lambda: Money.of("1.5", "JPY"),
    ],
)
def test_bad_pricing_inputs_are_refused_when_built(build: Any) -> None:
    with pytest.raises(TYPED):
        build()


@example(units=1, quantity=3)
@given(units=st.integers(0, 999_999), quantity=st.integers(1, 20))
def test_the_tier_discount_is_at_most_the_line(units: int, quantity: int) -> None:
    lines = [
        OrderLine(
            sku="a",
            name="a",
            unit_price=money(units, "CNY"),
            quantity=quantity,
            tier_percent_off=Decimal("33.33"),
        )
    ]
    b = price_order(lines, now=NOW).breakdown
    assert b.payable >= Money.zero("CNY")
    assert b.original - b.total_of(AdjustmentKind.TIER_DISCOUNT) == b.payable


def test_points_worth_nothing_are_not_spent() -> None:
    """50 points at 0.01 are worth 0.50, which is 0 JPY: the customer must not lose 50 points
    for a deduction of nothing (either refused, or not used)."""
    jpy = [OrderLine(sku="a", name="a", unit_price=Money.of("300", "JPY"), quantity=1)]
    try:
        priced = price_order(
            jpy, now=NOW, use_points=50, points_available=50, points_rate=Decimal("0.01")
        )
    except TYPED:
        return
    deducted = priced.breakdown.total_of(AdjustmentKind.POINTS)
    assert priced.points_used == 0 or deducted.is_positive(), (
        f"{priced.points_used} points spent for a deduction of {deducted}"
    )
