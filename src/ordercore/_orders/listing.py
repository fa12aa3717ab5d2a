"""Finding orders: the filter, date ranges in a time zone, the page cursor. Pure: no I/O.

The order list is sorted newest first by ``(created_at, id)`` and read page by page with an
opaque :class:`Cursor` (keyset pagination: a page starts right after the last order of the
previous one, never at an OFFSET). Everything here is plain data and validation; the query
that applies an :class:`OrderFilter` lives in ``adapters/sqlalchemy/listing.py``.

Dates a person types are local dates: "today", "this week" (weeks start on Monday), "this
month" and ``--from 2026-11-01 --to 2026-11-30`` are whole days in a configurable IANA time
zone (``Asia/Shanghai``), turned into UTC instants before they reach the database, so a day is
never the UTC day by accident.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import re
import struct
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from attrs import field, frozen

from ordercore._errors import CurrencyMismatch, InvalidAmount, InvalidField
from ordercore._money import Currency, Money
from ordercore._state import OrderStatus

from .domain import validate_tag

__all__ = [
    "ALL_PERIODS",
    "Cursor",
    "OrderFilter",
    "OrderSummary",
    "Page",
    "Period",
    "date_range",
    "day_start",
    "load_zone",
    "period_dates",
    "period_range",
]

#: The named periods of the order list.
Period = Literal["today", "this-week", "this-month"]

PERIODS: Final = ("today", "this-week", "this-month")
_NUMBER_PREFIX: Final = re.compile(r"[0-9A-Z]{1,32}\Z")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _aware(value: datetime | None, name: str) -> None:
    if value is not None and (
        not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None
    ):
        raise InvalidField(f"{name} must be a timezone-aware datetime", field=name)


# ------------------------------------------------------------------------------ time zones
def load_zone(tz: str) -> ZoneInfo:
    """The IANA time zone ``tz`` (``"Asia/Shanghai"``, ``"UTC"``), or :class:`InvalidField`
    naming the closest known zones."""
    if isinstance(tz, str) and tz.strip():
        try:
            return ZoneInfo(tz.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    close = difflib.get_close_matches(str(tz), sorted(available_timezones()), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "e.g. Asia/Shanghai, Europe/Paris, UTC"
    raise InvalidField(
        f"unknown time zone {tz!r}: give an IANA time zone name ({hint})", field="tz", value=tz
    )


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of local ``day`` in ``zone``, in UTC.

    If local midnight does not exist (a DST jump at 00:00), ``fold=0`` reads it with the
    offset before the jump, which is exactly the instant of the jump: the day's first instant.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)


#: Every named period :func:`period_range` knows: the order list offers the first three
#: (:data:`PERIODS`), the statistics all of them.
ALL_PERIODS: Final = (
    "today",
    "yesterday",
    "this-week",
    "last-week",
    "this-month",
    "last-month",
    "last-30-days",
    "this-year",
)


def period_dates(
    period: str, today: date, *, known: Iterable[str] = ALL_PERIODS
) -> tuple[date, date]:
    """``[first, after)``: the local dates of the named ``period`` that contains (or, for
    ``yesterday``/``last-*``, precedes) the local date ``today``.

    Weeks start on Monday (ISO); ``last-30-days`` is the 30 days that end with ``today``.
    """
    names = tuple(known)
    if period not in names:
        raise InvalidField(
            f"period must be one of {', '.join(names)}, not {period!r}",
            field="period",
            value=period,
        )
    month = today.replace(day=1)
    if period == "today":
        return today, today + timedelta(days=1)
    if period == "yesterday":
        return today - timedelta(days=1), today
    if period in ("this-week", "last-week"):
        first = today - timedelta(days=today.weekday())
        if period == "last-week":
            first -= timedelta(days=7)
        return first, first + timedelta(days=7)
    if period == "this-month":
        return month, (month + timedelta(days=32)).replace(day=1)
    if period == "last-month":
        return (month - timedelta(days=1)).replace(day=1), month
    if period == "last-30-days":
        return today - timedelta(days=29), today + timedelta(days=1)
    return today.replace(month=1, day=1), today.replace(year=today.year + 1, month=1, day=1)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of local ``day`` in ``zone``, in UTC (see :func:`_day_start`)."""
    return _day_start(day, zone)


def period_range(period: Period | str, tz: str, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of the local ``period`` that contains ``now``, in zone ``tz``.

    ``today`` is the local calendar day, ``this-week`` the local week starting on Monday,
    ``this-month`` the local calendar month; each ends where the next one starts.
    """
    zone = load_zone(tz)
    _aware(now, "now")
    first, after = period_dates(period, now.astimezone(zone).date(), known=PERIODS)
    return _day_start(first, zone), _day_start(after, zone)


def _parse_bound(text: str, zone: ZoneInfo, name: str, *, end: bool) -> datetime:
    value = text.strip() if isinstance(text, str) else text
    if not isinstance(value, str) or not value:
        raise InvalidField(f"{name} must be a date (YYYY-MM-DD) or an ISO datetime", field=name)
    if _DATE.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise InvalidField(
                f"{name} {text!r} is not a real date (YYYY-MM-DD)", field=name, value=text
            ) from None
        if end:  # a "to" date includes that whole day
            if day == date.max:
                raise InvalidField(f"{name} {text!r} is out of range", field=name, value=text)
            day += timedelta(days=1)
        return _day_start(day, zone)
    iso = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise InvalidField(
            f"{name} {text!r} is neither a date (YYYY-MM-DD) nor an ISO datetime "
            "(YYYY-MM-DDTHH:MM[:SS][+08:00])",
            field=name,
            value=text,
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=zone)  # a local time in the list's time zone
    return moment.astimezone(timezone.utc)


def date_range(
    from_text: str | None, to_text: str | None, tz: str
) -> tuple[datetime | None, datetime | None]:
    """Parse a typed range into ``[from, to)`` UTC instants (either side may be missing).

    A date (``2026-11-24``) means the whole local day in zone ``tz``: as ``from`` its first
    instant, as ``to`` the first instant of the next day, so ``--from 2026-11-01 --to
    2026-11-30`` is all of November. An ISO datetime is taken as given (a time without an
    offset is local to ``tz``) and, as ``to``, is exclusive.
    """
    zone = load_zone(tz)
    start = None if from_text is None else _parse_bound(from_text, zone, "from", end=False)
    end = None if to_text is None else _parse_bound(to_text, zone, "to", end=True)
    # A "to" date is a whole day: a range that ends with the day before "from" is a mistake.
    whole_day = to_text is not None and bool(_DATE.match(to_text.strip()))
    if start is not None and end is not None and (start > end or (whole_day and start == end)):
        raise InvalidField(
            f"the range starts ({from_text}) after it ends ({to_text})",
            field="from",
            value=from_text,
        )
    return start, end


# ---------------------------------------------------------------------------------- filter
def _statuses(value: Iterable[OrderStatus | str] | OrderStatus | str) -> tuple[OrderStatus, ...]:
    items = [value] if isinstance(value, str) else list(value)
    out: list[OrderStatus] = []
    for item in items:
        try:
            status = OrderStatus(item)
        except ValueError:
            known = ", ".join(s.value for s in OrderStatus)
            raise InvalidField(
                f"status must be one of {known}, not {item!r}", field="status", value=item
            ) from None
        if status not in out:
            out.append(status)
    return tuple(out)


def _prefix(value: str | None) -> str | None:
    return value.strip().upper() if isinstance(value, str) else value


@frozen
class OrderFilter:
    """What to find; every criterion given must hold (AND). The default finds every order.

    ``statuses`` matches any of them; ``created_from``/``created_to`` bound ``created_at`` as
    ``[from, to)``; ``min_amount``/``max_amount`` bound the payable amount (inclusive) and, since
    amounts of different currencies do not compare, also select orders in their currency;
    ``sku`` finds orders with a line of that product; ``flag`` orders carrying that flag;
    ``number_prefix`` orders whose number starts with it (case-insensitive).
    """

    statuses: tuple[OrderStatus, ...] = field(default=(), converter=_statuses)
    created_from: datetime | None = None
    created_to: datetime | None = None
    channel: str | None = None
    customer_id: int | None = None
    sku: str | None = None
    min_amount: Money | None = None
    max_amount: Money | None = None
    flag: str | None = None
    number_prefix: str | None = field(default=None, converter=_prefix)
    special: bool | None = None

    def __attrs_post_init__(self) -> None:
        _aware(self.created_from, "created_from")
        _aware(self.created_to, "created_to")
        if (
            self.created_from is not None
            and self.created_to is not None
            and self.created_from > self.created_to
        ):
            raise InvalidField(
                f"created_from ({self.created_from.isoformat()}) is after created_to "
                f"({self.created_to.isoformat()})",
                field="created_from",
            )
        for name, limit in (("channel", 32), ("sku", 64)):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, str) or not value.strip() or len(value) > limit
            ):
                raise InvalidField(f"{name} must be 1 to {limit} characters", field=name)
        if self.customer_id is not None and (
            isinstance(self.customer_id, bool)
            or not isinstance(self.customer_id, int)
            or self.customer_id < 1
        ):
            raise InvalidField("customer_id must be a whole number ≥ 1", field="customer_id")
        self._check_amounts()
        if self.flag is not None:
            validate_tag(self.flag)
        if self.number_prefix is not None and not _NUMBER_PREFIX.match(self.number_prefix):
            raise InvalidField(
                f"order number prefix {self.number_prefix!r} must be 1 to 32 letters or digits",
                field="number_prefix",
                value=self.number_prefix,
            )
        if self.special is not None and not isinstance(self.special, bool):
            raise InvalidField("special must be true, false or not given", field="special")

    def _check_amounts(self) -> None:
        for name in ("min_amount", "max_amount"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, Money):
                raise InvalidAmount(f"{name} must be Money", field=name)
            if value.is_negative():
                raise InvalidAmount(f"{name} must not be negative ({value})", field=name)
        low, high = self.min_amount, self.max_amount
        if low is not None and high is not None:
            if low.currency != high.currency:
                raise CurrencyMismatch(
                    f"min_amount is in {low.currency.code}, max_amount in {high.currency.code}; "
                    "an amount range is in one currency",
                    field="max_amount",
                )
            if low > high:
                raise InvalidField(
                    f"min_amount {low} is more than max_amount {high}", field="min_amount"
                )

    @property
    def currency(self) -> Currency | None:
        """The currency an amount range selects (None without an amount range)."""
        bound = self.min_amount or self.max_amount
        return None if bound is None else bound.currency


# ---------------------------------------------------------------------------------- cursor
_CURSOR_VERSION: Final = 1
_CURSOR_BODY: Final = struct.Struct(">BqQ")  # version, created_at (µs since epoch), id
_CHECK_LEN: Final = 4
_CURSOR_BYTES: Final = _CURSOR_BODY.size + _CHECK_LEN


def _check(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_CHECK_LEN, person=b"ordercore-cursor").digest()


@frozen
class Cursor:
    """Where a page ends: the ``(created_at, id)`` of its last order.

    :meth:`encode` makes the opaque text handed to callers (URL-safe); :meth:`decode` refuses
    anything that it did not make, including a cursor with a character changed.
    """

    created_at: datetime
    id: int

    def encode(self) -> str:
        moment = self.created_at.astimezone(timezone.utc) - _EPOCH
        micros = (moment.days * 86_400 + moment.seconds) * 1_000_000 + moment.microseconds
        body = _CURSOR_BODY.pack(_CURSOR_VERSION, micros, self.id)
        return base64.urlsafe_b64encode(body + _check(body)).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        def refuse() -> InvalidField:
            shown = text if isinstance(text, str) and len(text) <= 60 else "given"
            return InvalidField(
                f"cursor {shown!r} is not one this command gave (it is malformed or was "
                "altered); list again without a cursor",
                field="cursor",
            )

        if not isinstance(text, str) or not 0 < len(text) <= 64:
            raise refuse()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise refuse() from None
        if len(raw) != _CURSOR_BYTES:
            raise refuse()
        body, check = raw[: _CURSOR_BODY.size], raw[_CURSOR_BODY.size :]
        if check != _check(body):
            raise refuse()
        version, micros, order_id = _CURSOR_BODY.unpack(body)
        if version != _CURSOR_VERSION or order_id < 1:
            raise refuse()
        try:
            created_at = _EPOCH + timedelta(microseconds=micros)
        except OverflowError:
            raise refuse() from None
        cursor = cls(created_at, order_id)
        if cursor.encode() != text:  # one canonical spelling only
            raise refuse()
        return cursor


# ----------------------------------------------------------------------------------- pages
@frozen
class OrderSummary:
    """One row of the order list."""

    number: str
    status: OrderStatus
    currency: Currency
    customer_id: int
    payable: Money
    paid: Money
    refunded: Money
    channel: str | None
    created_at: datetime
    special: bool
    flags: tuple[str, ...] = ()


@frozen
class Page:
    """One page of the order list, newest first. ``next_cursor`` is None on the last page."""

    items: tuple[OrderSummary, ...]
    next_cursor: str | None = None
