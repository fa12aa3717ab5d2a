"""The export query: every order an :class:`OrderFilter` selects, in the order list's order,
read in keyset chunks on the reporting engine.

It is the order list's own query (``listing.py``: the same planned conditions, the same
``ORDER BY created_at DESC, id DESC``, the same cursor condition between chunks), with the
customer joined and, per chunk, only the detail rows the chosen fields need (lines, flags,
note counts, the settling payment, the last notification's address), each read by one
``IN`` query over the chunk's ids. At most one chunk of rows is in memory at a time,
whatever the number of orders: ``export == list`` by construction, and memory stays flat.

Speed. An export reads every column of every order it writes, so what costs is per row, not
per query. The columns are read as the driver gives them (no SQLAlchemy type processing:
``type_coerce`` to :class:`~sqlalchemy.types.NullType`), and the only conversion made in
Python is the one a writer needs: a stored time to a timezone-aware datetime, by the
cheapest means of each backend (``datetime.fromisoformat`` of SQLite's text, the UTC zone
put on MariaDB's naive value; PostgreSQL's driver already gives aware values). Each order
becomes one :class:`~ordercore._reports.fields.OrderRecord` (a named tuple), the query's
row first.

Isolation. :class:`ExportReader` holds one read-only transaction for the whole export: a
``REPEATABLE READ, READ ONLY`` snapshot on PostgreSQL and MariaDB, and on SQLite a deferred
``BEGIN`` (the connection option :data:`~.engine.READ_ONLY`), which in WAL
mode reads one snapshot without taking the write lock, so an export of a million orders
does not hold up the shop's writes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    String,
    and_,
    any_,
    bindparam,
    cast,
    func,
    null,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import NullType

from ordercore._money import get_currency
from ordercore._orders.listing import Cursor, OrderFilter
from ordercore._reports.fields import QUERY_COLUMNS, TIMES, TIMES_AT, OrderRecord

from .listing import _after, _planned_conditions, _walk_index
from .read_ahead import ReadAhead
from .reading import ReadSnapshot
from .tables import Tables

__all__ = ["CHUNK", "ExportReader", "iter_records"]

#: Orders read per query (measured in docs/performance.md#export: from about 2,000 on, the
#: per-query costs no longer show).
CHUNK: Final = 2000
_CUSTOMER: Final = {
    "customer_ref": "external_ref",
    "customer_name": "name",
    "customer_email": "email",
    "customer_phone": "phone",
}
_PAYMENT: Final = {
    "method": "method",
    "out_trade_no": "out_trade_no",
    "trade_no": "channel_trade_no",
}
_N: Final = len(QUERY_COLUMNS)
#: the columns every export reads: the keyset's, the number (notification addresses), the
#: currency (its decimals), the customer (the join to customers)
_ALWAYS: Final = frozenset({"id", "number", "created_at", "currency", "customer_id"})
_UTC: Final = timezone.utc
_NO_TIMES: Final = (None,) * (len(TIMES) - 1)
_NO_PAYMENT: Final = (None, None, None)
_PAY_AT: Final = QUERY_COLUMNS.index("method")
#: a chunk's ids (or order numbers), one parameter expanded at execution
_IDS: Final[BindParameter[Any]] = bindparam("ids", expanding=True)
#: PostgreSQL: the ids as one array parameter, sent as the array's text (``{1,2,3}``, made by
#: ``str.join``: psycopg would dump a list of 2,000 ints element by element in Python)
_ARRAYS: Final[dict[str, Any]] = {
    "id": cast(bindparam("ids", type_=String()), ARRAY(BigInteger)),
    "number": bindparam("ids", type_=ARRAY(String)),
}


def _sqlite_time(value: str) -> datetime:
    # UTCDateTime stores "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) in SQLite; parsing it with its
    # offset is several times cheaper than replace(tzinfo=...) afterwards
    return datetime.fromisoformat(value + "+00:00")


def _naive_utc_time(value: datetime) -> datetime:
    return value.replace(tzinfo=_UTC)


def _time_reader(dialect: str) -> Callable[[Any], datetime] | None:
    """How a stored time, as the driver gives it, becomes an aware datetime (None: as is)."""
    if dialect == "sqlite":
        return _sqlite_time
    if dialect in ("mysql", "mariadb"):
        return _naive_utc_time
    return None


class _Chunk:
    """The queries of one chunk: the next ``chunk`` orders in list order, as a derived table
    (so that LIMIT counts orders, whatever the joins), joined to their customers; and the
    detail rows the fields need — lines (in line order), the settling payment (the last
    succeeded attempt), flags, note counts, the last notification's address.

    On SQLite and PostgreSQL (``joined``) the lines and the payment are joined to the chunk
    in the same query (a row a line). SQLite only ever nests loops, so each join is an
    index probe per order. PostgreSQL would rather hash-join a whole table to a chunk of
    2,000 orders — a sequential scan of ``customers`` (15 ms a chunk at 100,000 customers,
    and growing with them), ``order_lines`` or ``payment_attempts`` for every chunk — so
    there the customer, the lines and the payment are ``LATERAL`` subqueries that cannot be
    flattened (``LIMIT``, ``OFFSET 0``): an index probe per order, whatever the tables'
    sizes. The other details (flags, note counts, addresses) are joined to the same derived
    table on SQLite, and read by one query of the chunk's ids elsewhere (an array on
    PostgreSQL, ``IN`` on MariaDB). MariaDB gets every detail that way: it may hash-join
    a whole detail table too, and serves the ``IN`` queries from the ``order_id``
    indexes."""

    def __init__(
        self,
        tables: Tables,
        flt: OrderFilter,
        where: list[Any],
        walk: bool,
        dialect: str,
        needs: Collection[str],
        chunk: int,
    ) -> None:
        o, c = tables.orders.c, tables.customers.c
        self.joined = joined = dialect in ("sqlite", "postgresql")
        lateral = dialect == "postgresql"
        self.dialect = dialect
        # what the fields read (a column no field reads is NULL: each costs, per order)
        read = _ALWAYS | set(needs)
        if "payment" not in needs or not joined:
            read -= set(_PAYMENT)
        own = [n for n in QUERY_COLUMNS if n in read and n not in _CUSTOMER and n not in _PAYMENT]
        inner = (
            select(*[o[n] for n in own])
            .where(and_(true(), *where))
            .order_by(o.created_at.desc(), o.id.desc())
            .limit(chunk)
        )
        if walk and dialect in ("mysql", "mariadb"):
            inner = inner.with_hint(
                tables.orders, f"FORCE INDEX ({_walk_index(tables, flt)})", dialect
            )
        k = self.k = inner.subquery("chunk")
        source: Any = k
        customer: Any = c
        if any(n in read for n in _CUSTOMER):
            if lateral:
                wanted = [c[_CUSTOMER[n]] for n in QUERY_COLUMNS if n in _CUSTOMER and n in read]
                one = select(*wanted).where(c.id == k.c.customer_id).limit(1).lateral("customer")
                customer = one.c
                source = source.join(one, true())
            else:
                source = source.join(tables.customers, c.id == k.c.customer_id)
        a = tables.payment_attempts
        payment: Any = a.c
        if "payment" in needs and joined and lateral:
            settling = (
                select(a.c.method, a.c.out_trade_no, a.c.channel_trade_no)
                .where(a.c.order_id == k.c.id, a.c.status == "succeeded")
                .order_by(a.c.id.desc())
                .limit(1)
                .lateral("settling")
            )
            payment = settling.c
            source = source.outerjoin(settling, true())
        elif "payment" in needs and joined:
            later = a.alias("settling")
            last = (
                select(func.max(later.c.id))
                .where(later.c.order_id == k.c.id, later.c.status == "succeeded")
                .scalar_subquery()
            )
            source = source.outerjoin(a, and_(a.c.order_id == k.c.id, a.c.id == last))
        columns: list[Any] = []
        for name in QUERY_COLUMNS:
            if name not in read:
                column: Any = null()
            elif name in _CUSTOMER:
                column = customer[_CUSTOMER[name]]
            elif name in _PAYMENT:
                column = payment[_PAYMENT[name]]
            else:
                column = k.c[name]
            columns.append(column)
        order: list[Any] = [k.c.created_at.desc(), k.c.id.desc()]
        if "lines" in needs and joined and lateral:
            ln = tables.order_lines.c
            line = (
                select(ln.sku, ln.name, ln.quantity, ln.position)
                .where(ln.order_id == k.c.id)
                .offset(0)  # not flattened into the join, so not hash-joined
                .lateral("line")
            )
            columns += [line.c.sku, line.c.name, line.c.quantity]
            source = source.outerjoin(line, true())
            order.append(line.c.position)
        elif "lines" in needs and joined:
            ln = tables.order_lines.c
            columns += [ln.sku, ln.name, ln.quantity]
            source = source.outerjoin(tables.order_lines, ln.order_id == k.c.id)
            order.append(ln.position)
        self.query = (
            select(*[type_coerce(col, NullType()) for col in columns])
            .select_from(source)
            .order_by(*order)
        )
        self.tables = tables

    def _of_chunk(self, query: Any, column: Any, key: str = "id") -> Any:
        """``query`` limited to the chunk's orders: joined to the chunk (SQLite), or an IN
        of the chunk's ids (or numbers) given as the ``ids`` parameter."""
        if self.dialect == "sqlite":
            return query.join_from(column.table, self.k, column == self.k.c[key])
        if self.dialect == "postgresql":  # one array parameter, not 2,000 of them
            return query.where(column == any_(_ARRAYS[key]))
        return query.where(column.in_(_IDS))

    def lines(self, conn: Connection, ids: Any) -> dict[int, list[tuple[str, str, int]]]:
        ln = self.tables.order_lines.c
        query = self._of_chunk(
            select(ln.order_id, ln.sku, ln.name, ln.quantity), ln.order_id
        ).order_by(ln.order_id, ln.position)
        out: dict[int, list[tuple[str, str, int]]] = {}
        for order_id, sku, name, quantity in conn.execute(query, {"ids": ids}).all():
            out.setdefault(order_id, []).append((sku, name, quantity))
        return out

    def payments(self, conn: Connection, ids: Any) -> dict[int, tuple[Any, Any, Any]]:
        a = self.tables.payment_attempts.c
        query = self._of_chunk(
            select(a.order_id, a.method, a.out_trade_no, a.channel_trade_no), a.order_id
        ).where(a.status == "succeeded")
        out: dict[int, tuple[Any, Any, Any]] = {}
        rows = conn.execute(query.order_by(a.order_id, a.id), {"ids": ids}).all()
        for order_id, method, out_trade_no, trade_no in rows:
            out[order_id] = (method, out_trade_no, trade_no)  # the last succeeded one wins
        return out

    def tags(self, conn: Connection, ids: Any) -> dict[int, list[str]]:
        tg = self.tables.order_tags.c
        query = self._of_chunk(select(tg.order_id, tg.tag), tg.order_id).order_by(tg.tag)
        out: dict[int, list[str]] = {}
        for order_id, tag in conn.execute(query, {"ids": ids}).all():
            out.setdefault(order_id, []).append(tag)
        return out

    def notes(self, conn: Connection, ids: Any) -> dict[int, int]:
        nt = self.tables.order_notes.c
        query = self._of_chunk(select(nt.order_id, func.count()), nt.order_id).group_by(nt.order_id)
        return {order_id: int(n) for order_id, n in conn.execute(query, {"ids": ids}).all()}

    def addresses(self, conn: Connection, numbers: list[str]) -> dict[str, str]:
        inbox = self.tables.inbox.c
        query = (
            self._of_chunk(
                select(inbox.order_number, inbox.remote_addr), inbox.order_number, "number"
            )
            .where(inbox.remote_addr.is_not(None))
            .order_by(inbox.order_number, inbox.id)
        )
        out: dict[str, str] = {}
        for number, addr in conn.execute(query, {"ids": numbers}).all():
            out[number] = addr  # the last notification's address wins
        return out


def iter_records(
    conn: Connection,
    tables: Tables,
    flt: OrderFilter,
    needs: Collection[str] = (),
    *,
    chunk: int = CHUNK,
) -> Iterator[list[OrderRecord]]:
    """Chunks of at most ``chunk`` orders matching ``flt``, newest first; ``needs`` names the
    detail rows to read (``lines``, ``tags``, ``notes``, ``payment``, ``ip``) and the times
    beyond ``created_at`` (``paid_at``...)."""
    with_lines = "lines" in needs
    to_time = _time_reader(conn.dialect.name)
    # the other times are read only when a field shows them: NULL otherwise
    other_times = any(n in needs for n in TIMES[1:])
    new = tuple.__new__
    units: dict[str, int] = {}
    records: list[OrderRecord]
    position: Cursor | None = None
    while True:
        planned = _planned_conditions(conn, tables, flt, position)
        if planned is None:
            return
        where, walk = planned
        if position is not None:
            where.append(_after(tables, position))
        q = _Chunk(tables, flt, where, walk, conn.dialect.name, needs, chunk)
        rows: list[Any] = list(conn.execute(q.query).all())
        if not rows:
            return
        ids: Any = []
        if q.dialect != "sqlite":
            ids = list(dict.fromkeys(r[0] for r in rows)) if q.joined else [r[0] for r in rows]
        if q.dialect == "postgresql":
            ids = "{" + ",".join(map(str, ids)) + "}"  # see _ARRAYS
        tags = q.tags(conn, ids) if "tags" in needs else {}
        notes = q.notes(conn, ids) if "notes" in needs else {}
        ips = q.addresses(conn, list(dict.fromkeys(r[1] for r in rows))) if "ip" in needs else {}
        if q.joined:
            records = _joined_records(
                rows, with_lines, to_time, other_times, units, tags, notes, ips
            )
        else:
            lines = q.lines(conn, ids) if with_lines else {}
            payments = q.payments(conn, ids) if "payment" in needs else None
            records = []
            for r in rows:
                oid = r[0]
                u = units.get(r[4])
                if u is None:
                    u = units[r[4]] = get_currency(r[4]).minor_units
                head: Any = r[:_N]
                if to_time is not None or payments is not None:
                    head = list(head)
                    if to_time is not None:
                        for i in range(TIMES_AT, _N):
                            if head[i] is not None:
                                head[i] = to_time(head[i])
                    if payments is not None:
                        head[_PAY_AT : _PAY_AT + 3] = payments.get(oid, _NO_PAYMENT)
                tail = (u, lines.get(oid, ()), tags.get(oid, ()), notes.get(oid, 0), ips.get(r[1]))
                records.append(new(OrderRecord, (*head, *tail)))
        if not records:
            return
        yield records
        if len(records) < chunk:
            return
        last = records[-1]
        position = Cursor(last.created_at, last.id)


def _joined_records(
    rows: list[Any],
    with_lines: bool,
    to_time: Callable[[Any], datetime] | None,
    other_times: bool,
    units: dict[str, int],
    tags: dict[int, list[str]],
    notes: dict[int, int],
    ips: dict[str, str],
) -> list[OrderRecord]:
    """The records of a joined chunk (SQLite, PostgreSQL): a row an order, or a row a line
    of it."""
    new = tuple.__new__
    extra = bool(tags or notes or ips)
    records: list[OrderRecord] = []
    append = records.append
    lines: list[tuple[str, str, int]] = []
    detail: Any = ()
    previous: Any = None
    for r in rows:
        oid = r[0]
        if oid != previous:
            previous = oid
            currency = r[4]
            u = units.get(currency)
            if u is None:
                u = units[currency] = get_currency(currency).minor_units
            if with_lines:
                detail = lines = []
            if to_time is None:
                head: tuple[Any, ...] = r[:_N]
            elif other_times:
                head = (
                    *r[:TIMES_AT],
                    *[None if t is None else to_time(t) for t in r[TIMES_AT:_N]],
                )
            elif not extra:  # the usual case, in one tuple
                usual = (*r[:TIMES_AT], to_time(r[TIMES_AT]), *_NO_TIMES, u, detail, (), 0, None)
                append(new(OrderRecord, usual))
                if with_lines and r[_N] is not None:
                    lines.append((r[_N], r[_N + 1], r[_N + 2]))
                continue
            else:
                head = (*r[:TIMES_AT], to_time(r[TIMES_AT]), *_NO_TIMES)
            tail = (u, detail, tags.get(oid, ()), notes.get(oid, 0), ips.get(r[1]))
            append(new(OrderRecord, (*head, *tail)))
        if with_lines and r[_N] is not None:
            lines.append((r[_N], r[_N + 1], r[_N + 2]))
    return records


class ExportReader(ReadSnapshot):
    """One read-only snapshot on the reporting engine, for one export:
    ``with ExportReader(engine, tables) as r: for chunk in r.records(flt, needs): ...``.
    Nothing is written and nothing committed."""

    def __init__(self, engine: Engine, tables: Tables) -> None:
        super().__init__(engine, tables)
        #: the reading threads of this snapshot, stopped before its connection is released
        self._ahead: list[ReadAhead[list[OrderRecord]]] = []

    def records(
        self, flt: OrderFilter, needs: Collection[str], *, chunk: int = CHUNK
    ) -> Iterator[list[OrderRecord]]:
        """The orders of ``flt`` in list order, in chunks (:func:`iter_records`).

        On PostgreSQL and MariaDB the next chunk is read while the caller writes this one
        (:class:`~.read_ahead.ReadAhead`: the queries' time in the server overlaps the
        writing). SQLite reads in the caller's thread: its work is this process's CPU, and
        a host's SQLite engine may refuse a connection used from another thread."""
        chunks = iter_records(self.conn, self.tables, flt, needs, chunk=chunk)
        if self.conn.dialect.name == "sqlite":
            return chunks
        ahead = ReadAhead(chunks, name="ordercore-export-read-ahead")
        self._ahead.append(ahead)
        return iter(ahead)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            while self._ahead:
                self._ahead.pop().close()  # the reading thread is done with the connection
        finally:
            super().__exit__(exc_type, exc, tb)
