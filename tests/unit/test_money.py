"""Unit tests of ordercore._money: exact amounts, currencies, rounding and allocation."""

from __future__ import annotations

import decimal
import math
import operator
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from attrs.exceptions import FrozenInstanceError
from hypothesis import given, settings
from hypothesis import strategies as st

from ordercore._errors import CurrencyMismatch, InvalidAmount, MoneyError, UnknownCurrency
from ordercore._money import Currency, Money, get_currency, register_currency, to_decimal

PROPERTY = settings(max_examples=200, deadline=None)

MAX_MINOR = 2**63 - 1
CURRENCIES = ("CNY", "JPY", "USDT", "BTC")
MINOR_UNITS = {"CNY": 2, "JPY": 0, "USDT": 6, "BTC": 8}
ROUNDINGS = (
    "ROUND_HALF_UP",
    "ROUND_HALF_EVEN",
    "ROUND_HALF_DOWN",
    "ROUND_UP",
    "ROUND_DOWN",
    "ROUND_CEILING",
    "ROUND_FLOOR",
)


def cny(text: str) -> Money:
    return Money.of(text, "CNY")


# ------------------------------------------------------------------------- strategies
minor_units = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR),
)


@st.composite
def amounts(draw: st.DrawFn, currency: str | None = None) -> Money:
    code = currency or draw(st.sampled_from(CURRENCIES))
    return Money.from_minor(draw(minor_units), code)


def weight_strategy(currency: str) -> st.SearchStrategy[Any]:
    """Non-negative weights of every accepted kind: int, Decimal, decimal text and Money."""
    return st.one_of(
        st.just(0),
        st.integers(min_value=0, max_value=10**9),
        st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False),
        st.integers(min_value=0, max_value=10**6).map(str),
        st.integers(min_value=0, max_value=10**12).map(lambda u: Money.from_minor(u, currency)),
    )


def as_fraction(weight: Any) -> Fraction:
    if isinstance(weight, Money):
        return Fraction(weight.amount)
    if isinstance(weight, str):
        return Fraction(Decimal(weight))
    return Fraction(weight)


@st.composite
def allocations(draw: st.DrawFn) -> tuple[Money, list[Any]]:
    money = draw(amounts())
    weights = draw(
        st.lists(weight_strategy(money.currency.code), min_size=1, max_size=12).filter(
            lambda ws: sum(as_fraction(w) for w in ws) > 0
        )
    )
    return money, weights


def reference_allocation(units: int, weights: Sequence[Any]) -> list[int]:
    """The documented largest-remainder rule, computed with exact fractions."""
    fractions = [as_fraction(w) for w in weights]
    total = sum(fractions)
    sign = -1 if units < 0 else 1
    magnitude = abs(units)
    exact = [magnitude * w / total for w in fractions]
    floors = [math.floor(e) for e in exact]
    leftover = magnitude - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return [sign * f for f in floors]


# --------------------------------------------------------------------------- allocate
@PROPERTY
@given(allocations())
def test_allocate_never_loses_or_creates_a_minor_unit(case: tuple[Money, list[Any]]) -> None:
    money, weights = case
    parts = money.allocate(weights)
    assert len(parts) == len(weights)
    assert all(p.currency == money.currency for p in parts)
    assert sum(p.to_minor() for p in parts) == money.to_minor()


@PROPERTY
@given(allocations())
def test_allocate_parts_are_within_one_unit_of_their_exact_share_by_largest_remainder(
    case: tuple[Money, list[Any]],
) -> None:
    money, weights = case
    fractions = [as_fraction(w) for w in weights]
    total = sum(fractions)
    parts = [p.to_minor() for p in money.allocate(weights)]
    for part, weight in zip(parts, fractions, strict=True):
        exact = Fraction(money.to_minor()) * weight / total
        assert abs(Fraction(part) - exact) < 1
        # the part is the floor or the ceiling of the exact share, on the right side of zero
        assert math.floor(exact) <= part <= math.ceil(exact)
    # and the extra units go to the largest remainders, earlier parts first on ties
    assert parts == reference_allocation(money.to_minor(), weights)


@pytest.mark.parametrize(
    ("amount", "currency", "weights", "expected"),
    [
        ("1.00", "CNY", [1, 1, 1], ["0.34", "0.33", "0.33"]),
        ("-1.00", "CNY", [1, 1, 1], ["-0.34", "-0.33", "-0.33"]),
        ("0.01", "CNY", [1, 1, 1], ["0.01", "0.00", "0.00"]),
        ("100", "JPY", [1, 2], ["33", "67"]),
        ("10.00", "CNY", [0, 1], ["0.00", "10.00"]),
        ("0.00000001", "BTC", [1, 3], ["0", "0.00000001"]),
        ("0.05", "CNY", [Decimal("0.3"), Decimal("0.7")], ["0.02", "0.03"]),
        # exact ties in the remainders go to the earlier parts: 2 * 4/6, 2 * 1/6, 2 * 1/6
        ("0.02", "CNY", [4, 1, 1], ["0.02", "0.00", "0.00"]),
        ("0.00", "CNY", [1, 2, 3], ["0.00", "0.00", "0.00"]),
    ],
)
def test_allocate_examples(
    amount: str, currency: str, weights: list[Any], expected: list[str]
) -> None:
    parts = Money.of(amount, currency).allocate(weights)
    assert parts == [Money.of(e, currency) for e in expected]


def test_allocate_by_money_weights_of_the_same_currency() -> None:
    parts = cny("10.00").allocate([cny("30.00"), cny("70.00")])
    assert parts == [cny("3.00"), cny("7.00")]


def test_allocate_by_money_weights_of_another_currency_is_refused() -> None:
    with pytest.raises(CurrencyMismatch, match="CNY and USD"):
        cny("10.00").allocate([cny("1.00"), Money.of("1.00", "USD")])


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([], "at least one weight"),
        ([1, -1], "negative"),
        ([Decimal("-0.01"), 2], "negative"),
        ([0, 0], "all be zero"),
        ([Decimal(0)], "all be zero"),
    ],
)
def test_allocate_refuses_unusable_weights(weights: list[Any], match: str) -> None:
    with pytest.raises(InvalidAmount, match=match):
        cny("10.00").allocate(weights)


# ------------------------------------------------------------- amounts that are refused
BAD_AMOUNTS = [
    pytest.param(1.0, id="float"),
    pytest.param(0.1, id="float-0.1"),
    pytest.param(True, id="True"),
    pytest.param(False, id="False"),
    pytest.param(float("nan"), id="float-nan"),
    pytest.param(float("inf"), id="float-inf"),
    pytest.param(Decimal("NaN"), id="Decimal-NaN"),
    pytest.param(Decimal("sNaN"), id="Decimal-sNaN"),
    pytest.param(Decimal("Infinity"), id="Decimal-Infinity"),
    pytest.param(Decimal("-Infinity"), id="Decimal-minus-Infinity"),
    pytest.param("NaN", id="text-NaN"),
    pytest.param("Infinity", id="text-Infinity"),
    pytest.param("1e3", id="text-exponent"),
    pytest.param(" 1.00", id="text-leading-space"),
    pytest.param("1.00 ", id="text-trailing-space"),
    pytest.param("1.00\n", id="text-trailing-newline"),
    pytest.param("abc", id="text-garbage"),
    pytest.param("", id="text-empty"),
    pytest.param("1,000.00", id="text-thousands-separator"),
    pytest.param("1_000", id="text-underscore"),
    pytest.param("--1", id="text-double-sign"),
    pytest.param(".", id="text-dot"),
    pytest.param(None, id="None"),
    pytest.param(b"1", id="bytes"),
    pytest.param([1], id="list"),
    pytest.param(Fraction(1, 2), id="Fraction"),
]

ENTRY_POINTS: dict[str, Callable[[Any], object]] = {
    "Money.of": lambda v: Money.of(v, "CNY"),
    "Money()": lambda v: Money(v, "CNY"),
    "Money.rounded": lambda v: Money.rounded(v, "CNY"),
    "multiply-factor": lambda v: cny("1.00").multiply(v),
    "allocate-weight": lambda v: cny("1.00").allocate([1, v]),
    "to_decimal": to_decimal,
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("value", BAD_AMOUNTS)
def test_bad_amounts_are_refused_everywhere_amounts_enter(entry: str, value: object) -> None:
    with pytest.raises(InvalidAmount):
        ENTRY_POINTS[entry](value)


def test_float_refusal_explains_why() -> None:
    with pytest.raises(InvalidAmount, match="floats cannot hold money exactly") as info:
        Money.of(0.1, "CNY")  # type: ignore[arg-type]
    assert info.value.value == 0.1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "units",
    [1.0, 100.0, "100", Decimal(100), True, False, None, float("nan")],
    ids=repr,
)
def test_from_minor_refuses_anything_but_an_int(units: object) -> None:
    with pytest.raises(InvalidAmount, match="minor units must be an int"):
        Money.from_minor(units, "CNY")  # type: ignore[arg-type]


@pytest.mark.parametrize("quantity", [1.5, 2.0, Decimal(2), "2", True], ids=repr)
def test_multiplying_by_anything_but_a_whole_number_is_refused(quantity: object) -> None:
    with pytest.raises(InvalidAmount, match="only whole numbers multiply exactly"):
        cny("1.00") * quantity  # type: ignore[operator]
    with pytest.raises(InvalidAmount):
        quantity * cny("1.00")  # type: ignore[operator]


def test_multiplying_by_a_whole_number() -> None:
    assert cny("12.34") * 3 == cny("37.02")
    assert 3 * cny("12.34") == cny("37.02")
    assert cny("12.34") * 0 == cny("0")
    assert cny("12.34") * -2 == cny("-24.68")


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("1.001", "CNY"),
        ("0.001", "CNY"),
        ("-1.001", "CNY"),
        ("1.5", "JPY"),
        ("1.50", "JPY"),
        ("0.0000001", "USDT"),
        ("0.000000001", "BTC"),
        (Decimal("1.001"), "CNY"),
        (Decimal("1E-3"), "CNY"),
    ],
)
def test_too_many_decimals_are_refused_not_rounded(amount: object, currency: str) -> None:
    with pytest.raises(InvalidAmount, match=f"more decimals than {currency} allows"):
        Money.of(amount, currency)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("1.000", "CNY", "1.00 CNY"),  # trailing zeros are not extra decimals
        ("1.0", "JPY", "1 JPY"),
        (30, "CNY", "30.00 CNY"),
        (Decimal("3E+1"), "CNY", "30.00 CNY"),
        ("+1.5", "CNY", "1.50 CNY"),
        (".5", "CNY", "0.50 CNY"),
        ("1.", "CNY", "1.00 CNY"),
        ("-0.50", "CNY", "-0.50 CNY"),
        ("0.000001", "USDT", "0.000001 USDT"),
        ("0.00000001", "BTC", "0.00000001 BTC"),
    ],
)
def test_exact_amounts_are_accepted_and_normalised(
    amount: object, currency: str, text: str
) -> None:
    assert str(Money.of(amount, currency)) == text  # type: ignore[arg-type]


# ---------------------------------------------------------------------- currency mixing
MIXING_OPERATIONS = [
    pytest.param(operator.add, id="+"),
    pytest.param(operator.sub, id="-"),
    pytest.param(operator.lt, id="<"),
    pytest.param(operator.le, id="<="),
    pytest.param(operator.gt, id=">"),
    pytest.param(operator.ge, id=">="),
    pytest.param(Money.min, id="min"),
    pytest.param(Money.max, id="max"),
]


@pytest.mark.parametrize("op", MIXING_OPERATIONS)
def test_mixed_currencies_are_refused(op: Callable[[Money, Money], object]) -> None:
    with pytest.raises(CurrencyMismatch, match="CNY and USD") as info:
        op(cny("1.00"), Money.of("1.00", "USD"))
    assert info.value.left == "CNY"  # type: ignore[attr-defined]
    assert info.value.right == "USD"  # type: ignore[attr-defined]


@pytest.mark.parametrize("op", MIXING_OPERATIONS)
@pytest.mark.parametrize("other", [1, Decimal(1), "1.00"], ids=repr)
def test_money_does_not_combine_with_bare_numbers(
    op: Callable[[Money, object], object], other: object
) -> None:
    with pytest.raises(InvalidAmount, match="wrap amounts in Money"):
        op(cny("1.00"), other)


def test_equality_across_currencies_is_false_not_an_error() -> None:
    assert cny("1.00") != Money.of("1.00", "USD")
    assert cny("1.00") == Money.of(Decimal("1"), "CNY")
    assert hash(cny("1.00")) == hash(Money.of(1, "CNY"))


@PROPERTY
@given(amounts(currency="CNY"), amounts(currency="CNY"))
def test_arithmetic_and_ordering_agree_with_minor_units(a: Money, b: Money) -> None:
    assert (a < b) == (a.to_minor() < b.to_minor())
    assert (a <= b) == (a.to_minor() <= b.to_minor())
    assert (a > b) == (a.to_minor() > b.to_minor())
    assert (a >= b) == (a.to_minor() >= b.to_minor())
    assert a.min(b).to_minor() == min(a.to_minor(), b.to_minor())
    assert a.max(b).to_minor() == max(a.to_minor(), b.to_minor())
    if abs(a.to_minor() + b.to_minor()) <= MAX_MINOR:
        assert (a + b).to_minor() == a.to_minor() + b.to_minor()
        assert a + b == b + a
    if abs(a.to_minor() - b.to_minor()) <= MAX_MINOR:
        assert (a - b).to_minor() == a.to_minor() - b.to_minor()
    assert (-a).to_minor() == -a.to_minor()
    assert abs(a).to_minor() == abs(a.to_minor())


# ------------------------------------------------------------------- minor-unit storage
@PROPERTY
@given(st.sampled_from(CURRENCIES), minor_units)
def test_from_minor_to_minor_roundtrip(currency: str, units: int) -> None:
    money = Money.from_minor(units, currency)
    assert money.to_minor() == units
    assert isinstance(money.to_minor(), int)
    assert money.amount == Decimal(units).scaleb(-MINOR_UNITS[currency])
    assert Money.of(money.amount, currency) == money
    assert Money.of(format(money.amount, "f"), currency) == money


@PROPERTY
@given(st.sampled_from(CURRENCIES), minor_units)
def test_from_minor_builds_what_the_checked_constructor_builds(currency: str, units: int) -> None:
    # from_minor skips __init__'s checks for stored values: it must not differ in any way
    fast = Money.from_minor(units, currency)
    checked = Money(Decimal(units).scaleb(-MINOR_UNITS[currency]), currency)
    assert fast == checked
    assert fast.amount.as_tuple() == checked.amount.as_tuple()  # same exponent, same text
    assert fast.currency is checked.currency
    assert hash(fast) == hash(checked)
    with pytest.raises(FrozenInstanceError):
        fast.amount = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("units", "currency", "text"),
    [
        (3000, "CNY", "30.00 CNY"),
        (3000, "JPY", "3000 JPY"),
        (1, "USDT", "0.000001 USDT"),
        (1, "BTC", "0.00000001 BTC"),
        (-150, "CNY", "-1.50 CNY"),
        (0, "CNY", "0.00 CNY"),
        (0, "BTC", "0.00000000 BTC"),
    ],
)
def test_from_minor_examples(units: int, currency: str, text: str) -> None:
    assert str(Money.from_minor(units, currency)) == text


def test_storage_bound_is_a_signed_64_bit_integer() -> None:
    assert Money.from_minor(MAX_MINOR, "CNY").to_minor() == MAX_MINOR
    assert Money.from_minor(-MAX_MINOR, "CNY").to_minor() == -MAX_MINOR
    assert str(Money.from_minor(MAX_MINOR, "BTC")) == "92233720368.54775807 BTC"
    with pytest.raises(InvalidAmount, match="too large to store"):
        Money.from_minor(MAX_MINOR + 1, "CNY")
    with pytest.raises(InvalidAmount, match="too large to store"):
        Money.from_minor(-MAX_MINOR - 1, "CNY")
    with pytest.raises(InvalidAmount, match="too large to store"):
        Money.of("92233720368547758.08", "CNY")
    with pytest.raises(InvalidAmount, match="too large to store"):
        Money.of(MAX_MINOR + 1, "JPY")


def test_arithmetic_that_overflows_the_storage_is_refused() -> None:
    top = Money.from_minor(MAX_MINOR, "CNY")
    with pytest.raises(InvalidAmount, match="too large to store"):
        top + Money.from_minor(1, "CNY")
    with pytest.raises(InvalidAmount, match="too large to store"):
        -top - Money.from_minor(1, "CNY")
    with pytest.raises(InvalidAmount, match="too large to store"):
        top * 2
    with pytest.raises(InvalidAmount, match="too large to store"):
        top.multiply("1.5")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: Money.of(10**70, "CNY"), id="of-int"),
        pytest.param(lambda: Money.of("1" + "0" * 70, "CNY"), id="of-text"),
        pytest.param(lambda: Money.of(Decimal("1E+70"), "JPY"), id="of-Decimal-exponent"),
        pytest.param(lambda: Money.rounded("1" * 70, "CNY"), id="rounded"),
        pytest.param(lambda: Money.from_minor(10**70, "CNY"), id="from_minor"),
    ],
)
def test_absurdly_large_amounts_are_refused_with_invalid_amount(
    build: Callable[[], Money],
) -> None:
    """Beyond the 60-digit working precision, the quantize step must not leak
    decimal.InvalidOperation: the caller is promised a MoneyError."""
    with pytest.raises(InvalidAmount):
        build()


# ------------------------------------------------------------------------------ rounding
@pytest.mark.parametrize(
    ("rounding", "positive", "negative"),
    [
        ("ROUND_HALF_UP", "0.13", "-0.13"),
        ("ROUND_HALF_EVEN", "0.12", "-0.12"),
        ("ROUND_HALF_DOWN", "0.12", "-0.12"),
        ("ROUND_UP", "0.13", "-0.13"),
        ("ROUND_DOWN", "0.12", "-0.12"),
        ("ROUND_CEILING", "0.13", "-0.12"),
        ("ROUND_FLOOR", "0.12", "-0.13"),
    ],
)
def test_rounded_with_explicit_modes(rounding: Any, positive: str, negative: str) -> None:
    assert Money.rounded("0.125", "CNY", rounding) == cny(positive)
    assert Money.rounded("-0.125", "CNY", rounding) == cny(negative)


def test_rounded_defaults_to_half_up() -> None:
    assert Money.rounded("0.125", "CNY") == cny("0.13")
    assert Money.rounded("0.135", "CNY") == cny("0.14")
    assert Money.rounded("-0.125", "CNY") == cny("-0.13")
    assert Money.rounded("0.124999", "CNY") == cny("0.12")
    assert Money.rounded("2.5", "JPY") == Money.of(3, "JPY")
    assert Money.rounded("0.0000005", "USDT") == Money.of("0.000001", "USDT")
    assert Money.rounded("1.00", "CNY") == cny("1.00")


def test_multiply_rounds_half_up_by_default() -> None:
    assert cny("0.25").multiply("0.5") == cny("0.13")  # 0.125
    assert cny("0.35").multiply(Decimal("0.5")) == cny("0.18")  # 0.175
    assert cny("-0.25").multiply(Decimal("0.5")) == cny("-0.13")
    assert cny("100.00").multiply("0.9") == cny("90.00")
    assert cny("19.99").multiply("0.85") == cny("16.99")  # 16.9915
    assert Money.of(5, "JPY").multiply("0.5") == Money.of(3, "JPY")


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        ("ROUND_HALF_UP", "0.13"),
        ("ROUND_HALF_EVEN", "0.12"),
        ("ROUND_HALF_DOWN", "0.12"),
        ("ROUND_UP", "0.13"),
        ("ROUND_DOWN", "0.12"),
        ("ROUND_CEILING", "0.13"),
        ("ROUND_FLOOR", "0.12"),
    ],
)
def test_multiply_with_explicit_rounding(rounding: Any, expected: str) -> None:
    assert cny("0.25").multiply("0.5", rounding) == cny(expected)


@pytest.mark.parametrize("rounding", ["HALF_UP", "round_half_up", "ROUND_05UP", ""])
def test_unknown_rounding_modes_are_refused(rounding: Any) -> None:
    with pytest.raises(InvalidAmount, match="unknown rounding mode"):
        Money.rounded("0.125", "CNY", rounding)
    with pytest.raises(InvalidAmount, match="unknown rounding mode"):
        cny("0.25").multiply("0.5", rounding)


@PROPERTY
@given(
    amounts(currency="CNY"),
    st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False, allow_infinity=False),
    st.sampled_from(ROUNDINGS),
)
def test_multiply_is_the_exact_product_rounded_once(
    money: Money, factor: Decimal, rounding: Any
) -> None:
    exact = Fraction(money.amount) * Fraction(factor)
    if abs(exact) * 100 > MAX_MINOR:
        return
    result = money.multiply(factor, rounding)
    assert abs(Fraction(result.amount) - exact) < Fraction(1, 100)
    with decimal.localcontext(decimal.Context(prec=200)):
        expected = (money.amount * factor).quantize(Decimal("0.01"), rounding=rounding)
    assert result.amount == expected


def test_multiply_does_not_round_twice_when_the_factor_is_long() -> None:
    """1.00 × 0.00499…9 (67 nines) is just below half a fen and must round down to 0.00.

    A product rounded to a fixed working precision first becomes exactly 0.005 and then
    rounds half-up to 0.01: double rounding."""
    factor = Decimal("0.004" + "9" * 67)
    assert cny("1.00").multiply(factor) == cny("0.00")


def test_a_currency_rounding_rule_is_the_default_for_its_amounts() -> None:
    register_currency("XTE", 2, "ROUND_HALF_EVEN")
    assert Money.of("0.25", "XTE").multiply("0.5") == Money.of("0.12", "XTE")
    assert Money.rounded("0.125", "XTE") == Money.of("0.12", "XTE")
    assert Money.rounded("0.125", "XTE", "ROUND_HALF_UP") == Money.of("0.13", "XTE")


# ---------------------------------------------------------------------------- currencies
@pytest.mark.parametrize("code", ["XXX", "cny", "Cny", "CN", "", " CNY", "CNY "])
def test_unknown_currency(code: str) -> None:
    with pytest.raises(UnknownCurrency, match="unknown currency"):
        Money.of("1.00", code)
    with pytest.raises(UnknownCurrency):
        get_currency(code)
    with pytest.raises(UnknownCurrency):
        Money.from_minor(100, code)
    with pytest.raises(UnknownCurrency):
        Money.zero(code)


@pytest.mark.parametrize("code", [None, 156, b"CNY"], ids=repr)
def test_currency_code_must_be_text(code: object) -> None:
    with pytest.raises(UnknownCurrency, match="must be a string"):
        Money.of("1.00", code)  # type: ignore[arg-type]


def test_unknown_currency_is_a_money_error_with_context() -> None:
    with pytest.raises(MoneyError) as info:
        Money.of("1.00", "XXX")
    assert isinstance(info.value, UnknownCurrency)
    assert info.value.currency == "XXX"  # type: ignore[attr-defined]
    assert "CNY" in str(info.value)  # lists the known ones


@pytest.mark.parametrize(("code", "minor_units"), [("CNY", 2), ("JPY", 0), ("USDT", 6), ("BTC", 8)])
def test_builtin_currencies(code: str, minor_units: int) -> None:
    currency = get_currency(code)
    assert currency.minor_units == minor_units
    assert currency.rounding == "ROUND_HALF_UP"
    assert currency.exponent == Decimal(1).scaleb(-minor_units)
    assert str(currency) == code
    assert get_currency(currency) is currency
    assert Money.of(1, currency) == Money.of(1, code)


def test_register_currency_and_reregister_identically() -> None:
    first = register_currency("XTA", 3)
    assert first == Currency("XTA", 3, "ROUND_HALF_UP")
    assert register_currency("XTA", 3) == first
    assert get_currency("XTA") == first
    assert str(Money.of("1.234", "XTA")) == "1.234 XTA"


@pytest.mark.parametrize(
    ("minor_units", "rounding"),
    [(3, "ROUND_HALF_UP"), (1, "ROUND_HALF_UP"), (2, "ROUND_HALF_EVEN")],
)
def test_register_currency_conflict(minor_units: int, rounding: Any) -> None:
    with pytest.raises(InvalidAmount, match="already registered") as info:
        register_currency("CNY", minor_units, rounding)
    assert info.value.currency == "CNY"  # type: ignore[attr-defined]
    assert get_currency("CNY") == Currency("CNY", 2)


@pytest.mark.parametrize("code", ["xt", "XT", "X-T", "1XT", "XTOOLONGCODE", ""])
def test_register_currency_refuses_bad_codes(code: str) -> None:
    with pytest.raises(UnknownCurrency, match="upper-case"):
        register_currency(code, 2)


@pytest.mark.parametrize("minor_units", [-1, 19])
def test_register_currency_refuses_bad_minor_units(minor_units: int) -> None:
    with pytest.raises(InvalidAmount, match="0 to 18 minor units"):
        register_currency("XTB", minor_units)


def test_register_currency_refuses_bad_rounding() -> None:
    with pytest.raises(InvalidAmount, match="unknown rounding mode"):
        register_currency("XTC", 2, "BANKERS")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- str / repr
@pytest.mark.parametrize(
    ("money", "text", "representation"),
    [
        (Money.of("30", "CNY"), "30.00 CNY", "Money('30.00', 'CNY')"),
        (Money.of("-1.5", "CNY"), "-1.50 CNY", "Money('-1.50', 'CNY')"),
        (Money.of(3000, "JPY"), "3000 JPY", "Money('3000', 'JPY')"),
        (Money.of("0.1", "USDT"), "0.100000 USDT", "Money('0.100000', 'USDT')"),
        (Money.of("21", "BTC"), "21.00000000 BTC", "Money('21.00000000', 'BTC')"),
        (Money.zero("CNY"), "0.00 CNY", "Money('0.00', 'CNY')"),
    ],
)
def test_str_and_repr(money: Money, text: str, representation: str) -> None:
    assert str(money) == text
    assert repr(money) == representation


@PROPERTY
@given(amounts())
def test_repr_and_str_round_trip(money: Money) -> None:
    text, code = str(money).split(" ")
    assert Money.of(text, code) == money
    assert eval(repr(money), {"Money": Money}) == money


def test_predicates_and_zero() -> None:
    assert Money.zero("JPY").is_zero()
    assert not Money.zero("JPY").is_positive()
    assert not Money.zero("JPY").is_negative()
    assert cny("0.01").is_positive()
    assert cny("-0.01").is_negative()
    assert Money.of("-0", "CNY").is_zero()


def test_money_is_immutable() -> None:
    money = cny("1.00")
    with pytest.raises(AttributeError):
        money.amount = Decimal("2.00")  # type: ignore[misc]


# ---------------------------------------------------------------- ambient decimal context
LOW_PRECISION = [
    pytest.param(decimal.Context(prec=5), id="prec5"),
    pytest.param(decimal.Context(prec=5, rounding=decimal.ROUND_DOWN), id="prec5-round-down"),
    pytest.param(decimal.Context(prec=3, rounding=decimal.ROUND_CEILING), id="prec3-ceiling"),
    pytest.param(
        decimal.Context(
            prec=28,
            traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation],
        ),
        id="inexact-and-rounded-trapped",
    ),
]


def _plain(value: object) -> object:
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


AMBIENT_CASES: list[Any] = [
    pytest.param(lambda: Money.of("123456.78", "CNY"), "123456.78 CNY", id="of"),
    pytest.param(lambda: -cny("123456.78"), "-123456.78 CNY", id="neg"),
    pytest.param(lambda: abs(cny("-123456.78")), "123456.78 CNY", id="abs"),
    pytest.param(lambda: cny("99999.99") + cny("0.01"), "100000.00 CNY", id="add"),
    pytest.param(lambda: cny("100000.00") - cny("0.01"), "99999.99 CNY", id="sub"),
    pytest.param(lambda: cny("12345.67") * 3, "37037.01 CNY", id="mul"),
    pytest.param(lambda: cny("12345.67").multiply("1.5"), "18518.51 CNY", id="multiply"),
    pytest.param(lambda: Money.rounded("1234567.125", "CNY"), "1234567.13 CNY", id="rounded"),
    pytest.param(
        lambda: Money.from_minor(MAX_MINOR, "CNY"), "92233720368547758.07 CNY", id="from_minor-max"
    ),
    pytest.param(
        lambda: Money.from_minor(12345678901, "BTC"), "123.45678901 BTC", id="from_minor-btc"
    ),
    pytest.param(lambda: cny("123456.78").to_minor(), 12345678, id="to_minor"),
    pytest.param(lambda: cny("123456.78") > cny("123456.77"), True, id="compare"),
    pytest.param(
        lambda: cny("1.00").allocate([1, 1, 1]),
        ["0.34 CNY", "0.33 CNY", "0.33 CNY"],
        id="allocate-thirds",
    ),
    pytest.param(
        lambda: cny("1000.00").allocate([100000, 1]),
        ["999.99 CNY", "0.01 CNY"],
        id="allocate-large-weight",
    ),
    pytest.param(
        lambda: cny("0.01").allocate([1000000, 1000001]),
        ["0.00 CNY", "0.01 CNY"],
        id="allocate-close-remainders",
    ),
    pytest.param(
        lambda: cny("0.10").allocate([Decimal("0.1"), Decimal("0.2")]),
        ["0.03 CNY", "0.07 CNY"],
        id="allocate-decimal-weights",
    ),
]


@pytest.mark.parametrize("context", LOW_PRECISION)
@pytest.mark.parametrize(("operation", "expected"), AMBIENT_CASES)
def test_results_do_not_depend_on_the_ambient_decimal_context(
    context: decimal.Context, operation: Callable[[], object], expected: object
) -> None:
    assert _plain(operation()) == expected  # sanity: the default context
    result: object
    with decimal.localcontext(context):
        try:
            result = _plain(operation())
        except (ArithmeticError, MoneyError) as exc:  # a trap firing, or a false refusal
            result = exc
    assert result == expected


@settings(max_examples=100, deadline=None)
@given(allocations())
def test_allocation_under_a_low_ambient_precision_matches_the_reference(
    case: tuple[Money, list[Any]],
) -> None:
    money, weights = case
    with decimal.localcontext(decimal.Context(prec=5)):
        parts = [p.to_minor() for p in money.allocate(weights)]
    assert parts == reference_allocation(money.to_minor(), weights)
