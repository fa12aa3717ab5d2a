"""``ordercore stats``: the JSON a script reads, the tables a person reads, the refusals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from integration.stats_book import Attempt, Book, Line, OrderRow, ProductRow, RefundRow, write
from ordercore import OrderCore, StatsPeriod
from ordercore._reports.stats import payments_view, products_view, sales_view

from .conftest import OC

UTC = timezone.utc
T0 = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # 23:30 in Paris, the day before spring forward


def _order(hours: float, paid_after: float | None, channel: str | None, **kw: object) -> OrderRow:
    created = T0 + timedelta(hours=hours)
    return OrderRow(
        customer_id=int(kw.get("customer", 1)),  # type: ignore[call-overload]
        currency=str(kw.get("currency", "CNY")),
        created_at=created,
        paid_at=None if paid_after is None else created + timedelta(seconds=paid_after),
        channel=channel if paid_after is not None else None,
        lines=[Line("plan-a", "Plan A", 3000, 2)]
        if kw.get("currency") != "USD"
        else [Line("plan-u", "Plan U", 999, 1)],
        refunded_minor=int(kw.get("refunded", 0)),  # type: ignore[call-overload]
        attempts=[Attempt(channel or "alipay", str(kw.get("attempt", "succeeded")), created)],
        refunds=(
            [RefundRow(int(kw["refunded"]), "succeeded", True, created + timedelta(hours=3))]  # type: ignore[call-overload]
            if kw.get("refunded")
            else []
        ),
    )


BOOK = Book(
    [
        _order(0, 60, "alipay"),
        _order(2, 90, "alipay", customer=2, refunded=1000),
        _order(3, 30, "wechat", customer=1),
        _order(5, None, None, attempt="failed"),
        _order(26, 7200, "balance", customer=3),
        _order(27, 5, "alipay", currency="USD", customer=2),
    ],
    [ProductRow("plan-a", 3, 5, True), ProductRow("plan-b", 9, 5, True)],
)
ARGS = ["--from", "2026-03-29", "--to", "2026-03-31", "--tz", "Europe/Paris"]


@pytest.fixture
def book_oc(oc: OC) -> OC:
    core = OrderCore.from_url(oc.url)
    try:
        write(core, BOOK)
    finally:
        core.close()
    return oc


def _core(oc: OC) -> OrderCore:
    return OrderCore.from_url(oc.url)


def test_json_is_the_view_of_the_service(book_oc: OC) -> None:
    core = _core(book_oc)
    period = StatsPeriod.between("2026-03-29", "2026-03-31", "Europe/Paris")
    try:
        sales = book_oc.json("stats", "sales", *ARGS)
        assert sales == sales_view(core.stats.sales(period))
        pay = book_oc.json("stats", "payments", *ARGS, "--exclude-channel", "balance")
        assert pay == payments_view(core.stats.payments(period, exclude_channels=["balance"]))
        prod = book_oc.json("stats", "products", *ARGS, "--sort", "revenue")
        assert prod == products_view(core.stats.products(period, sort="revenue", limit=20))
    finally:
        core.close()

    cny = sales["currencies"][0]
    assert set(cny) == {
        "currency", "orders_created", "orders_paid", "conversion_rate", "paid_orders",
        "gross_sales", "refunds", "net_sales", "average_order_value", "paying_customers",
        "repurchase_rate", "returning_customer_rate", "growth", "trend",
    }  # fmt: skip
    # The first order (22:30 UTC, 23:30 in Paris on the 28th) is before the period; the next
    # ones are at 01:30 and 03:30 local on the 29th (the clocks jump 02:00 -> 03:00), then
    # 02:30 local on the 30th. Three paid 60.00 each; 10.00 refunded.
    assert cny["orders_created"] == 4
    assert cny["orders_paid"] == 3
    assert cny["conversion_rate"] == "0.7500"
    assert cny["gross_sales"] == "180.00"
    assert cny["refunds"] == "10.00"
    assert cny["net_sales"] == "170.00"
    assert cny["average_order_value"] == "60.00"
    assert [b["start"] for b in cny["trend"]] == ["2026-03-29", "2026-03-30", "2026-03-31"]
    assert [b["orders_created"] for b in cny["trend"]] == [3, 1, 0]
    assert set(cny["trend"][0]) == {"start", "orders_created", "orders_paid", "gross_sales"}

    channels = {c["channel"]: c for c in pay["currencies"][0]["channels"]}
    assert set(channels) == {"alipay", "wechat"}  # balance left out
    assert set(channels["alipay"]) >= {
        "channel", "attempts", "succeeded", "success_rate", "paid_orders", "amount", "share",
        "order_share", "time_to_pay",
    }  # fmt: skip
    assert channels["alipay"]["share"] == "0.5000"  # of 120.00: balance is left out
    assert channels["alipay"]["time_to_pay"] == {"orders": 1, "p50_seconds": 90, "p90_seconds": 90}
    assert prod["low_stock"] == [{"sku": "plan-a", "name": "Plan A", "stock": 3, "threshold": 5}]
    assert set(prod["currencies"][0]["products"][0]) == {
        "sku", "name", "quantity", "revenue", "revenue_share",
    }  # fmt: skip


def test_tables_sparkline_and_bars(book_oc: OC) -> None:
    out = book_oc.ok("stats", "sales", *ARGS)
    assert "gross sales" in out
    assert "180.00 CNY" in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")
    out = book_oc.ok("stats", "payments", *ARGS)
    assert "alipay" in out
    assert "█" in out
    out = book_oc.ok("stats", "products", *ARGS)
    assert "plan-a" in out
    assert "low stock" in out


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--tz", "Europe/Pariss"], 1, "Europe/Paris"),
        (["--period", "today", "--from", "2026-03-01", "--to", "2026-03-02"], 1, "not both"),
        (["--from", "2026-03-01"], 1, "both --from and --to"),
        (["--from", "2026-02-30", "--to", "2026-03-02"], 1, "not a real date"),
        (["--from", "2026-03-05", "--to", "2026-03-02"], 1, "after it ends"),
        (["--from", "2026-03-01T10:00", "--to", "2026-03-02"], 1, "whole local days"),
        (["--currency", "XXX"], 1, "unknown currency"),
        (["--exclude-channel", "Bad Name"], 1, "channel name"),
        (["--period", "next-week"], 2, "next-week"),
        (["--actor", "customer:1"], 1, "may not stats.view"),
    ],
)
def test_refusals(book_oc: OC, args: list[str], code: int, words: str) -> None:
    # the audit records, sealed and still pending
    audit = "SELECT (SELECT COUNT(*) FROM audit_log) + (SELECT COUNT(*) FROM audit_pending)"
    before = book_oc.sql(audit)[0][0]
    sentence = book_oc.fail("stats", "sales", *args, code=code)
    assert words in sentence
    after = book_oc.sql(audit)[0][0]
    assert after == before + (1 if "may not" in words else 0)  # only a refusal is recorded


def test_reporting_database_url_is_where_statistics_read(book_oc: OC, tmp_path: Path) -> None:
    """A replica that lags: statistics read it, not the main database."""
    from .conftest import copy_database, sqlite_url

    replica = tmp_path / "replica.db"
    copy_database(book_oc.db_path, replica)
    book_oc.sql("DELETE FROM refunds")
    book_oc.sql("DELETE FROM payment_attempts")
    book_oc.sql("DELETE FROM order_lines")
    book_oc.sql("DELETE FROM orders")
    assert book_oc.json("stats", "sales", *ARGS)["currencies"] == []
    env = {"ORDERCORE_REPORTING_DATABASE_URL": sqlite_url(replica)}
    assert (
        book_oc.json("stats", "sales", *ARGS, env=env)["currencies"][0]["gross_sales"] == "180.00"
    )
