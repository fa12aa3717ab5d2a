"""Unit tests of ordercore._orders.listing: periods in a time zone, typed ranges, the
filter's rules, the page cursor."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordercore._errors import CurrencyMismatch, InvalidAmount, InvalidField, ValidationError
from ordercore._money import Money
from ordercore._orders.listing import (
    Cursor,
    OrderFilter,
    date_range,
    load_zone,
    period_range,
)
from ordercore._state import OrderStatus

UTC = timezone.utc
SHANGHAI = "Asia/Shanghai"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------------------- periods
# 2026-11-24 16:00 UTC is Wednesday 2026-11-25 00:00 in Shanghai (UTC+8, no DST).
@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("today", utc(2026, 11, 24, 16, 0), utc(2026, 11, 24, 16), utc(2026, 11, 25, 16)),
        (
            "today",
            utc(2026, 11, 24, 15, 59, 59, 999999),
            utc(2026, 11, 23, 16),
            utc(2026, 11, 24, 16),
        ),
        ("this-week", utc(2026, 11, 24, 16, 0), utc(2026, 11, 22, 16), utc(2026, 11, 29, 16)),
        # Sunday 23:59 local still belongs to the week that started on Monday the 16th.
        ("this-week", utc(2026, 11, 22, 15, 59), utc(2026, 11, 15, 16), utc(2026, 11, 22, 16)),
        ("this-month", utc(2026, 11, 30, 16, 0), utc(2026, 11, 30, 16), utc(2026, 12, 31, 16)),
        ("this-month", utc(2026, 11, 30, 15, 59), utc(2026, 10, 31, 16), utc(2026, 11, 30, 16)),
        ("this-month", utc(2026, 12, 31, 16, 0), utc(2026, 12, 31, 16), utc(2027, 1, 31, 16)),
    ],
)
def test_period_range_in_shanghai(
    period: str, now: datetime, start: datetime, end: datetime
) -> None:
    assert period_range(period, SHANGHAI, now) == (start, end)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("today", utc(2026, 11, 24), utc(2026, 11, 25)),
        ("this-week", utc(2026, 11, 23), utc(2026, 11, 30)),
        ("this-month", utc(2026, 11, 1), utc(2026, 12, 1)),
    ],
)
def test_period_range_in_utc_differs(period: str, start: datetime, end: datetime) -> None:
    now = utc(2026, 11, 24, 16, 0)  # Tuesday in UTC, Wednesday in Shanghai
    assert period_range(period, "UTC", now) == (start, end)
    assert period_range(period, SHANGHAI, now) != (start, end)


def test_period_range_returns_utc_whatever_now_is_in() -> None:
    now = datetime(2026, 11, 25, 0, 30, tzinfo=load_zone(SHANGHAI))
    start, end = period_range("today", SHANGHAI, now)
    assert start.tzinfo is UTC
    assert end.tzinfo is UTC
    assert (start, end) == (utc(2026, 11, 24, 16), utc(2026, 11, 25, 16))


def test_period_range_across_a_dst_change() -> None:
    # Europe/Paris leaves summer time on 2026-10-25: that day has 25 hours.
    start, end = period_range("today", "Europe/Paris", utc(2026, 10, 25, 12))
    assert (start, end) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))
    assert end - start == timedelta(hours=25)


def test_period_range_where_midnight_does_not_exist() -> None:
    # America/Santiago jumped from 00:00 to 01:00 on 2026-09-06: the day starts at the jump.
    start, end = period_range("today", "America/Santiago", utc(2026, 9, 6, 15))
    assert start == utc(2026, 9, 6, 4)
    assert end == utc(2026, 9, 7, 3)


@given(
    now=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    tz=st.sampled_from([SHANGHAI, "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
    period=st.sampled_from(["today", "this-week", "this-month"]),
)
@settings(max_examples=300, deadline=None)
def test_period_contains_now_and_starts_at_local_midnight(
    now: datetime, tz: str, period: str
) -> None:
    start, end = period_range(period, tz, now)
    assert start <= now < end
    zone = load_zone(tz)
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    assert (local_start.hour, local_start.minute) == (0, 0)
    assert (local_end.hour, local_end.minute) == (0, 0)
    if period == "this-week":
        assert local_start.weekday() == 0
        assert (local_end.date() - local_start.date()).days == 7
    if period == "this-month":
        assert local_start.day == 1
        assert local_end.day == 1


@pytest.mark.parametrize("tz", ["Asia/Shangai", "Mars/Olympus", "", "../../etc/passwd", "/x"])
def test_unknown_time_zone(tz: str) -> None:
    with pytest.raises(InvalidField, match="unknown time zone") as info:
        period_range("today", tz, utc(2026, 11, 24))
    assert info.value.field == "tz"


def test_unknown_time_zone_suggests_close_names() -> None:
    with pytest.raises(InvalidField, match="did you mean Asia/Shanghai"):
        load_zone("Asia/Shangai")


def test_unknown_period_and_naive_now() -> None:
    with pytest.raises(InvalidField, match="period must be one of today, this-week"):
        period_range("yesterday", SHANGHAI, utc(2026, 11, 24))
    with pytest.raises(InvalidField, match="timezone-aware"):
        period_range("today", SHANGHAI, datetime(2026, 11, 24))


# ---------------------------------------------------------------------------- date ranges
def test_date_range_whole_local_days() -> None:
    assert date_range("2026-11-01", "2026-11-30", SHANGHAI) == (
        utc(2026, 10, 31, 16),
        utc(2026, 11, 30, 16),
    )
    assert date_range("2026-11-24", "2026-11-24", "UTC") == (utc(2026, 11, 24), utc(2026, 11, 25))
    assert date_range("2026-11-24", None, SHANGHAI) == (utc(2026, 11, 23, 16), None)
    assert date_range(None, "2026-11-24", SHANGHAI) == (None, utc(2026, 11, 24, 16))
    assert date_range(None, None, SHANGHAI) == (None, None)


def test_date_range_iso_datetimes() -> None:
    # A time without an offset is local to the zone; with one, it is taken as given.
    assert date_range("2026-11-24T08:00", "2026-11-24T20:00:00+00:00", SHANGHAI) == (
        utc(2026, 11, 24, 0),
        utc(2026, 11, 24, 20),
    )
    assert date_range("2026-11-24T08:00:00Z", None, SHANGHAI) == (utc(2026, 11, 24, 8), None)
    assert date_range("2026-11-24 08:00:00.5", None, "UTC") == (
        utc(2026, 11, 24, 8, 0, 0, 500000),
        None,
    )


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-31", None, "not a real date"),
        ("2026-13-01", None, "not a real date"),
        ("24/11/2026", None, "neither a date"),
        ("yesterday", None, "neither a date"),
        ("", None, "must be a date"),
        (None, "2026-11-24T25:00", "neither a date"),
        ("2026-11-25", "2026-11-24", "starts .* after it ends"),
        ("2026-11-24T12:00", "2026-11-24T11:59", "starts .* after it ends"),
    ],
)
def test_malformed_date_ranges(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(InvalidField, match=message):
        date_range(start, end, SHANGHAI)


def test_date_range_bad_zone() -> None:
    with pytest.raises(InvalidField, match="unknown time zone"):
        date_range("2026-11-01", None, "Asia/Beijing")


# --------------------------------------------------------------------------------- filter
def test_default_filter_selects_everything() -> None:
    flt = OrderFilter()
    assert flt.statuses == ()
    assert flt.currency is None


def test_filter_normalises() -> None:
    flt = OrderFilter(statuses=("paid", OrderStatus.PAID, "pending"), number_prefix=" 2026ab ")
    assert flt.statuses == (OrderStatus.PAID, OrderStatus.PENDING)
    assert flt.number_prefix == "2026AB"
    assert OrderFilter(statuses="paid").statuses == (OrderStatus.PAID,)  # type: ignore[arg-type]
    assert OrderFilter(max_amount=Money.of("5", "USD")).currency is not None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"statuses": ("paid", "shipped")}, InvalidField, "status must be one of"),
        (
            {"created_from": utc(2026, 11, 2), "created_to": utc(2026, 11, 1)},
            InvalidField,
            "is after",
        ),
        ({"created_from": datetime(2026, 11, 1)}, InvalidField, "timezone-aware"),
        ({"created_to": datetime(2026, 11, 1)}, InvalidField, "timezone-aware"),
        ({"channel": ""}, InvalidField, "channel"),
        ({"channel": "x" * 33}, InvalidField, "channel"),
        ({"sku": " "}, InvalidField, "sku"),
        ({"customer_id": 0}, InvalidField, "customer_id"),
        ({"customer_id": True}, InvalidField, "customer_id"),
        ({"customer_id": "3"}, InvalidField, "customer_id"),
        (
            {"min_amount": Money.of("2", "CNY"), "max_amount": Money.of("1", "CNY")},
            InvalidField,
            "more than max_amount",
        ),
        (
            {"min_amount": Money.of("1", "CNY"), "max_amount": Money.of("2", "USD")},
            CurrencyMismatch,
            "one currency",
        ),
        ({"min_amount": Money.of("-1", "CNY")}, InvalidAmount, "negative"),
        ({"max_amount": "10"}, InvalidAmount, "must be Money"),
        ({"flag": "Not A Flag"}, InvalidField, "flag"),
        ({"number_prefix": "2026-11"}, InvalidField, "letters or digits"),
        ({"number_prefix": "%"}, InvalidField, "letters or digits"),
        ({"number_prefix": ""}, InvalidField, "letters or digits"),
        ({"number_prefix": "1" * 33}, InvalidField, "letters or digits"),
        ({"special": "yes"}, InvalidField, "special"),
    ],
)
def test_filter_refuses(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        OrderFilter(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValidationError)


def test_filter_equal_bounds_are_allowed() -> None:
    OrderFilter(created_from=utc(2026, 11, 1), created_to=utc(2026, 11, 1))
    OrderFilter(min_amount=Money.of("1", "CNY"), max_amount=Money.of("1.00", "CNY"))


# --------------------------------------------------------------------------------- cursor
@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    order_id=st.integers(1, 2**63),
)
def test_cursor_round_trips(moment: datetime, order_id: int) -> None:
    text = Cursor(moment, order_id).encode()
    assert text.isascii()
    assert "=" not in text
    assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert Cursor.decode(text) == Cursor(moment, order_id)


def test_cursor_keeps_microseconds_and_normalises_to_utc() -> None:
    local = datetime(2026, 11, 25, 0, 0, 0, 1, tzinfo=load_zone(SHANGHAI))
    decoded = Cursor.decode(Cursor(local, 7).encode())
    assert decoded.created_at == utc(2026, 11, 24, 16, 0, 0, 1)
    assert decoded.created_at.tzinfo is UTC


GOOD = Cursor(utc(2026, 11, 24, 16), 123).encode()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        "!!!!",
        GOOD[:-1],
        GOOD + "A",
        GOOD + "==",
        " " + GOOD,
        GOOD[:5] + ("B" if GOOD[5] != "B" else "C") + GOOD[6:],
        base64.urlsafe_b64encode(b"\x01" + b"\x00" * 20).decode().rstrip("="),
        "A" * 1000,
    ],
)
def test_bad_cursors(bad: str) -> None:
    with pytest.raises(InvalidField, match="is not one this command gave") as info:
        Cursor.decode(bad)
    assert info.value.field == "cursor"


@given(text=st.text(max_size=40))
def test_random_text_is_never_a_cursor_nor_a_crash(text: str) -> None:
    if text == GOOD:
        return
    with pytest.raises(InvalidField):
        Cursor.decode(text)


@given(position=st.integers(0, len(GOOD) - 1), char=st.sampled_from("AQgw_-09zZ"))
def test_any_changed_character_is_refused(position: int, char: str) -> None:
    altered = GOOD[:position] + char + GOOD[position + 1 :]
    if altered == GOOD:
        return
    with pytest.raises(InvalidField):
        Cursor.decode(altered)


def test_non_string_cursor() -> None:
    with pytest.raises(InvalidField):
        Cursor.decode(None)  # type: ignore[arg-type]
