"""Formula-safe cells (pure).

A spreadsheet treats a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK(...)``, ``=cmd|'/c calc'!A1``), and some tools also act on a leading tab,
carriage return, line feed or NUL. Any *text* value that starts with one of these is written
with a leading apostrophe in CSV (:func:`csv_text`), which spreadsheets show as text and do
not evaluate; the Excel writer writes every text value as a string cell, never a formula
(and needs no apostrophe). Numbers, amounts and times are not text and are written as such.

:func:`minor_text` writes an amount held in minor units as exact decimal text with integer
arithmetic only: the same text as ``format(Decimal(minor).scaleb(-units), "f")``, without a
Decimal per cell; :func:`local_text` writes a time in a zone to the second, the text of
``moment.astimezone(zone).isoformat(timespec="seconds")`` (``isoformat`` without arguments
costs half as much, and its fraction is cut off instead).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Final

__all__ = ["FORMULA_STARTS", "csv_text", "is_dangerous", "local_text", "minor_text"]

#: The first characters that make a text cell dangerous.
FORMULA_STARTS: Final = frozenset("=+-@\t\r\n\0")


def is_dangerous(text: str) -> bool:
    """Whether a spreadsheet could read ``text`` as a formula (or act on its first char)."""
    return bool(text) and text[0] in FORMULA_STARTS


def csv_text(text: str) -> str:
    """``text`` for a CSV cell: prefixed with ``'`` when :func:`is_dangerous`."""
    return "'" + text if text and text[0] in FORMULA_STARTS else text


def minor_text(minor: int, units: int) -> str:
    """``minor`` units of a currency with ``units`` decimals as exact decimal text:
    ``(1234, 2)`` → ``12.34``, ``(-5, 2)`` → ``-0.05``, ``(1234, 0)`` → ``1234``."""
    if units <= 0:
        return str(minor)
    if minor < 0:
        return "-" + minor_text(-minor, units)
    digits = str(minor)
    if len(digits) <= units:
        digits = "0" * (units + 1 - len(digits)) + digits
    return digits[:-units] + "." + digits[-units:]


def local_text(moment: datetime, zone: tzinfo) -> str:
    """An aware time in ``zone`` as ISO 8601 to the second: ``2026-11-25T00:00:01+08:00``."""
    text = moment.astimezone(zone).isoformat()
    # YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM[:SS]: the fraction, when there is one, is cut
    return text[:19] + text[26:] if text[19] == "." else text
