"""The sales report as PDF (reportlab) and Excel (XlsxWriter).

The PDF's charts are reportlab's own graphics (``reportlab.graphics``): a bar chart of the
trend and a pie of the channels' shares, drawn into the page as vector paths. That keeps the
report free of matplotlib (a large dependency that renders to raster images by default) and
the charts sharp at any zoom; the text uses the same ``pdf_font`` as the listing, so Chinese
product names render. Chart geometry is computed with floats (positions on a page); every
figure printed is the statistics service's exact value.

The Excel workbook has a Summary sheet (the headline figures and their growth), a Trend sheet
with a native Excel chart, and Channels, Products and Low stock sheets; amounts are numbers
with the currency's decimals.
"""

from __future__ import annotations

from typing import IO, Any

from ordercore._money import Money

from .pdf import check_drawable, register_font
from .report import (
    CHANNEL_HEAD,
    HEADLINES,
    LOW_STOCK_HEAD,
    PRODUCT_HEAD,
    TOP_PRODUCTS,
    SalesReport,
    channel_rows,
    figure_text,
    growth_text,
    product_rows,
)

__all__ = ["write_pdf_report", "write_xlsx_report"]


def _pdf_table(rows: list[list[str]], font: str, widths: list[float] | None = None) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 8.5),
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
                ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ]
        )
    )
    return table


def _trend_chart(report_trend: Any, font: str) -> Any:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    drawing = Drawing(500, 170)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 45, 25, 440, 125
    chart.data = [[float(b.gross_sales.amount) for b in report_trend]]
    chart.categoryAxis.categoryNames = [
        b.start.strftime("%m-%d")
        if len(report_trend) <= 16 or i % (len(report_trend) // 8) == 0
        else ""
        for i, b in enumerate(report_trend)
    ]
    chart.categoryAxis.labels.fontName = font
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontName = font
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.bars[0].fillColor = colors.HexColor("#2563eb")
    chart.bars[0].strokeColor = None
    drawing.add(chart)
    drawing.add(String(45, 158, "Gross sales per bucket", fontName=font, fontSize=8))
    return drawing


def _share_chart(channels: Any, font: str) -> Any:
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.charts.piecharts import Pie
    from reportlab.graphics.shapes import Drawing
    from reportlab.lib import colors

    shown = [c for c in channels if c.share]
    if not shown:
        return None
    palette = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777"]
    drawing = Drawing(500, 130)
    pie = Pie()
    pie.x, pie.y, pie.width, pie.height = 20, 10, 110, 110
    pie.data = [float(c.share) for c in shown]
    pie.labels = None
    for i in range(len(shown)):
        pie.slices[i].fillColor = colors.HexColor(palette[i % len(palette)])
        pie.slices[i].strokeColor = colors.white
    drawing.add(pie)
    legend = Legend()
    legend.x, legend.y = 160, 110
    legend.alignment = "right"
    legend.fontName = font
    legend.fontSize = 8
    legend.colorNamePairs = [
        (
            colors.HexColor(palette[i % len(palette)]),
            f"{c.channel or 'by hand'}: {float(c.share) * 100:.2f}%",
        )
        for i, c in enumerate(shown)
    ]
    drawing.add(legend)
    return drawing


def write_pdf_report(report: SalesReport, out: str | IO[bytes], *, font_path: str | None) -> None:
    """The report as an A4 PDF."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    font = register_font(font_path)
    texts = [report.title] + [p.name for c in report.products.currencies for p in c.products]
    texts += [i.name for i in report.products.low_stock]
    check_drawable(font, "".join(texts))
    h1 = ParagraphStyle("h1", fontName=font, fontSize=16, leading=20, spaceAfter=4)
    h2 = ParagraphStyle("h2", fontName=font, fontSize=12, leading=16, spaceBefore=10, spaceAfter=4)
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=12)
    story: list[Any] = [
        Paragraph(report.title, h1),
        Paragraph(
            f"{report.period_text} · generated {report.generated_at.isoformat(timespec='seconds')}",
            body,
        ),
    ]
    if not report.sales.currencies:
        story.append(Paragraph("No sales in this period.", body))
    for figures in report.sales.currencies:
        code = figures.currency.code
        story.append(Paragraph(f"Sales in {code}", h2))
        rows = [["Figure", "Value", "Growth"]] + [
            [title, figure_text(figures, name), growth_text(figures.growth.get(name))]
            for name, title in HEADLINES
        ]
        story.append(_pdf_table(rows, font, [150, 150, 90]))
        if figures.trend:
            story.append(Spacer(1, 6))
            story.append(_trend_chart(figures.trend, font))
        pay = report.payments.currency(code)
        if pay is not None and pay.channels:
            story.append(Paragraph("Channels: share and success rates", h2))
            chart = _share_chart(pay.channels, font)
            if chart is not None:
                story.append(chart)
            story.append(_pdf_table([list(CHANNEL_HEAD), *channel_rows(pay.channels)], font))
        prods = report.products.currency(code)
        if prods is not None and prods.products:
            story.append(Paragraph("Best sellers", h2))
            story.append(
                _pdf_table(
                    [list(PRODUCT_HEAD), *product_rows(prods.products[:TOP_PRODUCTS])],
                    font,
                    [80, 200, 60, 100, 60],
                )
            )
    story.append(Paragraph("Low stock", h2))
    if report.products.low_stock:
        story.append(
            _pdf_table(
                [
                    list(LOW_STOCK_HEAD),
                    *[
                        [i.sku, i.name, str(i.stock), str(i.threshold)]
                        for i in report.products.low_stock
                    ],
                ],
                font,
                [80, 240, 60, 60],
            )
        )
    else:
        story.append(Paragraph("No product is at or below its low-stock threshold.", body))
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        title=report.title,
        leftMargin=40,
        rightMargin=40,
        topMargin=40,
        bottomMargin=40,
    )
    doc.build(story)


def write_xlsx_report(report: SalesReport, out: str | IO[bytes]) -> None:
    """The report as an Excel workbook (one chart per currency on the Trend sheet)."""
    import xlsxwriter

    book: Any = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        },
    )
    bold = book.add_format({"bold": True})
    pct = book.add_format({"num_format": "0.00%"})
    amounts: dict[int, Any] = {}

    def amount(m: Money) -> Any:
        d = m.currency.minor_units
        if d not in amounts:
            amounts[d] = book.add_format({"num_format": "0." + "0" * d if d else "0"})
        return amounts[d]

    summary = book.add_worksheet("Summary")
    summary.write_string(0, 0, report.title, bold)
    summary.write_string(1, 0, report.period_text)
    summary.set_column(0, 0, 22)
    summary.set_column(1, 3, 16)
    row = 3
    trend = book.add_worksheet("Trend")
    trend_row = 0
    for figures in report.sales.currencies:
        summary.write_row(row, 0, ["Currency", figures.currency.code], bold)
        summary.write_row(row + 1, 0, ["Figure", "Value", "Growth"], bold)
        row += 2
        for name, title in HEADLINES:
            value = getattr(figures, name)
            summary.write_string(row, 0, title)
            if isinstance(value, Money):
                summary.write_number(row, 1, value.amount, amount(value))
            elif value is None:
                summary.write_string(row, 1, "–")
            elif isinstance(value, int):
                summary.write_number(row, 1, value)
            else:
                summary.write_number(row, 1, value, pct)
            g = figures.growth.get(name)
            if g is not None:
                summary.write_number(row, 2, g, pct)
            row += 1
        row += 1
        if figures.trend:
            trend.write_row(
                trend_row,
                0,
                [f"Bucket ({figures.currency.code})", "Created", "Paid", "Gross sales"],
                bold,
            )
            first = trend_row + 1
            for b in figures.trend:
                trend_row += 1
                trend.write_string(trend_row, 0, b.start.isoformat())
                trend.write_number(trend_row, 1, b.orders_created)
                trend.write_number(trend_row, 2, b.orders_paid)
                trend.write_number(trend_row, 3, b.gross_sales.amount, amount(b.gross_sales))
            chart = book.add_chart({"type": "column"})
            chart.add_series(
                {
                    "name": f"Gross sales {figures.currency.code}",
                    "categories": ["Trend", first, 0, trend_row, 0],
                    "values": ["Trend", first, 3, trend_row, 3],
                }
            )
            chart.set_legend({"position": "bottom"})
            trend.insert_chart(first, 5, chart)
            trend_row += max(18 - len(figures.trend), 2)
    channels = book.add_worksheet("Channels")
    channels.write_row(0, 0, ["Currency", *CHANNEL_HEAD], bold)
    r = 1
    for pay in report.payments.currencies:
        for c in pay.channels:
            channels.write_row(r, 0, [pay.currency.code, c.channel or "by hand", c.attempts])
            for col, v in ((3, c.success_rate), (4, c.order_success_rate)):
                if v is not None:
                    channels.write_number(r, col, v, pct)
            channels.write_number(r, 5, c.paid_orders)
            channels.write_number(r, 6, c.amount.amount, amount(c.amount))
            if c.share is not None:
                channels.write_number(r, 7, c.share, pct)
            r += 1
    products = book.add_worksheet("Products")
    products.write_row(0, 0, ["Currency", *PRODUCT_HEAD], bold)
    r = 1
    for cur in report.products.currencies:
        for p in cur.products:
            products.write_row(r, 0, [cur.currency.code, p.sku])
            products.write_string(r, 2, p.name)
            products.write_number(r, 3, p.quantity)
            products.write_number(r, 4, p.revenue.amount, amount(p.revenue))
            if p.revenue_share is not None:
                products.write_number(r, 5, p.revenue_share, pct)
            r += 1
    low = book.add_worksheet("Low stock")
    low.write_row(0, 0, list(LOW_STOCK_HEAD), bold)
    for r, item in enumerate(report.products.low_stock, 1):
        low.write_string(r, 0, item.sku)
        low.write_string(r, 1, item.name)
        low.write_number(r, 2, item.stock)
        low.write_number(r, 3, item.threshold)
    book.close()
