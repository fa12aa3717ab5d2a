"""The order list query: an :class:`~ordercore._listing.OrderFilter` applied with keyset paging.

Orders come newest first, ``ORDER BY created_at DESC, id DESC``. A page after a cursor
``(c, i)`` adds ``created_at <= c AND (created_at < c OR id < i)``: the same set as the row
comparison ``(created_at, id) < (c, i)``, but spelt so that PostgreSQL, SQLite and MariaDB
all turn ``created_at <= c`` into the start of an index range (MariaDB does not use indexes for
row-value comparisons; PostgreSQL and SQLite would not for a bare ``OR``), so a page a
million orders deep costs what the first page costs. There is no OFFSET anywhere.

Each filter maps onto an index of ``tables.py``: status, customer and channel onto their
``(column, created_at, id)`` indexes, a date range onto ``(created_at, id)``, a sku or a flag
onto ``EXISTS`` probes of ``(sku, order_id)`` / ``(tag, order_id)``, an order number prefix onto
the unique index on ``number`` (as a range, which every backend and collation can use; the
``LIKE`` beside it only makes the match exact).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, or_, select, true

from ordercore._errors import InvalidField
from ordercore._listing import Cursor, OrderFilter, OrderSummary, Page
from ordercore._money import Money, get_currency
from ordercore._state import OrderStatus

from .tables import Tables

__all__ = ["MAX_LIMIT", "list_orders", "order_conditions"]

#: The largest page :func:`list_orders` returns.
MAX_LIMIT = 1000
_NUMBER_LEN = 32  # orders.number is String(32)


def order_conditions(tables: Tables, flt: OrderFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions on ``tables.orders`` that select the orders ``flt`` describes."""
    o = tables.orders.c
    where: list[ColumnElement[bool]] = []
    if len(flt.statuses) == 1:
        where.append(o.status == flt.statuses[0].value)
    elif flt.statuses:
        where.append(o.status.in_([s.value for s in flt.statuses]))
    if flt.created_from is not None:
        where.append(o.created_at >= flt.created_from)
    if flt.created_to is not None:
        where.append(o.created_at < flt.created_to)
    if flt.channel is not None:
        where.append(o.channel == flt.channel)
    if flt.customer_id is not None:
        where.append(o.customer_id == flt.customer_id)
    if flt.special is not None:
        where.append(o.special == flt.special)
    currency = flt.currency
    if currency is not None:
        where.append(o.currency == currency.code)
        if flt.min_amount is not None:
            where.append(o.payable_minor >= flt.min_amount.to_minor())
        if flt.max_amount is not None:
            where.append(o.payable_minor <= flt.max_amount.to_minor())
    if flt.number_prefix is not None:
        prefix = flt.number_prefix
        # [0-9A-Z] only (OrderFilter checks it), and "Z" sorts after every one of them.
        where.append(o.number >= prefix)
        where.append(o.number <= prefix + "Z" * max(0, _NUMBER_LEN - len(prefix)))
        where.append(o.number.like(prefix + "%"))
    if flt.sku is not None:
        lines = tables.order_lines.c
        where.append(exists().where(and_(lines.sku == flt.sku, lines.order_id == o.id)))
    if flt.flag is not None:
        tags = tables.order_tags.c
        where.append(exists().where(and_(tags.tag == flt.flag, tags.order_id == o.id)))
    return where


def _after(tables: Tables, cursor: Cursor) -> ColumnElement[bool]:
    o = tables.orders.c
    return and_(
        o.created_at <= cursor.created_at,
        or_(o.created_at < cursor.created_at, o.id < cursor.id),
    )


def _summary(row: Any, flags: tuple[str, ...]) -> OrderSummary:
    currency = get_currency(row.currency)
    return OrderSummary(
        number=row.number,
        status=OrderStatus(row.status),
        currency=currency,
        customer_id=row.customer_id,
        payable=Money.from_minor(row.payable_minor, currency),
        paid=Money.from_minor(row.paid_minor, currency),
        refunded=Money.from_minor(row.refunded_minor, currency),
        channel=row.channel,
        created_at=row.created_at,
        special=bool(row.special),
        flags=flags,
    )


def list_orders(
    conn: Connection, tables: Tables, flt: OrderFilter, *, limit: int, cursor: str | None
) -> Page:
    """One page of the orders ``flt`` selects, newest first, starting after ``cursor`` (a
    ``next_cursor`` from an earlier page of the list, or None for the first page).

    Two queries: the page's orders (``limit + 1`` rows, to know whether another page
    follows), then the flags of exactly those orders.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidField(f"limit must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    o = tables.orders.c
    where = order_conditions(tables, flt)
    if cursor is not None:
        where.append(_after(tables, Cursor.decode(cursor)))
    query = (
        select(
            o.id,
            o.number,
            o.status,
            o.currency,
            o.customer_id,
            o.payable_minor,
            o.paid_minor,
            o.refunded_minor,
            o.channel,
            o.created_at,
            o.special,
        )
        .where(and_(true(), *where))
        .order_by(o.created_at.desc(), o.id.desc())
        .limit(limit + 1)
    )
    rows = conn.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    flags: dict[int, list[str]] = {row.id: [] for row in rows}
    if rows:
        tags = tables.order_tags.c
        for order_id, tag in conn.execute(
            select(tags.order_id, tags.tag)
            .where(tags.order_id.in_(list(flags)))
            .order_by(tags.order_id, tags.tag)
        ):
            flags[order_id].append(tag)
    items = tuple(_summary(row, tuple(flags[row.id])) for row in rows)
    next_cursor = Cursor(rows[-1].created_at, rows[-1].id).encode() if more else None
    return Page(items=items, next_cursor=next_cursor)
