"""Orders: rows to domain objects and back, with the statements of the hot paths built once.
Never commits."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ordercore._audit.chain import canonical_json
from ordercore._errors import ConcurrentModification, OrderNotFound
from ordercore._money import Currency, Money, get_currency
from ordercore._orders.amounts import AdjustmentKind, AmountAdjustment, AmountBreakdown
from ordercore._orders.domain import Communication, Note, Order, OrderLine
from ordercore._state import CancelReason, OrderStatus

from . import _driver as driver
from ._built import insert_into
from .audit import AuditRepository
from .repositories import _actor, _actor_values, _dump_specs, _load_specs
from .tables import Tables

__all__ = ["ACTIVATION_COLUMNS", "OrderRepository"]


def _dump_adjustments(adjustments: Sequence[AmountAdjustment]) -> str:
    return canonical_json(
        [
            {
                "kind": a.kind.value,
                "amount": a.amount.to_minor(),
                "label": a.label,
                "per_line": [p.to_minor() for p in a.per_line],
            }
            for a in adjustments
        ]
    )


def _load_adjustments(text: str, currency: Currency) -> tuple[AmountAdjustment, ...]:
    return tuple(
        AmountAdjustment(
            kind=AdjustmentKind(a["kind"]),
            amount=Money.from_minor(a["amount"], currency),
            label=a["label"],
            per_line=tuple(Money.from_minor(p, currency) for p in a["per_line"]),
        )
        for a in json.loads(text)
    )


class _Loaded:
    """What the repository read, to write back only what changed. ``tags`` is None when
    they were not read (a light load)."""

    __slots__ = ("communications", "notes", "tags", "values")

    def __init__(
        self, order: Order, values: dict[str, Any], *, tags: frozenset[str] | None
    ) -> None:
        self.notes = len(order.notes)
        self.communications = len(order.communications)
        self.tags = tags
        self.values = values


_ORDER_STATEMENTS_KEY = "ordercore.order_statements"
_LINE_COLUMNS = (
    "position",
    "product_id",
    "sku",
    "name",
    "specs",
    "unit_price_minor",
    "quantity",
    "tier_percent_off",
)
#: The order columns :meth:`OrderRepository._row_values` gives (the ones save() compares).
_ROW_COLUMNS = (
    "number",
    "customer_id",
    "currency",
    "status",
    "cancel_reason",
    "original_minor",
    "payable_minor",
    "paid_minor",
    "refunded_minor",
    "adjustments",
    "special",
    "created_at",
    "paid_at",
    "completed_at",
    "canceled_at",
    "refunded_at",
    "payment_deadline",
)
#: The order columns that hold its activation bookkeeping (``PaymentRepository.activation``).
ACTIVATION_COLUMNS = ("mode", "due_at", "attempts", "error", "locked_until")


class _OrderStatements:
    """The order statements of the hot paths, built once per table set (see
    ``payments._Statements`` for why). ``b_*`` parameters belong to WHERE clauses; an
    UPDATE's SET clause is taken from the other keys."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        o, lines, tags = tables.orders, tables.order_lines, tables.order_tags
        self.by_number = select(o).where(o.c.number == bindparam("b_number"))
        self.by_number_locked = self.by_number.with_for_update()
        self.lines = (
            select(*(lines.c[c] for c in _LINE_COLUMNS))
            .where(lines.c.order_id == bindparam("b_order_id"))
            .order_by(lines.c.position)
        )
        self.tags = select(tags.c.tag).where(tags.c.order_id == bindparam("b_order_id"))
        # The payment path's one read: the row of the attempt's order, whether a coupon use
        # waits to be consumed, its lines and every attempt of the order (one row per line
        # and attempt: ``line_*`` and ``attempt_*`` columns); the order's row and its
        # attempts' rows locked (PostgreSQL locks in the order of ``FOR UPDATE OF``: the
        # order's row first, as every path that locks an order and then its attempts).
        # Short table aliases keep its text under psycopg's 4 KB limit for caching a
        # statement's conversion (schema-qualified column names went past it).
        po, pl = o.alias("o"), lines.alias("l")
        pa, pr = tables.payment_attempts.alias("a"), tables.coupon_redemptions.alias("r")
        paying_attempt = tables.payment_attempts.alias("p")
        paying = po.c.id == (
            select(paying_attempt.c.order_id)
            .where(paying_attempt.c.out_trade_no == bindparam("b_out_trade_no"))
            .scalar_subquery()
        )
        reserved = (
            exists()
            .where(and_(pr.c.order_id == po.c.id, pr.c.status == "reserved"))
            .label("coupon_reserved")
        )
        self.for_payment = (
            select(
                po,
                reserved,
                *(pl.c[c].label(f"line_{c}") for c in _LINE_COLUMNS),
                *(c.label(f"attempt_{c.key}") for c in pa.c),
            )
            .select_from(po.join(pl, pl.c.order_id == po.c.id).join(pa, pa.c.order_id == po.c.id))
            .where(paying)
            .order_by(pl.c.position, pa.c.id)
            .with_for_update(of=[po, pa])
        )
        #: where the ``attempt_*`` columns start in a row of ``for_payment``
        self.attempts_from = len(self.for_payment.selected_columns) - len(pa.c)
        self.update = update(o).where(
            and_(o.c.id == bindparam("b_id"), o.c.version == bindparam("b_version"))
        )
        self.update_columns = update(o).where(o.c.id == bindparam("b_id"))
        self.insert = insert(o)
        #: by dialect: the INSERT that skips a row whose number or key is taken
        self.insert_or_skip = {
            "postgresql": postgresql.insert(o).on_conflict_do_nothing().returning(o.c.id),
            "sqlite": sqlite.insert(o).on_conflict_do_nothing(),
        }


def _order_statements(tables: Tables) -> _OrderStatements:
    info = tables.orders.info
    found = info.get(_ORDER_STATEMENTS_KEY)
    if not isinstance(found, _OrderStatements) or found.tables is not tables:
        found = _OrderStatements(tables)
        info[_ORDER_STATEMENTS_KEY] = found
    return found


def _line(row: Any, prefix: str, currency: Currency) -> OrderLine:
    get = row._mapping
    tier = get[prefix + "tier_percent_off"]
    return OrderLine(
        sku=get[prefix + "sku"],
        name=get[prefix + "name"],
        unit_price=Money.from_minor(get[prefix + "unit_price_minor"], currency),
        quantity=get[prefix + "quantity"],
        specs=_load_specs(get[prefix + "specs"]),
        product_id=get[prefix + "product_id"],
        tier_percent_off=None if tier is None else Decimal(tier),
    )


class OrderRepository:
    """Orders with their lines, flags, notes and communications.

    ``seen`` holds every order this unit of work loaded or added; the unit of work saves the
    changed ones (optimistic version check) and stores their audit entries at commit.
    """

    def __init__(self, conn: Connection, tables: Tables, audit: AuditRepository) -> None:
        self.conn = conn
        self.tables = tables
        self.t = tables.orders
        self.audit = audit
        self.sql = _order_statements(tables)
        self.seen: dict[str, Order] = {}
        self._light: set[str] = set()
        self._loaded: dict[str, _Loaded] = {}
        # Orders whose row this unit of work holds locked: their activation columns as read,
        # and column values to write with the order's next update (``defer``).
        self._by_id: dict[int, Order] = {}
        self._activation: dict[int, dict[str, Any]] = {}
        self._deferred: dict[int, dict[str, Any]] = {}
        self._coupon_reserved: dict[int, bool] = {}
        self._added: set[int] = set()  # inserted by this unit of work: no one else sees them

    def _row_values(self, order: Order) -> dict[str, Any]:
        a = order.amounts
        return {
            "number": order.number,
            "customer_id": order.customer_id,
            "currency": a.currency.code,
            "status": order.status.value,
            "cancel_reason": order.cancel_reason.value if order.cancel_reason else None,
            "original_minor": a.original.to_minor(),
            "payable_minor": a.payable.to_minor(),
            "paid_minor": a.paid.to_minor(),
            "refunded_minor": a.refunded.to_minor(),
            "adjustments": _dump_adjustments(a.adjustments),
            "special": order.special,
            "created_at": order.created_at,
            "paid_at": order.paid_at,
            "completed_at": order.completed_at,
            "canceled_at": order.canceled_at,
            "refunded_at": order.refunded_at,
            "payment_deadline": order.payment_deadline,
        }

    def add(
        self,
        order: Order,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        columns: dict[str, Any] | None = None,
    ) -> Order:
        """Insert a new order with its lines and flags (and other order ``columns``, e.g. its
        activation mode and channel). Raises IntegrityError on a duplicate number or
        idempotency key, leaving the transaction usable (the caller may retry): PostgreSQL
        and SQLite skip the conflicting row (``ON CONFLICT DO NOTHING``), MariaDB rolls a
        savepoint back."""
        values = self._row_values(order)
        row = {
            **values,
            **(columns or {}),
            "version": 1,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
        }
        or_skip = self.sql.insert_or_skip.get(self.conn.dialect.name)
        if or_skip is not None:
            inserted = driver.execute(self.conn, or_skip, row)
            if inserted.rowcount != 1:  # skipped
                raise IntegrityError(
                    "INSERT INTO orders", None, ValueError("order number or key taken")
                )
            order.id = inserted.inserted_id
        else:
            with self.conn.begin_nested():
                order.id = driver.execute(self.conn, self.sql.insert, row).inserted_id
        self._by_id[order.id] = order
        self._added.add(order.id)
        self._activation[order.id] = {
            name: (columns or {}).get(f"activation_{name}", default)
            for name, default in (
                ("mode", "auto"),
                ("due_at", None),
                ("attempts", 0),
                ("error", None),
                ("locked_until", None),
            )
        }
        order.version = 1
        driver.executemany(
            self.conn,
            insert_into(self.tables.order_lines),
            [
                {
                    "order_id": order.id,
                    "position": i,
                    "product_id": line.product_id,
                    "sku": line.sku,
                    "name": line.name,
                    "specs": _dump_specs(line.specs),
                    "unit_price_minor": line.unit_price.to_minor(),
                    "quantity": line.quantity,
                    "tier_percent_off": None
                    if line.tier_percent_off is None
                    else str(line.tier_percent_off),
                    "order_created_at": order.created_at,
                }
                for i, line in enumerate(order.lines)
            ],
        )
        if order.tags:
            self.conn.execute(
                insert(self.tables.order_tags),
                [
                    {"order_id": order.id, "tag": t, "order_created_at": order.created_at}
                    for t in sorted(order.tags)
                ],
            )
        self._insert_children(order, 0, 0)
        self.seen[order.number] = order
        self._loaded[order.number] = _Loaded(order, values, tags=order.tags)
        return order

    def get(self, number: str, *, lock: bool = False, light: bool = False) -> Order:
        """Load an order; ``lock`` takes its row lock (``SELECT … FOR UPDATE``).

        ``light`` leaves out the flags, notes, communications and status history (queries
        the payment path does not need). Such an order saves correctly — new notes are
        appended to an empty list and inserted — but must not be shown, and its flags must not
        change; asking for the full order later in the same unit of work is a programming
        error.
        """
        if number in self.seen:
            if number in self._light and not light:
                raise AssertionError(f"order {number} was loaded light in this unit of work")
            return self.seen[number]
        query = self.sql.by_number_locked if lock else self.sql.by_number
        row = self.conn.execute(query, {"b_number": number}).first()
        if row is None:
            raise OrderNotFound(f"no order {number!r}", order=number)
        currency = get_currency(row.currency)
        lines = tuple(
            _line(r, "", currency)
            for r in self.conn.execute(self.sql.lines, {"b_order_id": row.id})
        )
        return self._loaded_order(row, lines, lock=lock, light=light)

    def for_payment(self, out_trade_no: str) -> tuple[Order, list[tuple[Any, ...]]] | None:
        """The order of the payment attempt ``out_trade_no``, loaded light, and the rows of
        every attempt of that order (the attempts table's columns, in its order), all locked,
        in one statement; whether a coupon use of the order is reserved is kept for
        :meth:`coupon_reserved`. None when no attempt has that number. (The payment
        repository's ``lock_for_payment`` makes the attempts.)"""
        rows = driver.execute(
            self.conn, self.sql.for_payment, {"b_out_trade_no": out_trade_no}
        ).all()
        if not rows:
            return None
        row = rows[0]
        start = self.sql.attempts_from
        attempts: dict[Any, tuple[Any, ...]] = {}
        lines: dict[Any, Any] = {}
        for each in rows:  # one row per line and attempt
            attempts.setdefault(each[start], tuple(each[start:]))
            lines.setdefault(each.line_position, each)
        order = self.seen.get(row.number)
        if order is None:
            currency = get_currency(row.currency)
            order = self._loaded_order(
                row,
                tuple(_line(r, "line_", currency) for r in lines.values()),
                lock=True,
                light=True,
            )
            self._coupon_reserved[row.id] = bool(row.coupon_reserved)
        return order, list(attempts.values())

    def coupon_reserved(self, order_id: int) -> bool | None:
        """Whether a coupon use of the order was reserved when :meth:`for_payment` read it
        (None when it did not read this order)."""
        return self._coupon_reserved.get(order_id)

    def _loaded_order(
        self, row: Row[Any], lines: tuple[OrderLine, ...], *, lock: bool, light: bool
    ) -> Order:
        order = self._from_row(row, lines, light=light)
        if light:
            self._light.add(order.number)
        self.seen[order.number] = order
        # What is stored, as read: save() writes the columns whose value now differs.
        stored = {name: getattr(row, name) for name in _ROW_COLUMNS}
        self._loaded[order.number] = _Loaded(order, stored, tags=None if light else order.tags)
        if lock:
            assert order.id is not None
            self._by_id[order.id] = order
            self._activation[order.id] = {
                name: getattr(row, f"activation_{name}") for name in ACTIVATION_COLUMNS
            }
        return order

    def _from_row(
        self, row: Row[Any], lines: tuple[OrderLine, ...], *, light: bool = False
    ) -> Order:
        tb = self.tables
        currency = get_currency(row.currency)
        tags = (
            frozenset()
            if light
            else frozenset(self.conn.execute(self.sql.tags, {"b_order_id": row.id}).scalars())
        )
        notes = (
            []
            if light
            else [
                Note(text=r.text, author=_actor(r), at=r.at)
                for r in self.conn.execute(
                    select(tb.order_notes)
                    .where(tb.order_notes.c.order_id == row.id)
                    .order_by(tb.order_notes.c.id)
                )
            ]
        )
        comms = (
            []
            if light
            else [
                Communication(
                    channel=r.channel, text=r.text, author=_actor(r), at=r.at, direction=r.direction
                )
                for r in self.conn.execute(
                    select(tb.order_communications)
                    .where(tb.order_communications.c.order_id == row.id)
                    .order_by(tb.order_communications.c.id)
                )
            ]
        )
        amounts = AmountBreakdown(
            original=Money.from_minor(row.original_minor, currency),
            payable=Money.from_minor(row.payable_minor, currency),
            adjustments=_load_adjustments(row.adjustments, currency),
            paid=Money.from_minor(row.paid_minor, currency),
            refunded=Money.from_minor(row.refunded_minor, currency),
        )
        return Order(
            id=row.id,
            number=row.number,
            customer_id=row.customer_id,
            lines=lines,
            amounts=amounts,
            status=OrderStatus(row.status),
            cancel_reason=CancelReason(row.cancel_reason) if row.cancel_reason else None,
            created_at=row.created_at,
            paid_at=row.paid_at,
            completed_at=row.completed_at,
            canceled_at=row.canceled_at,
            refunded_at=row.refunded_at,
            payment_deadline=row.payment_deadline,
            special=bool(row.special),
            tags=tags,
            notes=notes,
            communications=comms,
            history=[] if light else self.audit.order_history(row.number),
            version=row.version,
        )

    def _insert_children(self, order: Order, notes_from: int, comms_from: int) -> None:
        tb = self.tables
        new_notes = order.notes[notes_from:]
        if new_notes:
            self.conn.execute(
                insert(tb.order_notes),
                [
                    {"order_id": order.id, "text": n.text, "at": n.at, **_actor_values(n.author)}
                    for n in new_notes
                ],
            )
        new_comms = order.communications[comms_from:]
        if new_comms:
            self.conn.execute(
                insert(tb.order_communications),
                [
                    {
                        "order_id": order.id,
                        "channel": c.channel,
                        "direction": c.direction,
                        "text": c.text,
                        "at": c.at,
                        **_actor_values(c.author),
                    }
                    for c in new_comms
                ],
            )

    def save(self, order: Order) -> None:
        """Write a loaded order back, if nobody else changed it since it was read: the
        columns that changed (and any deferred ones), the version, new flags and notes."""
        loaded = self._loaded[order.number]
        values = self._row_values(order)
        params = {k: v for k, v in values.items() if loaded.values.get(k) != v}
        assert order.id is not None
        deferred = self._deferred.pop(order.id, {})
        params.update(deferred)
        held = self._activation.get(order.id)
        if held is not None:  # what is written now is what later reads see
            for column, value in deferred.items():
                name = column.removeprefix("activation_")
                if name in held:
                    held[name] = value
        if params or order.id not in self._added:
            # (A new order nobody else can see yet, unchanged since its insert, is not written.)
            params.update(b_id=order.id, b_version=order.version, version=order.version + 1)
            number = order.number

            def one_row(rowcount: int) -> None:
                if rowcount != 1:
                    order.version -= 1  # not saved: the version read stays
                    raise ConcurrentModification(
                        f"order {number} was changed by someone else; reload it and try again",
                        order=number,
                    )

            # checked when it has run: at once, or (PostgreSQL) with the next statement
            order.version += 1
            driver.defer(self.conn, self.sql.update, params, check=one_row)
        tags = self.tables.order_tags
        if loaded.tags is None:
            if order.tags:
                raise AssertionError(f"order {order.number} was loaded light: flags unknown")
        else:
            removed = loaded.tags - order.tags
            added = order.tags - loaded.tags
            if removed:
                self.conn.execute(
                    tags.delete().where(
                        and_(tags.c.order_id == order.id, tags.c.tag.in_(sorted(removed)))
                    )
                )
            if added:
                self.conn.execute(
                    insert(tags),
                    [
                        {"order_id": order.id, "tag": t, "order_created_at": order.created_at}
                        for t in sorted(added)
                    ],
                )
        self._insert_children(order, loaded.notes, loaded.communications)
        self._loaded[order.number] = _Loaded(
            order, values, tags=None if loaded.tags is None else order.tags
        )

    # -- columns written with the order's next update ------------------------------------
    def activation(self, order_id: int) -> dict[str, Any] | None:
        """The activation columns of an order whose row this unit of work locked (as read,
        with deferred changes), or None."""
        read = self._activation.get(order_id)
        if read is None:
            return None
        deferred = self._deferred.get(order_id, {})
        return {name: deferred.get(f"activation_{name}", value) for name, value in read.items()}

    def defer(self, order_id: int, values: dict[str, Any]) -> bool:
        """Write ``values`` (order columns) with the order's next update in this unit of
        work, instead of an UPDATE of their own: only for an order whose row this unit of
        work locked. False when it did not (the caller writes them itself)."""
        if order_id not in self._by_id:
            return False
        self._deferred.setdefault(order_id, {}).update(values)
        return True

    def write_deferred(self) -> None:
        """Write deferred columns of orders that are not saved otherwise (at commit)."""
        for order_id, values in self._deferred.items():
            self.conn.execute(self.sql.update_columns, {"b_id": order_id, **values})
        self._deferred.clear()

    def find_by_idempotency_key(self, key: str) -> tuple[str, str | None] | None:
        """``(number, request_hash)`` of the order created under ``key``, if any."""
        row = self.conn.execute(
            select(self.t.c.number, self.t.c.request_hash).where(self.t.c.idempotency_key == key)
        ).first()
        return None if row is None else (row.number, row.request_hash)

    def set_channel(self, order: Order, channel: str | None) -> None:
        self.conn.execute(update(self.t).where(self.t.c.id == order.id).values(channel=channel))

    def expired_pending(self, now: datetime, *, limit: int) -> list[str]:
        """Numbers of pending orders whose payment deadline is before ``now``, oldest first."""
        query = (
            select(self.t.c.number)
            .where(
                and_(
                    self.t.c.status == OrderStatus.PENDING.value,
                    self.t.c.payment_deadline < now,
                )
            )
            .order_by(self.t.c.payment_deadline)
            .limit(limit)
        )
        return list(self.conn.execute(query).scalars())

    def numbers(self) -> Iterator[str]:
        yield from self.conn.execute(
            select(self.t.c.number).order_by(self.t.c.created_at, self.t.c.id)
        ).scalars()
