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

A sku or a flag lives in another table, but each order line and each flag carries a copy of
its order's ``created_at`` (``order_created_at``, migration 0009), indexed as ``(sku,
order_created_at, order_id, position)`` and ``(tag, order_created_at, order_id)``: the page
walks that index in list order and joins each entry to its order, so it reads about ``limit``
entries too, however many orders match (an order with two lines of the sku is met twice and
counted once). When the filter also names a status, a customer or a channel, the walk could
instead pass many entries whose order is not of that kind; a *bounded probe* (below) then
tells whether those orders are few, and if so the page walks their time index and probes the
sku or the flag per order. A sku and a flag together walk the flag's index (the sku's if
the flag is common and the sku is not) and probe the other.

An amount range and an order number prefix have no index in list order (an amount or a number
range is sorted by amount or number, not by time), and the right plan depends on how many
orders match: few are best fetched by id and sorted; many are best met while walking the time
index. Planners guess that number badly here (SQLite keeps no histograms; PostgreSQL assumes
matches are spread evenly), so :func:`list_orders` measures it: a *bounded probe* counts at
most :data:`CANDIDATE_LIMIT` + 1 entries of the filter's own index (``ix_orders_payable``,
the unique number index). If there are no more than the limit, the page is chosen among those
ids (``id IN (...)``); if there are more, the filter is written so that only a walk of the
time index serves it (a per-row test, ``payable_minor + 0``), and the walk meets a match every
``table size / limit`` rows on average.

Order numbers are the exception: they start with their creation time, so a short prefix (a
month) matches a block of time that a walk might reach only after a year of newer orders;
many matches of a number prefix are collected through the number index and sorted instead.
``docs/performance.md`` has the figures, and the limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import frozen
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


@frozen
class _Child:
    """A filter on a child table of orders: its rows with ``column = value``, walked through
    the ``(column, order_created_at, order_id, ...)`` index named ``index``."""

    table: Table
    column: str
    value: str
    index: str

    def exists(
        self, created: Any, order_id: Any, *also: ColumnElement[bool]
    ) -> ColumnElement[bool]:
        """``EXISTS`` a row of the order whose ``created_at`` and ``id`` are ``created`` and
        ``order_id``, with the conditions ``also`` on the child's columns. PostgreSQL may run
        it as a merge semi-join of two child indexes walked in list order (see
        :func:`_plan`)."""
        c = self.table.c
        return exists().where(
            and_(
                c[self.column] == self.value,
                c.order_created_at == created,
                c.order_id == order_id,
                *also,
            )
        )

    def probe(self, created: Any, order_id: Any) -> ColumnElement[bool]:
        """``(SELECT 1 FROM child WHERE column = value AND order_created_at = created AND
        order_id = order_id LIMIT 1) IS NOT NULL``: an EXISTS that stays a probe per row (one
        descent of the index, by its whole key). Planners turn a plain EXISTS into a
        semi-join, which MariaDB runs by copying every matching child row into a temporary
        table and PostgreSQL by splitting a walk over parallel workers: both slower than a
        probe for each order a walk passes, once the match is common. ``created`` and
        ``order_id`` are the orders' columns, or the copies in the child index a page walks:
        then the probe is made before the order's row is read."""
        c = self.table.c
        found = (
            select(literal(1))
            .where(
                and_(
                    c[self.column] == self.value,
                    c.order_created_at == created,
                    c.order_id == order_id,
                )
            )
            .limit(1)
            .scalar_subquery()
        )
        return found.is_not(None)

    def first_of_order(self) -> ColumnElement[bool] | None:
        """For a walk of order_lines: true on the first line of the sku in its order only (an
        order may have two lines of one sku), else None (a flag is set once per order)."""
        if "position" not in self.table.c:
            return None
        c = self.table.c
        other = self.table.alias("same_order")
        earlier = (
            select(literal(1))
            .where(
                and_(
                    other.c[self.column] == c[self.column],
                    other.c.order_created_at == c.order_created_at,
                    other.c.order_id == c.order_id,
                    other.c.position < c.position,
                )
            )
            .limit(1)
            .scalar_subquery()
        )
        return earlier.is_(None)


def _children(tables: Tables, flt: OrderFilter) -> list[_Child]:
    """The flag and the sku criteria of ``flt``, the flag first (rarer as a rule)."""
    out = []
    if flt.flag is not None:
        out.append(
            _Child(tables.order_tags, "tag", flt.flag, tables.name("ix_order_tags_tag_created"))
        )
    if flt.sku is not None:
        out.append(
            _Child(tables.order_lines, "sku", flt.sku, tables.name("ix_order_lines_sku_created"))
        )
    return out


def _time_conditions(
    flt: OrderFilter, created: Any, cursor: Cursor | None
) -> list[ColumnElement[bool]]:
    """The bounds on the creation time, on the column ``created`` (``orders.created_at`` or
    a child's copy of it, whichever index the page walks).

    ``created_to`` is left out when the ``cursor`` bound is tighter: SQLite starts its index
    range at one of two upper bounds without comparing them, and would otherwise walk from
    the end of the period down to the cursor on every page.
    """
    where: list[ColumnElement[bool]] = []
    if flt.created_from is not None:
        where.append(created >= flt.created_from)
    if flt.created_to is not None and (cursor is None or cursor.created_at >= flt.created_to):
        where.append(created < flt.created_to)
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
            where.append(created < before)
    return where


def _indexed_conditions(tables: Tables, flt: OrderFilter) -> list[ColumnElement[bool]]:
    """Status, channel, customer: the conditions with a ``(column, created_at, id)`` index."""
    o = tables.orders.c
    where: list[ColumnElement[bool]] = []
    if len(flt.statuses) == 1:
        where.append(o.status == flt.statuses[0].value)
    elif flt.statuses:
        where.append(o.status.in_([s.value for s in flt.statuses]))
    if flt.channel is not None:
        where.append(o.channel == flt.channel)
    if flt.customer_id is not None:
        where.append(o.customer_id == flt.customer_id)
    return where


def _direct_conditions(
    tables: Tables, flt: OrderFilter, cursor: Cursor | None = None, created: Any = None
) -> list[ColumnElement[bool]]:
    """Conditions on the orders row itself (times on ``created``, by default the orders'
    ``created_at``); those with an index yield rows in list order."""
    o = tables.orders.c
    where = _indexed_conditions(tables, flt)
    where += _time_conditions(flt, o.created_at if created is None else created, cursor)
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
    o = tables.orders.c
    where += [child.exists(o.created_at, o.id) for child in _children(tables, flt)]
    return where


def _bound(conn: Connection) -> int:
    bound = CANDIDATE_LIMIT
    dialect_limit = _DIALECT_LIMITS.get(conn.dialect.name)
    if dialect_limit is not None:
        bound = min(bound, dialect_limit())
    return bound


def _few(conn: Connection, query: Select[Any]) -> bool:
    """Whether ``query`` selects at most the probe limit of rows: the server counts up to
    the bound (reading index entries, sending one number)."""
    bound = _bound(conn)
    counted = select(func.count()).select_from(query.limit(bound + 1).subquery("probe"))
    return bool(conn.execute(counted).scalar_one() <= bound)


def _probe(conn: Connection, query: Select[Any]) -> set[int] | None:
    """The ids ``query`` selects if there are at most CANDIDATE_LIMIT of them, else None
    (counted first, so that a common value costs no transfer of ids it would not use)."""
    if not _few(conn, query):
        return None
    return {int(i) for i in conn.execute(query).scalars()}


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


def _driver(
    conn: Connection, tables: Tables, flt: OrderFilter, children: Sequence[_Child]
) -> _Child | None:
    """The child index the page should walk, or None to walk the orders' own time index.

    The walk of a child meets an order of the wrong status, customer or channel for every
    entry it passes; when those orders are few (a bounded probe of their index says so),
    walking their time index is bounded by their number instead. Of a flag and a sku, the
    walk follows the flag unless the flag is common and the sku is not.
    """
    if not children:
        return None
    o = tables.orders.c
    indexed = _indexed_conditions(tables, flt)
    if indexed and _few(
        conn, select(o.id).where(*indexed, *_time_conditions(flt, o.created_at, None))
    ):
        return None
    if len(children) == 1:
        return children[0]
    flag, sku = children
    for child in (flag, sku):
        c = child.table.c
        if _few(conn, select(c.order_id).where(c[child.column] == child.value)):
            return child
    return flag


@frozen
class _Plan:
    """The page query's conditions, the child index it walks (None: the orders table's own
    index, or the candidate ids), and whether it walks an index in list order at all."""

    where: list[ColumnElement[bool]]
    driver: _Child | None
    walk: bool


def _plan(
    conn: Connection,
    tables: Tables,
    flt: OrderFilter,
    cursor: Cursor | None,
    *,
    orders_only: bool = False,
) -> _Plan | None:
    """The page query after the bounded probes (None: nothing matches). ``orders_only``: a
    query on orders alone, never a walk of a child index (a sku or a flag with few orders
    gives candidate ids, with many a probe per order)."""
    o = tables.orders.c
    candidates: list[set[int]] = []
    per_row: list[ColumnElement[bool]] = []

    def probe(query: Select[Any], few: Sequence[ColumnElement[bool]], many: Sequence[Any]) -> None:
        found = _probe(conn, query)
        if found is None:
            per_row.extend(many)
        else:
            candidates.append(found)
            per_row.extend(few)

    if flt.currency is not None:
        amount = _amount(tables, flt, indexable=True)
        probe(select(o.id).where(*amount), amount, _amount(tables, flt, indexable=False))
    bounded_number = True
    if flt.number_prefix is not None:
        # Numbers start with their creation time, so a prefix's matches are bunched in time:
        # walking the time index could pass a year of orders before the first one. When
        # there are many, the number index still collects them, and they get sorted.
        # When the prefix bounds the creation time (see _time_conditions), many matches
        # sit just below that bound: walking the time index from it finds a page at once,
        # where collecting every match through the number index would sort them all.
        number_range = _number_range(tables, flt.number_prefix)
        like = _number_like(tables, flt.number_prefix)
        bounded_number = created_before(flt.number_prefix) is not None
        many = [like] if bounded_number else [*number_range, like]
        probe(select(o.id).where(*number_range), [like], many)
    children = _children(tables, flt)
    if orders_only:
        common = []
        for child in children:
            c = child.table.c
            found = _probe(conn, select(c.order_id).where(c[child.column] == child.value))
            if found is None:
                common.append(child)
            else:
                candidates.append(found)
        children = common
    if candidates:
        ids = set.intersection(*candidates)
        if not ids:
            return None
        # Literal integers: no limit on bound parameters, and they come from our own rows.
        where = [
            *_direct_conditions(tables, flt, cursor),
            *per_row,
            o.id.in_(bindparam("candidates", sorted(ids), literal_execute=True)),
            *[child.probe(o.created_at, o.id) for child in children],
        ]
        return _Plan(where, None, walk=False)
    driver = None if orders_only or not bounded_number else _driver(conn, tables, flt, children)
    if driver is None:
        where = [
            *_direct_conditions(tables, flt, cursor),
            *per_row,
            *[child.probe(o.created_at, o.id) for child in children],
        ]
        return _Plan(where, None, walk=bounded_number)
    c = driver.table.c
    where = [
        c[driver.column] == driver.value,
        *_direct_conditions(tables, flt, cursor, c.order_created_at),
        *per_row,
    ]
    for other in children:
        if other is driver:
            continue
        if conn.dialect.name == "postgresql":
            # Both indexes are in list order: PostgreSQL merges them (a merge semi-join reads
            # each range once, ~20 buffers where a probe per flag entry costs 3). The time
            # bounds are repeated on the other child, or its range would start at the newest.
            bounds = _time_conditions(flt, other.table.c.order_created_at, cursor)
            if cursor is not None:
                bounds.append(other.table.c.order_created_at <= cursor.created_at)
            where.append(other.exists(c.order_created_at, c.order_id, *bounds))
        else:
            where.append(other.probe(c.order_created_at, c.order_id))
    first = driver.first_of_order()
    if first is not None:
        where.append(first)
    return _Plan(where, driver, walk=True)


def _after_key(created: Any, order_id: Any, cursor: Cursor) -> ColumnElement[bool]:
    return and_(
        created <= cursor.created_at,
        or_(created < cursor.created_at, order_id < cursor.id),
    )


def _after(tables: Tables, cursor: Cursor) -> ColumnElement[bool]:
    """The orders after ``cursor`` in list order (for a query on orders alone)."""
    return _after_key(tables.orders.c.created_at, tables.orders.c.id, cursor)


def _planned_conditions(
    conn: Connection, tables: Tables, flt: OrderFilter, cursor: Cursor | None
) -> tuple[list[ColumnElement[bool]], bool] | None:
    """The conditions of a query on orders alone that selects the orders ``flt`` describes
    after ``cursor``'s time bounds, and whether it walks a time index (None: nothing
    matches). The export (``export.py``) reads its chunks with it."""
    plan = _plan(conn, tables, flt, cursor, orders_only=True)
    return None if plan is None else (plan.where, plan.walk)


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

    Queries: a bounded probe for an amount or a number-prefix criterion, and for a sku or a
    flag combined with a status, customer or channel (see the module's docstring), the page
    itself (``limit + 1`` rows, to know whether another page follows), then the flags of
    exactly the page's orders.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidField(f"limit must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    position = None if cursor is None else Cursor.decode(cursor)
    plan = _plan(conn, tables, flt, position)
    if plan is None:
        return Page(items=(), next_cursor=None)
    o = tables.orders.c
    where = list(plan.where)
    if plan.driver is None:
        created, order_id = o.created_at, o.id
    else:
        created, order_id = plan.driver.table.c.order_created_at, plan.driver.table.c.order_id
    if position is not None:
        where.append(_after_key(created, order_id, position))
    query = select(
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
    mysql = conn.dialect.name in ("mysql", "mariadb")
    if plan.driver is not None:
        child = plan.driver.table
        query = query.select_from(child.join(tables.orders, o.id == child.c.order_id))
        if mysql:
            # The child's index in list order, then each order by its primary key.
            query = query.prefix_with("STRAIGHT_JOIN", dialect=conn.dialect.name).with_hint(
                child, f"FORCE INDEX ({plan.driver.index})", conn.dialect.name
            )
    elif plan.walk and mysql:
        query = query.with_hint(
            tables.orders, f"FORCE INDEX ({_walk_index(tables, flt)})", conn.dialect.name
        )
    query = (
        query.where(and_(true(), *where)).order_by(created.desc(), order_id.desc()).limit(limit + 1)
    )
    rows = conn.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    flags: dict[int, list[str]] = {row.id: [] for row in rows}
    if rows:
        tags = tables.order_tags.c
        for order_id_, tag in conn.execute(
            select(tags.order_id, tags.tag)
            .where(tags.order_id.in_(list(flags)))
            .order_by(tags.order_id, tags.tag)
        ):
            flags[order_id_].append(tag)
    items = tuple(_summary(row, tuple(flags[row.id])) for row in rows)
    next_cursor = Cursor(rows[-1].created_at, rows[-1].id).encode() if more else None
    return Page(items=items, next_cursor=next_cursor)
