"""Exact money: :class:`Money`, :class:`Currency` and the rounding rules.

Rules that hold everywhere:

* an amount is a :class:`~decimal.Decimal` at its currency's precision (CNY 2 decimals,
  JPY 0, USDT 6, BTC 8); a value with more decimals is refused, never rounded silently;
* floats (and bools, NaN, infinities) are refused wherever an amount enters;
* amounts of different currencies never mix: arithmetic and comparison raise
  :class:`~ordercore.CurrencyMismatch`;
* rounding happens only where an operation asks for it (``multiply``, ``rounded``), with the
  currency's rounding mode (half-up unless registered otherwise) or an explicit one;
* storage uses integer minor units (:meth:`Money.to_minor` / :meth:`Money.from_minor`).
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Final, Literal

from attrs import field, frozen

from ._errors import CurrencyMismatch, InvalidAmount, UnknownCurrency

__all__ = [
    "Currency",
    "Money",
    "Rounding",
    "as_money",
    "get_currency",
    "register_currency",
    "to_decimal",
]

#: Rounding modes accepted by the money functions (the names of :mod:`decimal`'s constants).
Rounding = Literal[
    "ROUND_HALF_UP",
    "ROUND_HALF_EVEN",
    "ROUND_HALF_DOWN",
    "ROUND_UP",
    "ROUND_DOWN",
    "ROUND_CEILING",
    "ROUND_FLOOR",
]

_ROUNDINGS: Final = frozenset(
    {
        "ROUND_HALF_UP",
        "ROUND_HALF_EVEN",
        "ROUND_HALF_DOWN",
        "ROUND_UP",
        "ROUND_DOWN",
        "ROUND_CEILING",
        "ROUND_FLOOR",
    }
)
# Minor units are stored in a signed 64-bit integer column.
_MAX_MINOR: Final = 2**63 - 1
# Wide enough for any amount that fits the storage, whatever the ambient decimal context is.
_CONTEXT: Final = decimal.Context(
    prec=60, rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation]
)
_DECIMAL_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_CODE: Final = re.compile(r"[A-Z][A-Z0-9]{2,9}\Z")

AmountLike = Decimal | int | str
#: ``Decimal('1')``, ``Decimal('0.1')``, ... by number of minor units (0 to 18)
_EXPONENTS: Final = tuple(Decimal(1).scaleb(-units) for units in range(19))


def _check_rounding(rounding: str) -> str:
    if rounding not in _ROUNDINGS:
        raise InvalidAmount(f"unknown rounding mode {rounding!r}", rounding=rounding)
    return rounding


@frozen
class Currency:
    """A currency code with its number of decimals (minor units) and default rounding."""

    code: str
    minor_units: int
    rounding: str = "ROUND_HALF_UP"

    def __attrs_post_init__(self) -> None:
        if not _CODE.match(self.code):
            raise UnknownCurrency(
                f"currency code {self.code!r} must be 3-10 upper-case letters or digits",
                currency=self.code,
            )
        if not 0 <= self.minor_units <= 18:
            raise InvalidAmount(
                f"currency {self.code} must have 0 to 18 minor units, not {self.minor_units}",
                currency=self.code,
            )
        _check_rounding(self.rounding)

    @property
    def exponent(self) -> Decimal:
        """The smallest unit as a Decimal exponent (``Decimal('0.01')`` for CNY)."""
        return _EXPONENTS[self.minor_units]

    def __str__(self) -> str:
        return self.code


_REGISTRY: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("CNY", 2),
        Currency("USD", 2),
        Currency("EUR", 2),
        Currency("GBP", 2),
        Currency("HKD", 2),
        Currency("JPY", 0),
        Currency("KRW", 0),
        Currency("USDT", 6),
        Currency("USDC", 6),
        Currency("BTC", 8),
    )
}


def register_currency(
    code: str, minor_units: int, rounding: Rounding = "ROUND_HALF_UP"
) -> Currency:
    """Register (or return the identical existing) currency.

    Re-registering a code with different minor units raises :class:`InvalidAmount`: stored
    minor units would change meaning.
    """
    currency = Currency(code, minor_units, rounding)
    existing = _REGISTRY.get(code)
    if existing is not None and existing != currency:
        raise InvalidAmount(
            f"currency {code} is already registered with {existing.minor_units} minor units "
            f"and {existing.rounding}",
            currency=code,
        )
    _REGISTRY[code] = currency
    return currency


def get_currency(code: str | Currency) -> Currency:
    """Return the registered currency for ``code``; raise :class:`UnknownCurrency` otherwise."""
    if isinstance(code, Currency):
        return code
    if not isinstance(code, str):
        raise UnknownCurrency(f"a currency code must be a string, not {type(code).__name__}")
    try:
        return _REGISTRY[code]
    except KeyError:
        raise UnknownCurrency(
            f"unknown currency {code!r}; known: {', '.join(sorted(_REGISTRY))}", currency=code
        ) from None


def to_decimal(value: object, *, what: str = "amount") -> Decimal:
    """Convert ``value`` to a finite Decimal, refusing floats, bools and malformed text.

    Accepts :class:`~decimal.Decimal`, :class:`int` and plain decimal text such as ``"30.00"``
    (no exponent, no spaces, no thousands separators).
    """
    if isinstance(value, (bool, float)):
        raise InvalidAmount(
            f"{what} must be a Decimal, an int or decimal text, not {type(value).__name__} "
            f"({value!r}); floats cannot hold money exactly",
            value=value,
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        if not _DECIMAL_TEXT.match(value):
            raise InvalidAmount(f"{what} {value!r} is not a decimal number", value=value)
        result = Decimal(value)
    else:
        raise InvalidAmount(
            f"{what} must be a Decimal, an int or decimal text, not {type(value).__name__}",
            value=value,
        )
    if not result.is_finite():
        raise InvalidAmount(f"{what} must be finite, not {value!r}", value=value)
    return result


def _convert_amount(value: object) -> Decimal:
    return to_decimal(value)


def _convert_currency(value: object) -> Currency:
    if isinstance(value, Currency):
        return value
    return get_currency(value)  # type: ignore[arg-type]


@frozen(eq=True, order=False, repr=False)
class Money:
    """An exact amount of one currency, at that currency's precision.

    Build it with :meth:`of` (refuses extra decimals), :meth:`rounded` (rounds them with the
    currency's rule), :meth:`from_minor` (integer minor units) or :meth:`zero`.
    """

    amount: Decimal = field(converter=_convert_amount)
    currency: Currency = field(converter=_convert_currency)

    def __attrs_post_init__(self) -> None:
        try:
            exact = self.amount.quantize(self.currency.exponent, context=_CONTEXT)
        except decimal.InvalidOperation:
            raise InvalidAmount(
                f"{self.amount} {self.currency.code} is too large to store",
                value=self.amount,
                currency=self.currency.code,
            ) from None
        if exact != self.amount:
            raise InvalidAmount(
                f"{self.amount} has more decimals than {self.currency.code} allows "
                f"({self.currency.minor_units})",
                value=self.amount,
                currency=self.currency.code,
            )
        if _CONTEXT.abs(exact.scaleb(self.currency.minor_units, context=_CONTEXT)) > _MAX_MINOR:
            raise InvalidAmount(
                f"{self.amount} {self.currency.code} is too large to store",
                value=self.amount,
                currency=self.currency.code,
            )
        # Normalise the representation so that str() and storage are stable ("30" -> "30.00").
        object.__setattr__(self, "amount", exact)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def of(cls, amount: AmountLike, currency: str | Currency) -> Money:
        """Exact amount: ``Money.of("30.00", "CNY")``. Extra decimals raise."""
        return cls(amount, currency)

    @classmethod
    def zero(cls, currency: str | Currency) -> Money:
        """Zero of ``currency``."""
        return cls.from_minor(0, currency)

    @classmethod
    def from_minor(cls, units: int, currency: str | Currency) -> Money:
        """From integer minor units, as stored: ``Money.from_minor(3000, "CNY")`` is 30.00."""
        if isinstance(units, bool) or not isinstance(units, int):
            raise InvalidAmount(f"minor units must be an int, not {type(units).__name__}")
        cur = get_currency(currency)
        amount = Decimal(units).scaleb(-cur.minor_units, context=_CONTEXT)
        if cls is not Money or not -_MAX_MINOR <= units <= _MAX_MINOR:
            return cls(amount, cur)  # (refuses what does not fit the storage)
        # Every stored amount comes through here: an int in range scaled by the currency's
        # exponent is exact at its precision by construction, so the checks of __init__
        # have nothing to refuse (the tests compare both ways).
        money = object.__new__(Money)
        object.__setattr__(money, "amount", amount)
        object.__setattr__(money, "currency", cur)
        return money

    @classmethod
    def rounded(
        cls, amount: AmountLike, currency: str | Currency, rounding: Rounding | None = None
    ) -> Money:
        """Round ``amount`` to the currency's precision (half-up unless told otherwise)."""
        cur = get_currency(currency)
        value = to_decimal(amount)
        mode = _check_rounding(cur.rounding if rounding is None else rounding)
        try:
            rounded = value.quantize(cur.exponent, rounding=mode, context=_CONTEXT)
        except decimal.InvalidOperation:
            raise InvalidAmount(f"{value} {cur.code} is too large to store", value=value) from None
        return cls(rounded, cur)

    # -- conversions --------------------------------------------------------------------
    def to_minor(self) -> int:
        """Integer minor units (fen, cents, satoshi): what the database stores."""
        return int(self.amount.scaleb(self.currency.minor_units, context=_CONTEXT))

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency.code}"

    def __repr__(self) -> str:
        return f"Money('{self.amount:f}', '{self.currency.code}')"

    # -- predicates ---------------------------------------------------------------------
    def is_zero(self) -> bool:
        return self.amount == 0

    def is_positive(self) -> bool:
        return self.amount > 0

    def is_negative(self) -> bool:
        return self.amount < 0

    # -- arithmetic ---------------------------------------------------------------------
    def _same(self, other: object, op: str) -> Money:
        if not isinstance(other, Money):
            raise InvalidAmount(
                f"cannot {op} {type(other).__name__} and Money; wrap amounts in Money first",
                value=other,
            )
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot {op} {self.currency.code} and {other.currency.code}",
                left=self.currency.code,
                right=other.currency.code,
            )
        return other

    def __add__(self, other: Money) -> Money:
        o = self._same(other, "add")
        return Money(_CONTEXT.add(self.amount, o.amount), self.currency)

    def __sub__(self, other: Money) -> Money:
        o = self._same(other, "subtract")
        return Money(_CONTEXT.subtract(self.amount, o.amount), self.currency)

    def __neg__(self) -> Money:
        return Money(_CONTEXT.minus(self.amount), self.currency)

    def __abs__(self) -> Money:
        return Money(_CONTEXT.abs(self.amount), self.currency)

    def __mul__(self, quantity: int) -> Money:
        """Multiply by a whole number (a quantity). Use :meth:`multiply` for ratios."""
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidAmount(
                f"Money * {type(quantity).__name__}: only whole numbers multiply exactly; "
                "use Money.multiply(factor, rounding) for ratios",
                value=quantity,
            )
        return Money(_CONTEXT.multiply(self.amount, Decimal(quantity)), self.currency)

    __rmul__ = __mul__

    def multiply(self, factor: AmountLike, rounding: Rounding | None = None) -> Money:
        """Multiply by a decimal factor and round once to the currency (a 10 % discount)."""
        value = to_decimal(factor, what="factor")
        digits = len(self.amount.as_tuple().digits) + len(value.as_tuple().digits) + 2
        exact = decimal.Context(prec=max(digits, 28)).multiply(self.amount, value)
        return Money.rounded(exact, self.currency, rounding)

    def min(self, other: Money) -> Money:
        return self if self <= other else other

    def max(self, other: Money) -> Money:
        return self if self >= other else other

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._same(other, "compare").amount

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._same(other, "compare").amount

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._same(other, "compare").amount

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._same(other, "compare").amount

    def allocate(self, weights: Sequence[AmountLike | Money]) -> list[Money]:
        """Split this amount in proportion to ``weights`` without losing a minor unit.

        Largest-remainder method: each part gets the floor of its exact share, and the units
        left over go one each to the parts with the largest remainders (earlier parts first
        on ties). The parts always sum to ``self`` exactly. Weights must be non-negative and
        not all zero; ``Money`` weights must be in this currency.
        """
        if not weights:
            raise InvalidAmount("allocate needs at least one weight")
        values: list[Decimal] = []
        for w in weights:
            if isinstance(w, Money):
                values.append(self._same(w, "allocate by").amount)
            else:
                values.append(to_decimal(w, what="weight"))
        if any(v < 0 for v in values):
            raise InvalidAmount("allocation weights must not be negative", weights=tuple(values))
        if all(v == 0 for v in values):
            raise InvalidAmount("allocation weights must not all be zero")
        # Work in integers: scale the weights to whole numbers, then divmod is exact.
        tuples = [v.as_tuple() for v in values]
        scale = max(0, *(-int(t.exponent) for t in tuples))
        ints = [
            int("".join(map(str, t.digits)) or "0") * 10 ** (int(t.exponent) + scale)
            for t in tuples
        ]
        total = sum(ints)
        units = self.to_minor()
        sign = -1 if units < 0 else 1
        units = abs(units)
        shares = [divmod(units * w, total) for w in ints]
        floors = [q for q, _ in shares]
        leftover = units - sum(floors)
        order = sorted(range(len(ints)), key=lambda i: (-shares[i][1], i))
        for i in order[:leftover]:
            floors[i] += 1
        return [Money.from_minor(sign * f, self.currency) for f in floors]


def as_money(
    value: object, currency: Currency | str | None = None, *, what: str = "amount"
) -> Money:
    """``value`` as :class:`Money`, the one way every API takes an amount: a ``Money`` (which
    must be in ``currency`` when one is given), or a Decimal, an int or decimal text in
    ``currency``. A float is refused (:class:`InvalidAmount`), and so is a plain amount when
    no currency is known."""
    if isinstance(value, Money):
        if currency is not None and value.currency != get_currency(currency):
            raise CurrencyMismatch(
                f"{what} is in {value.currency.code}, {get_currency(currency).code} is expected"
            )
        return value
    amount = to_decimal(value, what=what)
    if currency is None:
        raise InvalidAmount(
            f"{what} {value!r} needs a currency: pass a Money, or currency=... with it",
            value=value,
        )
    return Money.of(amount, currency)
