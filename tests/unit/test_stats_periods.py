"""Statistics periods, buckets and numbers (pure): local dates, DST offsets, rejections."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ordercore import InvalidField, Money, StatsPeriod
from ordercore._reports.stats import check_channels, growth, nearest_rank, rate

UTC = timezone.utc
# Wednesday 2026-03-04 01:30 in Shanghai (still Tuesday in UTC)
NOW = datetime(2026, 3, 3, 17, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("today", "2026-03-04", "2026-03-04"),
        ("yesterday", "2026-03-03", "2026-03-03"),
        ("this-week", "2026-03-02", "2026-03-08"),
        ("last-week", "2026-02-23", "2026-03-01"),
        ("this-month", "2026-03-01", "2026-03-31"),
        ("last-month", "2026-02-01", "2026-02-28"),
        ("last-30-days", "2026-02-03", "2026-03-04"),
        ("this-year", "2026-01-01", "2026-12-31"),
    ],
)
def test_named_periods_are_local_dates(name: str, first: str, last: str) -> None:
    p = StatsPeriod.named(name, "Asia/Shanghai", NOW)
    assert (p.first.isoformat(), (p.after - timedelta(days=1)).isoformat()) == (first, last)
    assert p.start == datetime.fromisoformat(first + "T00:00+08:00")
    assert p.previous().after == p.first
    assert p.previous().days == p.days


def test_last_month_in_january_is_december() -> None:
    p = StatsPeriod.named("last-month", "UTC", datetime(2026, 1, 15, tzinfo=UTC))
    assert (p.first, p.after) == (date(2025, 12, 1), date(2026, 1, 1))


def test_dst_days_have_23_and_25_hours_and_offsets_change_at_the_second() -> None:
    spring = StatsPeriod.between("2026-03-29", "2026-03-29", "Europe/Paris")
    assert spring.end - spring.start == timedelta(hours=23)
    autumn = StatsPeriod.between("2026-10-25", "2026-10-25", "Europe/Paris")
    assert autumn.end - autumn.start == timedelta(hours=25)
    assert spring.offsets() == (
        (spring.start, 3600),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), 7200),
    )
    lord_howe = StatsPeriod.between("2026-10-01", "2026-10-10", "Australia/Lord_Howe")
    assert [o for _, o in lord_howe.offsets()] == [37800, 39600]  # +10:30 -> +11:00
    assert StatsPeriod.between("2026-01-01", "2026-12-31", "Asia/Shanghai").offsets() == (
        (datetime(2025, 12, 31, 16, tzinfo=UTC), 28800),
    )


def test_offsets_give_the_local_date_of_every_hour() -> None:
    p = StatsPeriod.between("2026-03-01", "2026-11-30", "America/New_York")
    zone = ZoneInfo(p.tz)
    segments = p.offsets()
    moment = p.start
    while moment < p.end:
        offset = [o for since, o in segments if since <= moment][-1]
        day = (int(moment.timestamp()) + offset) // 86400
        assert date(1970, 1, 1) + timedelta(days=day) == moment.astimezone(zone).date()
        moment += timedelta(minutes=37)


def test_buckets_never_split_a_day_and_start_with_the_period() -> None:
    p = StatsPeriod.between("2026-03-04", "2026-05-02", "Europe/Paris", "month")
    assert p.buckets() == (date(2026, 3, 4), date(2026, 4, 1), date(2026, 5, 1))
    w = StatsPeriod.between("2026-03-04", "2026-03-17", "Europe/Paris", "week")
    assert w.buckets() == (date(2026, 3, 4), date(2026, 3, 9), date(2026, 3, 16))
    assert len(StatsPeriod.between("2026-03-01", "2026-03-31", "UTC").buckets()) == 31


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: StatsPeriod.named("next-week", "UTC", NOW), "period must be one of"),
        (lambda: StatsPeriod.named("today", "Mars/Olympus", NOW), "unknown time zone"),
        (lambda: StatsPeriod.named("today", "UTC", datetime(2026, 1, 1)), "timezone-aware"),
        (lambda: StatsPeriod.between("2026-03-05", "2026-03-01", "UTC"), "after it ends"),
        (lambda: StatsPeriod.between("2026-02-30", "2026-03-01", "UTC"), "not a real date"),
        (lambda: StatsPeriod.between("2026-03-01T08:00", "2026-03-02", "UTC"), "whole local"),
        (lambda: StatsPeriod.between("2000-01-01", "2026-03-02", "UTC"), "at most"),
        (lambda: StatsPeriod(date(2026, 1, 2), date(2026, 1, 1), "UTC"), "end after"),
        (lambda: StatsPeriod(date(2026, 1, 1), date(2026, 1, 2), "UTC", "hour"), "by must"),  # type: ignore[arg-type]
        (lambda: check_channels(["Alipay"]), "channel name"),
        (lambda: check_channels([""]), "channel name"),
    ],
)
def test_rejections(call: object, words: str) -> None:
    with pytest.raises(InvalidField, match=words):
        call()  # type: ignore[operator]


def test_numbers() -> None:
    assert rate(1, 3) == Decimal("0.3333")
    assert rate(2, 3) == Decimal("0.6667")
    assert rate(1, 0) is None
    assert growth(Money.of("150.00", "CNY"), Money.of("100.00", "CNY")) == Decimal("0.5000")
    assert growth(5, 0) is None
    assert growth(None, 3) is None
    assert [nearest_rank(50, n) for n in (1, 2, 3, 4, 10)] == [1, 1, 2, 2, 5]
    assert [nearest_rank(90, n) for n in (1, 2, 10, 11)] == [1, 2, 9, 10]
    assert check_channels(["wechat", "alipay", "wechat"]) == ("alipay", "wechat")
