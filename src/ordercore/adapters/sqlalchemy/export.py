"""The export query: every order an :class:`OrderFilter` selects, in the order list's order,
read in keyset chunks.

It is the order list's own query (``listing.py``: the same planned conditions, the same
``ORDER BY created_at DESC, id DESC``, the same cursor condition between chunks), with the
customer joined and, per chunk, only the detail rows the chosen fields need (lines, flags,
note counts, the settling payment, the last notification's address). At most one chunk of
rows is in memory at a time, whatever the number of orders: ``export == list`` by
construction, and memory stays flat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import Connection, and_, func, select, true

from ordercore._money import get_currency
from ordercore._orders.listing import Cursor, OrderFilter
from ordercore._reports.fields import OrderRecord

from .listing import _after, _planned_conditions, _walk_index
from .tables import Tables

__all__ = ["CHUNK", "iter_records"]

#: Orders read per query.
CHUNK = 1000
_TIMES = ("paid_at", "completed_at", "canceled_at", "refunded_at")


def iter_records(
    conn: Connection,
    tables: Tables,
    flt: OrderFilter,
    needs: Collection[str] = (),
    *,
    chunk: int = CHUNK,
) -> Iterator[list[OrderRecord]]:
    """Chunks of at most ``chunk`` orders matching ``flt``, newest first; ``needs`` names the
    detail rows to read (``lines``, ``tags``, ``notes``, ``payment``, ``ip``)."""
    o, c = tables.orders.c, tables.customers.c
    position: Cursor | None = None
    minor_units: dict[str, int] = {}
    # the other times only when a field shows them (reading a time costs a conversion)
    wanted = [n for n in _TIMES if n in needs]
    while True:
        planned = _planned_conditions(conn, tables, flt, position)
        if planned is None:
            return
        where, walk = planned
        if position is not None:
            where.append(_after(tables, position))
        query = (
            select(
                o.id,
                o.number,
                o.status,
                o.cancel_reason,
                o.currency,
                o.original_minor,
                o.payable_minor,
                o.paid_minor,
                o.refunded_minor,
                o.adjustments,
                o.channel,
                o.special,
                o.created_at,
                *[o[n] for n in wanted],
                o.customer_id,
                c.external_ref,
                c.name,
                c.email,
                c.phone,
            )
            .select_from(tables.orders.join(tables.customers, c.id == o.customer_id))
            .where(and_(true(), *where))
            .order_by(o.created_at.desc(), o.id.desc())
            .limit(chunk)
        )
        if walk and conn.dialect.name in ("mysql", "mariadb"):
            query = query.with_hint(
                tables.orders, f"FORCE INDEX ({_walk_index(tables, flt)})", conn.dialect.name
            )
        rows = conn.execute(query).all()
        if not rows:
            return
        records = []
        for r in rows:
            m = r._mapping
            paid_at, completed_at, canceled_at, refunded_at = (
                m[n] if n in wanted else None for n in _TIMES
            )
            units = minor_units.get(r.currency)
            if units is None:
                units = minor_units[r.currency] = get_currency(r.currency).minor_units
            records.append(
                OrderRecord(
                    r.id,
                    r.number,
                    r.status,
                    r.cancel_reason,
                    r.currency,
                    units,
                    r.original_minor,
                    r.payable_minor,
                    r.paid_minor,
                    r.refunded_minor,
                    r.adjustments,
                    r.channel,
                    bool(r.special),
                    r.created_at,
                    paid_at,
                    completed_at,
                    canceled_at,
                    refunded_at,
                    r.customer_id,
                    r.external_ref,
                    r.name,
                    r.email,
                    r.phone,
                    [],
                    [],
                )
            )
        _details(conn, tables, records, needs)
        yield records
        if len(rows) < chunk:
            return
        position = Cursor(rows[-1].created_at, rows[-1].id)


def _details(
    conn: Connection, tables: Tables, records: list[OrderRecord], needs: Collection[str]
) -> None:
    by_id = {r.id: r for r in records}
    ids = list(by_id)
    if "lines" in needs:
        lines = tables.order_lines.c
        for order_id, sku, name, qty in conn.execute(
            select(lines.order_id, lines.sku, lines.name, lines.quantity)
            .where(lines.order_id.in_(ids))
            .order_by(lines.order_id, lines.position)
        ):
            by_id[order_id].lines.append((sku, name, qty))
    if "tags" in needs:
        tags = tables.order_tags.c
        for order_id, tag in conn.execute(
            select(tags.order_id, tags.tag).where(tags.order_id.in_(ids)).order_by(tags.tag)
        ):
            by_id[order_id].tags.append(tag)
    if "notes" in needs:
        notes = tables.order_notes.c
        for order_id, count in conn.execute(
            select(notes.order_id, func.count())
            .where(notes.order_id.in_(ids))
            .group_by(notes.order_id)
        ):
            by_id[order_id].notes_count = int(count)
    if "payment" in needs:
        a = tables.payment_attempts.c
        for order_id, method, out_no, trade_no in conn.execute(
            select(a.order_id, a.method, a.out_trade_no, a.channel_trade_no)
            .where(a.order_id.in_(ids), a.status == "succeeded")
            .order_by(a.order_id, a.id)
        ):
            rec = by_id[order_id]  # the last succeeded attempt wins
            rec.method, rec.out_trade_no, rec.trade_no = method, out_no, trade_no
    if "ip" in needs:
        inbox = tables.inbox.c
        by_number: dict[str, OrderRecord] = {r.number: r for r in records}
        seen: dict[str, Any] = defaultdict(lambda: None)
        for number, addr in conn.execute(
            select(inbox.order_number, inbox.remote_addr)
            .where(inbox.order_number.in_(list(by_number)), inbox.remote_addr.is_not(None))
            .order_by(inbox.order_number, inbox.id)
        ):
            seen[number] = addr
        for number, addr in seen.items():
            by_number[number].payer_ip = addr
