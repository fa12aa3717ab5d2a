"""The order list query: an :class:`~ordercore._orders.listing.OrderFilter` applied with
keyset paging.

Orders come newest first, ``ORDER BY created_at DESC, id DESC``. A page after a cursor
``(c, i)`` adds ``created_at <= c AND (created_at < c OR id < i)``: the same set as the row
comparison ``(created_at, id) < (c, i)``, but spelt so that PostgreSQL, SQLite and MariaDB
all turn ``created_at <= c`` into the start of an index range (MariaDB does not use indexes for
row-value comparisons; PostgreSQL and SQLite would not for a bare ``OR``), so a page a
million orders deep costs what the first page costs. There is no OFFSET anywhere.

Status, customer, channel and a date range have ``(column, created_at, id)`` indexes (or
``(created_at, id)`` itself), which hand out rows already in list order: a page reads about
``limit`` index entries whatever the table's size. (On MariaDB the page query names that
index, see :func:`_walk_index`.)

A sku, a flag, an amount range and an order number prefix have no such index (a sku or a flag
lives in another table; an amount or a number range is sorted by amount or number, not by
time), and the right plan depends on how many orders match: few are best fetched by id and
sorted; many are best met while walking the time index. Planners guess that number badly
here (SQLite keeps no histograms; PostgreSQL assumes matches are spread evenly), so
:func:`list_orders` measures it: a *bounded probe* counts at most :data:`CANDIDATE_LIMIT` + 1
entries of the filter's own index (``ix_order_lines_sku``, ``ix_order_tags_tag``,
``ix_orders_payable``, the unique number index). If there are no more than the limit, the
page is chosen among those ids (``id IN (...)``); if there are more, the filter is written so
that only a walk of the time index serves it (a per-row probe, ``payable_minor + 0``), and the
walk meets a match every ``table size / limit`` rows on average. A sku and a flag that are
both common get one more probe, of the pair. Either way a page costs a few thousand index
entries at most, as long as the matches are spread over time.

Order numbers are the exception: they start with their creation time, so a short prefix (a
month) matches a block of time that a walk might reach only after a year of newer orders;
many matches of a number prefix are collected through the number index and sorted instead.
``docs/performance.md`` has the figures, and the limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    true,
)

from ordercore._errors import InvalidField
from ordercore._money import Money, get_currency
from ordercore._numbers import created_before
from ordercore._orders.listing import Cursor, OrderFilter, OrderSummary, Page
from ordercore._state import OrderStatus

from .tables import Tables

__all__ = [
    "CANDIDATE_LIMIT",
    "MAX_LIMIT",
    "MYSQL_CANDIDATE_LIMIT",
    "SQLITE_CANDIDATE_LIMIT",
    "list_orders",
    "order_conditions",
]

#: The largest page :func:`list_orders` returns.
MAX_LIMIT = 1000
#: A filter matching at most this many rows is applied by fetching their ids first. This is
#: the break-even point measured on PostgreSQL at a million orders (docs/performance.md):
#: a step of the walk (an index probe) costs about a third of fetching a row by id.
CANDIDATE_LIMIT = 4500
#: On SQLite a walk step costs a fifth of a fetch by id, which moves the break-even point down.
SQLITE_CANDIDATE_LIMIT = 2000
#: MariaDB/MySQL turn an IN list of more than 1000 values into a temporary table, and PyMySQL
#: reads ids slowly.
MYSQL_CANDIDATE_LIMIT = 1000
_DIALECT_LIMITS = {
    "sqlite": lambda: SQLITE_CANDIDATE_LIMIT,
    "mysql": lambda: MYSQL_CANDIDATE_LIMIT,
    "mariadb": lambda: MYSQL_CANDIDATE_LIMIT,
}
_NUMBER_LEN = 32  # orders.number is String(32)


def _number_range(tables: Tables, prefix: str) -> list[ColumnElement[bool]]:
    # [0-9A-Z] only (OrderFilter checks it), and "Z" sorts after every one of them, in any
    # collation: an index range that every backend can use, whatever its collation.
    number = tables.orders.c.number
    return [number >= prefix, number <= prefix + "Z" * max(0, _NUMBER_LEN - len(prefix))]


def _number_like(tables: Tables, prefix: str) -> ColumnElement[bool]:
    return tables.orders.c.number.like(prefix + "%")


def _amount(tables: Tables, flt: OrderFilter, *, indexable: bool) -> list[ColumnElement[bool]]:
    payable: Any = tables.orders.c.payable_minor
    if not indexable:
        payable = payable + 0  # same values, but no index range can serve it
    where = []
    if flt.min_amount is not None:
        where.append(payable >= flt.min_amount.to_minor())
    if flt.max_amount is not None:
        where.append(payable <= flt.max_amount.to_minor())
    return where


def _sku_exists(tables: Tables, sku: str) -> ColumnElement[bool]:
    lines = tables.order_lines.c
    return exists().where(and_(lines.sku == sku, lines.order_id == tables.orders.c.id))


def _flag_exists(tables: Tables, flag: str) -> ColumnElement[bool]:
    tags = tables.order_tags.c
    return exists().where(and_(tags.tag == flag, tags.order_id == tables.orders.c.id))


def _has_child(table: Table, column: str, value: str, order_id: Any) -> ColumnElement[bool]:
    """``(SELECT 1 FROM table WHERE column = value AND order_id = orders.id LIMIT 1) IS NOT
    NULL``: an EXISTS that stays a probe per row. Planners turn a plain EXISTS into a
    semi-join, which MariaDB runs by copying every matching child row into a temporary table
    and PostgreSQL by splitting the walk over parallel workers: both slower than walking the
    time index and probing ``(column, order_id)`` for each order, once the match is common."""
    probe = (
        select(literal(1))
        .where(and_(table.c[column] == value, table.c.order_id == order_id))
        .limit(1)
        .scalar_subquery()
    )
    return probe.is_not(None)


def _direct_conditions(
    tables: Tables, flt: OrderFilter, cursor: Cursor | None = None
) -> list[ColumnElement[bool]]:
    """Conditions whose index (if any) yields rows in list order.

    ``created_to`` is left out when the ``cursor`` bound is tighter: SQLite starts its index
    range at one of two upper bounds without comparing them, and would otherwise walk from
    the end of the period down to the cursor on every page.
    """
    o = tables.orders.c
    where: list[ColumnElement[bool]] = []
    if len(flt.statuses) == 1:
        where.append(o.status == flt.statuses[0].value)
    elif flt.statuses:
        where.append(o.status.in_([s.value for s in flt.statuses]))
    if flt.created_from is not None:
        where.append(o.created_at >= flt.created_from)
    if flt.created_to is not None and (cursor is None or cursor.created_at >= flt.created_to):
        where.append(o.created_at < flt.created_to)
    if flt.number_prefix is not None:
        # Numbers start with a stamp never earlier than the creation time, so a prefix bounds
        # the creation time from above: the time index starts at the prefix's period, not
        # at the newest order.
        before = created_before(flt.number_prefix)
        if (
            before is not None
            and (flt.created_to is None or before < flt.created_to)
            and (cursor is None or cursor.created_at >= before)
        ):
            where.append(o.created_at < before)
    if flt.channel is not None:
        where.append(o.channel == flt.channel)
    if flt.customer_id is not None:
        where.append(o.customer_id == flt.customer_id)
    if flt.special is not None:
        where.append(o.special == flt.special)
    if flt.currency is not None:
        where.append(o.currency == flt.currency.code)
    return where


def order_conditions(tables: Tables, flt: OrderFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions on ``tables.orders`` that select the orders ``flt`` describes
    (the plain statement of the filter, without the probing :func:`list_orders` does)."""
    where = _direct_conditions(tables, flt)
    where += _amount(tables, flt, indexable=True)
    if flt.number_prefix is not None:
        where += [
            *_number_range(tables, flt.number_prefix),
            _number_like(tables, flt.number_prefix),
        ]
    if flt.sku is not None:
        where.append(_sku_exists(tables, flt.sku))
    if flt.flag is not None:
        where.append(_flag_exists(tables, flt.flag))
    return where


def _probe(conn: Connection, query: Select[Any], *, count_first: bool = True) -> set[int] | None:
    """The ids ``query`` selects if there are at most CANDIDATE_LIMIT of them, else None.

    With ``count_first`` the server counts up to the bound first (reading index entries,
    sending one number), so that a common value costs no transfer of ids it would not use;
    a query that is dear to run twice fetches up to the bound at once instead.
    """
    bound = CANDIDATE_LIMIT
    dialect_limit = _DIALECT_LIMITS.get(conn.dialect.name)
    if dialect_limit is not None:
        bound = min(bound, dialect_limit())
    if not count_first:
        ids = conn.execute(query.limit(bound + 1)).scalars().all()
        return None if len(ids) > bound else {int(i) for i in ids}
    counted = select(func.count()).select_from(query.limit(bound + 1).subquery("probe"))
    if conn.execute(counted).scalar_one() > bound:
        return None
    return {int(i) for i in conn.execute(query).scalars()}


def _collect(
    conn: Connection, query: Select[Any], candidates: list[set[int]], *, count_first: bool = True
) -> bool:
    """Probe ``query``: add its ids to ``candidates`` if they are few, else return True."""
    found = _probe(conn, query, count_first=count_first)
    if found is None:
        return True
    candidates.append(found)
    return False


def _walk_index(tables: Tables, flt: OrderFilter) -> str:
    """The ``(..., created_at, id)`` index a walk should follow.

    MariaDB needs to be told (``FORCE INDEX``): for ``status = x`` with a cursor it prefers
    reading every ``x`` entry from the newest one down (``ref`` access) to starting at the
    cursor (``range`` access), so a deep page would read all the newer orders first.
    """
    if flt.customer_id is not None:
        return tables.name("ix_orders_customer_created")
    if flt.channel is not None:
        return tables.name("ix_orders_channel_created")
    if len(flt.statuses) == 1:
        return tables.name("ix_orders_status_created")
    return tables.name("ix_orders_created")


def _planned_conditions(
    conn: Connection, tables: Tables, flt: OrderFilter, cursor: Cursor | None
) -> tuple[list[ColumnElement[bool]], bool] | None:
    """The conditions of the page query after the bounded probes, and whether the page comes
    from a walk of a time index (None: nothing matches)."""
    o = tables.orders.c
    where = _direct_conditions(tables, flt, cursor)
    candidates: list[set[int]] = []

    def probe(query: Select[Any], few: Sequence[ColumnElement[bool]], many: Sequence[Any]) -> None:
        found = _probe(conn, query)
        if found is None:
            where.extend(many)
        else:
            candidates.append(found)
            where.extend(few)

    tags, lines = tables.order_tags.c, tables.order_lines.c
    flag, sku = flt.flag, flt.sku
    flag_many = flag is not None and _collect(
        conn, select(tags.order_id).where(tags.tag == flag), candidates
    )
    sku_many = sku is not None and _collect(
        conn, select(lines.order_id).where(lines.sku == sku), candidates
    )
    if flag_many and sku_many:
        # Two common criteria can be rare together: walking the time index would then probe
        # both for every order it passes. Probe the pair, driven by the (rarer) flag.
        pair = select(tags.order_id).where(
            tags.tag == flag,
            exists().where(and_(lines.sku == sku, lines.order_id == tags.order_id)),
        )
        flag_many = sku_many = _collect(conn, pair, candidates, count_first=False)
    # Flag before sku: rarer as a rule, so a walk probes order_lines less often.
    if flag_many and flag is not None:
        where.append(_has_child(tables.order_tags, "tag", flag, o.id))
    if sku_many and sku is not None:
        where.append(_has_child(tables.order_lines, "sku", sku, o.id))
    if flt.currency is not None:
        amount = _amount(tables, flt, indexable=True)
        probe(select(o.id).where(*amount), amount, _amount(tables, flt, indexable=False))
    if flt.number_prefix is not None:
        # Numbers start with their creation time, so a prefix's matches are bunched in time:
        # walking the time index could pass a year of orders before the first one. When
        # there are many, the number index still collects them, and they get sorted.
        # When the prefix bounds the creation time (see _direct_conditions), many matches
        # sit just below that bound: walking the time index from it finds a page at once,
        # where collecting every match through the number index would sort them all.
        number_range = _number_range(tables, flt.number_prefix)
        like = _number_like(tables, flt.number_prefix)
        walk_from_bound = created_before(flt.number_prefix) is not None
        many = [like] if walk_from_bound else [*number_range, like]
        probe(select(o.id).where(*number_range), [like], many)
    if candidates:
        ids = set.intersection(*candidates)
        if not ids:
            return None
        # Literal integers: no limit on bound parameters, and they come from our own rows.
        where.append(o.id.in_(bindparam("candidates", sorted(ids), literal_execute=True)))
        return where, False
    return where, flt.number_prefix is None or created_before(flt.number_prefix) is not None


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

    Queries: a bounded probe for each sku, flag, amount or number-prefix criterion (see the
    module's docstring), the page itself (``limit + 1`` rows, to know whether another page
    follows), then the flags of exactly the page's orders.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidField(f"limit must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    position = None if cursor is None else Cursor.decode(cursor)
    planned = _planned_conditions(conn, tables, flt, position)
    if planned is None:
        return Page(items=(), next_cursor=None)
    where, walk = planned
    if position is not None:
        where.append(_after(tables, position))
    o = tables.orders.c
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
    if walk and conn.dialect.name in ("mysql", "mariadb"):
        query = query.with_hint(
            tables.orders, f"FORCE INDEX ({_walk_index(tables, flt)})", conn.dialect.name
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
