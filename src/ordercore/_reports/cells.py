"""Formula-safe cells (pure).

A spreadsheet treats a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK(...)``, ``=cmd|'/c calc'!A1``), and some tools also act on a leading tab,
carriage return, line feed or NUL. Any *text* value that starts with one of these is written
with a leading apostrophe in CSV (:func:`csv_text`), which spreadsheets show as text and do
not evaluate; the Excel writer writes every text value as a string cell, never a formula
(and needs no apostrophe). Numbers, amounts and times are not text and are written as such.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FORMULA_STARTS", "csv_text", "is_dangerous"]

#: The first characters that make a text cell dangerous.
FORMULA_STARTS: Final = frozenset("=+-@\t\r\n\0")


def is_dangerous(text: str) -> bool:
    """Whether a spreadsheet could read ``text`` as a formula (or act on its first char)."""
    return bool(text) and text[0] in FORMULA_STARTS


def csv_text(text: str) -> str:
    """``text`` for a CSV cell: prefixed with ``'`` when :func:`is_dangerous`."""
    return "'" + text if text and text[0] in FORMULA_STARTS else text
