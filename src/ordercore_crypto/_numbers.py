"""Numbers and JSON the way the gateways write them, with :class:`~decimal.Decimal` only.

* :func:`parse_json` reads a body keeping every number's exact text (``Decimal``), refusing
  ``NaN``/``Infinity``: amounts never pass through ``float``.
* :func:`go_number` formats a number like Go's ``strconv.FormatFloat(f, 'f', -1, 64)``
  (Epusdt's signature: ``100``, ``15.625``, ``0.000036``);
* :func:`js_number` like JavaScript's ``Number.prototype.toString`` (``25``, ``0.000036``,
  ``1e-7``, ``1e+21``); :func:`canonical_json` like NOWPayments' ``JSON.stringify`` of the
  body with keys sorted recursively.

Both languages print the shortest digits that read back as the same IEEE-754 double. For up
to 15 significant digits those are the decimal's own digits (every such decimal has its own
double), so no float is involved. A number with more digits than a double holds (rare: not an
amount any gateway sends) is rounded the way the platform's parser rounds it, through
``float`` — for the signature text only, never for an amount.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = ["NumberError", "canonical_json", "go_number", "js_number", "parse_json"]

_EXACT_DIGITS: Final = 15
_MAX_INDEX: Final = 2**32 - 2


class NumberError(ValueError):
    """A body or a number that cannot be read or formatted the platform's way."""


def _refuse_constant(name: str) -> Any:
    raise NumberError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """The JSON body, numbers as ``Decimal`` (integers too), strings as ``str``."""
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text, parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise NumberError(f"not JSON: {exc}") from None


def _shortest(value: Decimal) -> tuple[int, str, int]:
    """``(sign, digits, point)``: value = sign × 0.DIGITS × 10**point, digits shortest."""
    if not value.is_finite():
        raise NumberError(f"{value} is not a finite number")
    if value.is_zero():
        return 0, "0", 1
    normal = value.normalize()
    sign, digits, exponent = normal.as_tuple()
    assert isinstance(exponent, int)
    if len(digits) > _EXACT_DIGITS:
        # More digits than a double carries: what the platform reads is the nearest double;
        # repr() prints that double's shortest round-trip digits, as Go and JavaScript do.
        try:
            rounded = Decimal(repr(float(normal))).normalize()  # signature text only
        except (OverflowError, InvalidOperation):
            raise NumberError(f"{value} does not fit a double") from None
        if not rounded.is_finite():
            raise NumberError(f"{value} does not fit a double")
        sign, digits, exponent = rounded.as_tuple()
        assert isinstance(exponent, int)
    text = "".join(str(d) for d in digits)
    return (-1 if sign else 1), text, len(text) + exponent


def go_number(value: Decimal) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    sign, digits, point = _shortest(value)
    if sign == 0:
        return "0"
    if point <= 0:
        body = "0." + "0" * -point + digits
    elif point >= len(digits):
        body = digits + "0" * (point - len(digits))
    else:
        body = digits[:point] + "." + digits[point:]
    return ("-" if sign < 0 else "") + body


def js_number(value: Decimal) -> str:
    """JavaScript's ``Number.prototype.toString()`` (ECMA-262 Number::toString)."""
    sign, digits, n = _shortest(value)
    if sign == 0:
        return "0"
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        exponent = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    return ("-" if sign < 0 else "") + body


def _js_key_order(keys: list[str]) -> list[str]:
    """The order ``JSON.stringify`` writes an object built from ``Object.keys(o).sort()``:
    array-index keys first in numeric order, then the others by UTF-16 code units."""

    def is_index(key: str) -> bool:
        return key.isascii() and key.isdigit() and str(int(key)) == key and int(key) <= _MAX_INDEX

    indices = sorted((k for k in keys if is_index(k)), key=int)
    others = sorted(
        (k for k in keys if not is_index(k)), key=lambda k: k.encode("utf-16-be", "surrogatepass")
    )
    return indices + others


_ENCODE_STRING: Final = json.encoder.encode_basestring  # what ensure_ascii=False uses


def _js_string(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise NumberError("a string holds a lone surrogate") from None
    return _ENCODE_STRING(text)


def canonical_json(value: Any) -> str:
    """``JSON.stringify`` of ``value`` with every object's keys sorted (recursively)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, Decimal):
        return js_number(value)
    if isinstance(value, int):
        return js_number(Decimal(value))
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                f"{_js_string(k)}:{canonical_json(value[k])}" for k in _js_key_order(list(value))
            )
            + "}"
        )
    raise NumberError(f"cannot write {type(value).__name__} as JSON")
