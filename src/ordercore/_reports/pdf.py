"""PDF output with reportlab: the font (Chinese text), and the order listing.

reportlab's built-in fonts (Helvetica...) cover Latin-1 only: Chinese text needs a TrueType
font with CJK glyphs, given by the ``pdf_font`` setting (a ``.ttf`` or ``.ttc`` path). When
it is not set, the usual places of WenQuanYi Micro Hei (Debian/Ubuntu ``fonts-wqy-microhei``,
Apache-2.0) and Noto Sans CJK are tried; without any, text that Helvetica cannot draw is a
:class:`~ordercore.ConfigurationError` naming the setting, never a page of empty boxes.

The listing draws rows straight onto the canvas, page after page (no layout engine holding
every row): reportlab keeps the finished pages' compressed content until the file is saved,
so a PDF listing is meant for what a person reads (thousands of orders); CSV and Excel are
for everything else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from typing import IO, Any, Final
from zoneinfo import ZoneInfo

from ordercore._errors import ConfigurationError

from .fields import ExportField, OrderRecord, Value, row_values

__all__ = ["FONT_CANDIDATES", "PdfSink", "find_font", "register_font"]

#: Where a CJK font is looked for when ``pdf_font`` is not set.
FONT_CANDIDATES: Final = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
)
_BUILTIN: Final = "Helvetica"
_FONT_NAME: Final = "OrdercoreCJK"
_registered: dict[str, str] = {}


def find_font(configured: str | None) -> str | None:
    """The font file to use: ``configured`` (which must exist) or the first candidate found."""
    if configured:
        if not os.path.isfile(configured):
            raise ConfigurationError(
                f"pdf_font {configured!r} is not a file: give the path of a TrueType font with "
                "Chinese glyphs (.ttf/.ttc), e.g. /usr/share/fonts/truetype/wqy/wqy-microhei.ttc "
                "from the Debian package fonts-wqy-microhei"
            )
        return configured
    return next((p for p in FONT_CANDIDATES if os.path.isfile(p)), None)


def register_font(configured: str | None) -> str:
    """Register the PDF font with reportlab and return its name (``Helvetica`` when no CJK
    font is available)."""
    path = find_font(configured)
    if path is None:
        return _BUILTIN
    if path in _registered:
        return _registered[path]
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    name = f"{_FONT_NAME}{len(_registered)}"
    try:
        font = (
            TTFont(name, path, subfontIndex=0)
            if path.lower().endswith(".ttc")
            else TTFont(name, path)
        )
    except Exception as exc:  # reportlab raises TTFError and plain errors for a bad file
        raise ConfigurationError(f"pdf_font {path!r} cannot be used: {exc}") from None
    pdfmetrics.registerFont(font)
    _registered[path] = name
    return name


def check_drawable(font: str, text: str) -> None:
    """Refuse text the built-in font cannot draw (it would come out as boxes)."""
    if font == _BUILTIN and any(ord(ch) > 255 for ch in text):
        raise ConfigurationError(
            "the PDF needs a font with Chinese (non Latin-1) glyphs and none was found: set "
            "pdf_font to a .ttf/.ttc file (Debian: apt-get install fonts-wqy-microhei, then "
            "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc)"
        )


def pdf_cell(value: Value, zone: ZoneInfo) -> str:
    from datetime import datetime

    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return str(value)


_WEIGHTS: Final = {"text": 1.6, "time": 1.25, "amount": 0.9, "int": 0.6, "bool": 0.5}


class PdfSink:
    """An A4 landscape listing: a title line, a header row on every page, page numbers."""

    def __init__(
        self,
        out: str | IO[bytes],
        fields: Sequence[ExportField],
        zone: ZoneInfo,
        *,
        font_path: str | None,
        title: str = "Orders",
        subtitle: str = "",
        masked: bool = True,
    ) -> None:
        from reportlab.lib.pagesizes import A4, landscape
        from reportlab.pdfgen.canvas import Canvas

        self._font = register_font(font_path)
        self._fields = list(fields)
        self._masked = masked
        self._zone = zone
        self._title, self._subtitle = title, subtitle
        check_drawable(self._font, title + subtitle)
        self._size = landscape(A4)
        self._canvas: Any = Canvas(out, pagesize=self._size, pageCompression=1)
        self._canvas.setTitle(title)
        self._margin = 28.0
        width = self._size[0] - 2 * self._margin
        weights = [_WEIGHTS[f.kind] for f in self._fields]
        total = sum(weights)
        self._widths = [width * w / total for w in weights]
        self._font_size = 7.5 if len(self._fields) > 8 else 9.0
        self._line = self._font_size * 1.45
        self._page = 0
        self._y = 0.0
        self._new_page()

    def _new_page(self) -> None:
        c = self._canvas
        if self._page:
            c.showPage()
        self._page += 1
        top = self._size[1] - self._margin
        c.setFont(self._font, 12)
        c.drawString(self._margin, top - 12, self._title)
        c.setFont(self._font, 8)
        c.drawRightString(
            self._size[0] - self._margin, top - 12, f"{self._subtitle}  page {self._page}"
        )
        self._y = top - 32
        c.setFont(self._font, self._font_size)
        self._draw_row([f.title for f in self._fields], header=True)

    def _fit(self, text: str, width: float) -> str:
        from reportlab.pdfbase.pdfmetrics import stringWidth

        if stringWidth(text, self._font, self._font_size) <= width:
            return text
        while text and stringWidth(text + "…", self._font, self._font_size) > width:
            text = text[:-1]
        return text + "…"

    def _draw_row(self, cells: Sequence[str], *, header: bool = False) -> None:
        c = self._canvas
        x = self._margin
        for text, width, f in zip(cells, self._widths, self._fields, strict=True):
            shown = self._fit(text.replace("\n", " ").replace("\r", " "), width - 4)
            if f.kind in ("amount", "int") and not header:
                c.drawRightString(x + width - 4, self._y, shown)
            else:
                c.drawString(x, self._y, shown)
            x += width
        if header:
            c.line(self._margin, self._y - 3, self._size[0] - self._margin, self._y - 3)
        self._y -= self._line

    def write_records(self, records: Sequence[OrderRecord]) -> None:
        for record in records:
            self.write(row_values(self._fields, record, masked=self._masked))

    def write(self, values: Sequence[Value]) -> None:
        """One row of values (already masked)."""
        if self._y < self._margin:
            self._new_page()
        cells = [pdf_cell(v, self._zone) for v in values]
        check_drawable(self._font, "".join(cells))
        self._draw_row(cells)

    def close(self) -> None:
        self._canvas.showPage()
        self._canvas.save()
