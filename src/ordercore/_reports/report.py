"""The sales report: what it holds (:class:`SalesReport`, built from the statistics service's
results) and its HTML form (one self-contained file: inline CSS and SVG charts, no script,
nothing fetched from the network).

The PDF and Excel forms are in :mod:`.report_files`. Every figure comes from
``core.stats`` (``docs/concepts/statistics.md`` defines them); nothing is computed again
here but the text and the geometry of the charts.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final

from attrs import frozen

from ordercore._money import Money

from .stats import (
    ChannelFigures,
    PaymentStats,
    ProductStats,
    SalesFigures,
    SalesStats,
    TrendBucket,
)

__all__ = ["HEADLINES", "SalesReport", "growth_text", "html_report", "money_text", "rate_text"]

#: The headline figures: (attribute of SalesFigures, title).
HEADLINES: Final = (
    ("gross_sales", "Gross sales"),
    ("net_sales", "Net sales"),
    ("refunds", "Refunds"),
    ("orders_created", "Orders created"),
    ("orders_paid", "Orders paid"),
    ("conversion_rate", "Conversion"),
    ("average_order_value", "Average order"),
    ("repurchase_rate", "Repurchase rate"),
)
#: Best sellers shown per currency.
TOP_PRODUCTS: Final = 10


@frozen
class SalesReport:
    """The statistics of one period, for the report writers."""

    title: str
    generated_at: datetime
    sales: SalesStats
    payments: PaymentStats
    products: ProductStats

    @property
    def period_text(self) -> str:
        p = self.sales.period
        last = p.after.toordinal() - 1
        from datetime import date

        name = f"{p.name}: " if p.name else ""
        return f"{name}{p.first.isoformat()} – {date.fromordinal(last).isoformat()} ({p.tz})"


def money_text(value: Money | None) -> str:
    return "–" if value is None else f"{value.amount:,} {value.currency.code}"


def rate_text(value: Decimal | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def growth_text(value: Decimal | None) -> str:
    """``+12.50%``, ``-3.00%``; ``–`` when there is nothing to compare with."""
    return "–" if value is None else f"{value * 100:+.2f}%"


def figure_text(figures: SalesFigures, name: str) -> str:
    value = getattr(figures, name)
    if isinstance(value, Money) or (value is None and name == "average_order_value"):
        return money_text(value)
    if isinstance(value, Decimal) or value is None:
        return rate_text(value)
    return f"{value:,}"


# ----------------------------------------------------------------------------------- SVG
_W: Final = 640
_H: Final = 220
_COLORS: Final = (
    "#2563eb",
    "#16a34a",
    "#f59e0b",
    "#dc2626",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#ea580c",
    "#475569",
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def trend_svg(trend: Sequence[TrendBucket]) -> str:
    """Gross sales per bucket as bars, orders paid as a line, with axes labels."""
    if not trend:
        return ""
    top = max((b.gross_sales.to_minor() for b in trend), default=0) or 1
    cur = trend[0].gross_sales.currency
    top_label = f"{cur.code} {Money.from_minor(top, cur).amount}"
    top_orders = max((b.orders_paid for b in trend), default=0) or 1
    left, bottom, plot_w, plot_h = 60, _H - 30, _W - 80, _H - 50
    step = plot_w / len(trend)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="Sales trend" class="chart">',
        f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{bottom - plot_h + 4}" text-anchor="end" font-size="10">'
        f"{_e(top_label)}</text>",
    ]
    points = []
    for i, b in enumerate(trend):
        h = plot_h * b.gross_sales.to_minor() / top
        x = left + i * step
        parts.append(
            f'<rect x="{x + step * 0.15:.1f}" y="{bottom - h:.1f}" width="{step * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{_COLORS[0]}"><title>{_e(b.start.isoformat())}: '
            f"{_e(money_text(b.gross_sales))}, {b.orders_paid} paid</title></rect>"
        )
        points.append(f"{x + step / 2:.1f},{bottom - plot_h * b.orders_paid / top_orders:.1f}")
        if len(trend) <= 16 or i % max(1, len(trend) // 8) == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{bottom + 14}" text-anchor="middle" '
                f'font-size="9">{_e(b.start.strftime("%m-%d"))}</text>'
            )
    parts.append(
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{_COLORS[2]}" '
        'stroke-width="2"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def share_svg(channels: Sequence[ChannelFigures]) -> str:
    """The channels' shares of the amount paid, as one stacked bar with a legend."""
    shown = [c for c in channels if c.share]
    if not shown:
        return ""
    height = 30 + 18 * len(shown)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" role="img" '
        'aria-label="Channel share" class="chart">'
    ]
    x = 0.0
    for i, c in enumerate(shown):
        w = float(c.share or 0) * _W
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="20" '
            f'fill="{_COLORS[i % len(_COLORS)]}"/>'
        )
        x += w
        parts.append(
            f'<rect x="0" y="{28 + 18 * i}" width="12" height="12" '
            f'fill="{_COLORS[i % len(_COLORS)]}"/><text x="18" y="{38 + 18 * i}" font-size="11">'
            f"{_e(c.channel or 'by hand')}: {_e(rate_text(c.share))} "
            f"({_e(money_text(c.amount))})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------- HTML
_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",
"WenQuanYi Micro Hei",sans-serif;margin:2rem auto;max-width:760px;color:#111;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.muted{color:#666;font-size:.9rem}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{padding:.25rem .5rem;border-bottom:1px solid #eee;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:.5rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem}.card b{display:block;font-size:1.1rem}
.up{color:#16a34a}.down{color:#dc2626}svg.chart{width:100%;height:auto}
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    th = "".join(
        f'<th class="{"n" if i in numeric else ""}">{_e(h)}</th>' for i, h in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"n" if i in numeric else ""}">{_e(v)}</td>' for i, v in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def channel_rows(channels: Sequence[ChannelFigures]) -> list[list[str]]:
    return [
        [
            c.channel or "by hand",
            f"{c.attempts:,}",
            rate_text(c.success_rate),
            rate_text(c.order_success_rate),
            f"{c.paid_orders:,}",
            money_text(c.amount),
            rate_text(c.share),
        ]
        for c in channels
    ]


CHANNEL_HEAD: Final = (
    "Channel",
    "Attempts",
    "Success",
    "Order success",
    "Paid orders",
    "Amount",
    "Share",
)
PRODUCT_HEAD: Final = ("SKU", "Product", "Quantity", "Revenue", "Share")
LOW_STOCK_HEAD: Final = ("SKU", "Product", "Stock", "Threshold")


def html_report(report: SalesReport) -> str:
    """The whole report as one HTML document."""
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(report.title)}</h1>",
        f'<p class="muted">{_e(report.period_text)} · generated '
        f"{_e(report.generated_at.isoformat(timespec='seconds'))}</p>",
    ]
    if not report.sales.currencies:
        out.append("<p>No sales in this period.</p>")
    for figures in report.sales.currencies:
        code = figures.currency.code
        out.append(f'<h2>{_e(code)}</h2><div class="cards">')
        for name, title in HEADLINES:
            g = figures.growth.get(name)
            cls = "" if g is None else ("up" if g >= 0 else "down")
            out.append(
                f'<div class="card">{_e(title)}<b>{_e(figure_text(figures, name))}</b>'
                f'<span class="{cls}">{_e(growth_text(g))}</span></div>'
            )
        out.append("</div><h3>Sales trend</h3>")
        out.append(trend_svg(figures.trend))
        pay = report.payments.currency(code)
        if pay is not None:
            out.append("<h3>Channels</h3>")
            out.append(share_svg(pay.channels))
            out.append(_table(CHANNEL_HEAD, channel_rows(pay.channels), {1, 2, 3, 4, 5, 6}))
        prods = report.products.currency(code)
        if prods is not None and prods.products:
            out.append("<h3>Best sellers</h3>")
            out.append(_table(PRODUCT_HEAD, product_rows(prods.products[:TOP_PRODUCTS]), {2, 3, 4}))
    out.append("<h2>Low stock</h2>")
    if report.products.low_stock:
        out.append(
            _table(
                LOW_STOCK_HEAD,
                [
                    [i.sku, i.name, str(i.stock), str(i.threshold)]
                    for i in report.products.low_stock
                ],
                {2, 3},
            )
        )
    else:
        out.append("<p>No product is at or below its low-stock threshold.</p>")
    out.append("</body></html>\n")
    return "".join(out)


def product_rows(products: Sequence[object]) -> list[list[str]]:
    from .stats import ProductFigures

    return [
        [p.sku, p.name, f"{p.quantity:,}", money_text(p.revenue), rate_text(p.revenue_share)]
        for p in products
        if isinstance(p, ProductFigures)
    ]
