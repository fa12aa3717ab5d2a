"""Payment attempts, platform operations, the inbox, applied events, anomalies, the outbox
and activation bookkeeping."""

from __future__ import annotations

import builtins
import json
import uuid
from collections import namedtuple
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ordercore._anomalies.domain import Anomaly, AnomalyKind, AnomalyStatus
from ordercore._audit.chain import canonical_json
from ordercore._errors import NotFound, PaymentNotFound
from ordercore._money import Money, get_currency
from ordercore._orders.domain import Order
from ordercore._outbox import OutboxMessage
from ordercore._payments.domain import PaymentAttempt
from ordercore._state import OrderStatus, PaymentStatus

from . import _driver as driver
from .coin_columns import coin_values, quote_from_row, received_from_row
from .inbox import InboxQueries
from .orders import ACTIVATION_COLUMNS, OrderRepository
from .tables import Tables

__all__ = ["PaymentRepository"]

_STATEMENTS_KEY = "ordercore.payment_statements"
_UNKNOWN: Any = object()
#: The attempt columns that change after its insert (``PaymentRepository._values``).
_SAVED_COLUMNS = (
    "status",
    "channel_trade_no",
    "received_minor",
    "checkout",
    "proof_reference",
    "proof_file",
    "failure_reason",
    "paid_at",
    "expires_at",
    "next_check_at",
    "check_count",
    "settles_order",
    "coin_currency",
    "coin_amount_minor",
    "coin_rate",
    "coin_pay_by",
    "coin_received_minor",
)


class _Statements:
    """The statements of the callback path, built once per table set and reused.

    SQLAlchemy memoizes a statement's cache key on the statement object, so executing the same
    object again (with its bound parameters given at execution) skips building the statement
    and computing its cache key — most of the Python time of a small query. Parameters named
    ``b_*`` are the WHERE clause's; an UPDATE's SET clause is taken from the other keys.
    """

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        a, o = tables.payment_attempts, tables.orders
        inbox, events = tables.inbox, tables.payment_events
        attempts = select(a, o.c.number).select_from(a.join(o, o.c.id == a.c.order_id))
        self.attempt = attempts.where(a.c.out_trade_no == bindparam("b_out_trade_no"))
        self.attempt_locked = self.attempt.with_for_update(of=a)
        self.attempts_for = attempts.where(a.c.order_id == bindparam("b_order_id")).order_by(a.c.id)
        #: an attempt's columns (as the orders' ``for_payment`` gives them) and its order number
        self.attempt_row: Any = namedtuple("AttemptRow", [*a.c.keys(), "number"])  # type: ignore[misc]
        self.insert_attempt = insert(a)
        self.update_attempt = update(a).where(a.c.id == bindparam("b_id"))
        self.insert_inbox = insert(inbox)
        self.update_inbox = update(inbox).where(inbox.c.id == bindparam("b_id"))
        self.event_claimed = select(events.c.id).where(
            events.c.event_key == bindparam("b_event_key")
        )
        self.insert_event = insert(events)
        # One statement for "claim unless claimed" where the backend has it: PostgreSQL
        # returns the new row's id (none when the key was claimed), SQLite counts the row
        # (RETURNING needs SQLite 3.35).
        self.claim_event: dict[str, Any] = {
            "postgresql": postgresql.insert(events)
            .on_conflict_do_nothing(index_elements=[events.c.event_key])
            .returning(events.c.id),
            "sqlite": sqlite.insert(events).on_conflict_do_nothing(
                index_elements=[events.c.event_key]
            ),
        }
        self.insert_outbox = insert(tables.outbox)
        self.activation = select(
            o.c.activation_mode,
            o.c.activation_due_at,
            o.c.activation_attempts,
            o.c.activation_error,
        ).where(o.c.id == bindparam("b_id"))
        self.update_order = update(o).where(o.c.id == bindparam("b_id"))


def _statements(tables: Tables) -> _Statements:
    """The statements for ``tables``, kept in the attempts table's ``info`` (one set per
    table set; building one twice in a race is harmless)."""
    info = tables.payment_attempts.info
    found = info.get(_STATEMENTS_KEY)
    if not isinstance(found, _Statements) or found.tables is not tables:
        found = _Statements(tables)
        info[_STATEMENTS_KEY] = found
    return found


class PaymentRepository(InboxQueries):
    """Everything the payment engine stores (the inbox's queries in :mod:`.inbox`). Never
    commits."""

    def __init__(
        self, conn: Connection, tables: Tables, orders: OrderRepository | None = None
    ) -> None:
        self.conn = conn
        self.tables = tables
        self.a = tables.payment_attempts
        self.o = tables.orders
        self.sql = _statements(tables)
        self.orders = orders
        # The attempts of orders whose attempts this unit of work locked (``lock_for_payment``),
        # by order id: the same objects are handed out until it ends.
        self._held: dict[int, list[PaymentAttempt]] = {}
        # The columns save_attempt writes, as last read or written, by attempt id: it writes
        # those that changed.
        self._stored: dict[int, dict[str, Any]] = {}

    # -- attempts -----------------------------------------------------------------------
    def _attempt(self, row: Row[Any]) -> PaymentAttempt:
        self._stored[row.id] = {name: getattr(row, name) for name in _SAVED_COLUMNS}
        currency = get_currency(row.currency)
        return PaymentAttempt(
            id=row.id,
            order_id=row.order_id,
            order_number=row.number,
            channel=row.channel,
            method=row.method,
            out_trade_no=row.out_trade_no,
            amount=Money.from_minor(row.amount_minor, currency),
            created_at=row.created_at,
            status=PaymentStatus(row.status),
            channel_trade_no=row.channel_trade_no,
            received=None
            if row.received_minor is None
            else Money.from_minor(row.received_minor, currency),
            checkout=None if row.checkout is None else json.loads(row.checkout),
            proof_reference=row.proof_reference,
            proof_file=row.proof_file,
            failure_reason=row.failure_reason,
            paid_at=row.paid_at,
            expires_at=row.expires_at,
            next_check_at=row.next_check_at,
            check_count=row.check_count,
            settles_order=bool(row.settles_order),
            quote=quote_from_row(row),
            coin_received=received_from_row(row),
        )

    def _attempt_select(self) -> Any:
        return select(self.a, self.o.c.number).select_from(
            self.a.join(self.o, self.o.c.id == self.a.c.order_id)
        )

    def _values(self, attempt: PaymentAttempt, now: datetime) -> dict[str, Any]:
        """The columns an attempt's save writes (``_SAVED_COLUMNS``), and ``updated_at``."""
        return {
            "status": attempt.status.value,
            "channel_trade_no": attempt.channel_trade_no,
            "received_minor": None if attempt.received is None else attempt.received.to_minor(),
            "checkout": None if attempt.checkout is None else canonical_json(attempt.checkout),
            "proof_reference": attempt.proof_reference,
            "proof_file": attempt.proof_file,
            "failure_reason": attempt.failure_reason,
            "paid_at": attempt.paid_at,
            "expires_at": attempt.expires_at,
            "next_check_at": attempt.next_check_at,
            "check_count": attempt.check_count,
            "settles_order": attempt.settles_order,
            **coin_values(attempt),
            "updated_at": now,
        }

    def add_attempt(self, attempt: PaymentAttempt, now: datetime) -> PaymentAttempt:
        values = self._values(attempt, now)
        result = self.conn.execute(
            self.sql.insert_attempt,
            {
                "order_id": attempt.order_id,
                "channel": attempt.channel,
                "method": attempt.method,
                "out_trade_no": attempt.out_trade_no,
                "currency": attempt.amount.currency.code,
                "amount_minor": attempt.amount.to_minor(),
                "created_at": attempt.created_at,
                **values,
            },
        )
        pk = result.inserted_primary_key
        assert pk is not None
        attempt.id = int(pk[0])
        self._stored[attempt.id] = {name: values[name] for name in _SAVED_COLUMNS}
        held = self._held.get(attempt.order_id)
        if held is not None:
            held.append(attempt)
        return attempt

    def save_attempt(self, attempt: PaymentAttempt, now: datetime) -> None:
        """Write the attempt's columns that changed since it was read (all of them if this
        unit of work did not read it), with ``updated_at``."""
        assert attempt.id is not None
        values = self._values(attempt, now)
        stored = self._stored.get(attempt.id)
        if stored is not None:
            changed = {k: v for k, v in values.items() if stored.get(k, _UNKNOWN) != v}
            stored.update(changed)
            values = changed
        values["updated_at"] = now
        driver.defer(self.conn, self.sql.update_attempt, {"b_id": attempt.id, **values})

    def attempt(self, out_trade_no: str, *, lock: bool = False) -> PaymentAttempt:
        query = self.sql.attempt_locked if lock else self.sql.attempt
        row = self.conn.execute(query, {"b_out_trade_no": out_trade_no}).first()
        if row is None:
            raise PaymentNotFound(f"no payment attempt {out_trade_no!r}", out_trade_no=out_trade_no)
        return self._attempt(row)

    def find_attempt(self, out_trade_no: str) -> PaymentAttempt | None:
        row = self.conn.execute(self.sql.attempt, {"b_out_trade_no": out_trade_no}).first()
        return None if row is None else self._attempt(row)

    def attempts_for(self, order_id: int) -> list[PaymentAttempt]:
        held = self._held.get(order_id)
        if held is not None:
            return list(held)
        rows = self.conn.execute(self.sql.attempts_for, {"b_order_id": order_id})
        return [self._attempt(r) for r in rows]

    def lock_for_payment(self, out_trade_no: str) -> tuple[Order, list[PaymentAttempt]] | None:
        """The order of attempt ``out_trade_no`` (loaded light) and every attempt of it, the
        order's row and theirs locked, in one statement; None when no attempt has that
        number. Until this unit of work ends, :meth:`attempts_for` hands out these
        attempts (the same objects)."""
        assert self.orders is not None
        found = self.orders.for_payment(out_trade_no)
        if found is None:
            return None
        order, rows = found
        assert order.id is not None
        held = self._held.get(order.id)
        if held is None:
            make = self.sql.attempt_row
            held = self._held[order.id] = [self._attempt(make(*r, order.number)) for r in rows]
        return order, list(held)

    def list_attempts(
        self, *, limit: int, before_id: int | None = None, status: str | None = None
    ) -> builtins.list[PaymentAttempt]:
        query = self._attempt_select().order_by(self.a.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(self.a.c.id < before_id)
        if status is not None:
            query = query.where(self.a.c.status == status)
        return [self._attempt(r) for r in self.conn.execute(query)]

    def claim_checks(self, now: datetime, *, limit: int, lease: timedelta) -> builtins.list[str]:
        """Attempts whose next check is due — open ones to query, given-up ones to close at
        the platform — leased to this runner: their next check moves past the lease in the
        same transaction (rows another runner is claiming are skipped on PostgreSQL)."""
        due = [
            PaymentStatus.PENDING.value,
            PaymentStatus.UNKNOWN.value,
            PaymentStatus.CANCELED.value,
            PaymentStatus.EXPIRED.value,
        ]
        rows = self.conn.execute(
            select(self.a.c.id, self.a.c.out_trade_no)
            .where(and_(self.a.c.next_check_at <= now, self.a.c.status.in_(due)))
            .order_by(self.a.c.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            self.conn.execute(
                update(self.a)
                .where(self.a.c.id.in_([r.id for r in rows]))
                .values(next_check_at=now + lease)
            )
        return [r.out_trade_no for r in rows]

    def postpone_check(self, out_trade_no: str, until: datetime) -> None:
        self.conn.execute(
            update(self.a)
            .where(self.a.c.out_trade_no == out_trade_no)
            .values(next_check_at=until, check_count=self.a.c.check_count + 1)
        )

    # -- operations --------------------------------------------------------------------
    def start_operation(
        self,
        *,
        kind: str,
        idempotency_key: str,
        now: datetime,
        attempt_id: int | None = None,
        refund_id: int | None = None,
        request: dict[str, Any] | None = None,
    ) -> int:
        t = self.tables.payment_operations
        result = self.conn.execute(
            insert(t).values(
                attempt_id=attempt_id,
                refund_id=refund_id,
                kind=kind,
                idempotency_key=idempotency_key,
                state="pending",
                request=None if request is None else canonical_json(request),
                created_at=now,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def finish_operation(
        self, operation_id: int, *, state: str, now: datetime, response: dict[str, Any]
    ) -> None:
        t = self.tables.payment_operations
        self.conn.execute(
            update(t)
            .where(t.c.id == operation_id)
            .values(state=state, response=canonical_json(response), finished_at=now)
        )

    def operations_for(self, attempt_id: int) -> builtins.list[dict[str, Any]]:
        t = self.tables.payment_operations
        rows = self.conn.execute(select(t).where(t.c.attempt_id == attempt_id).order_by(t.c.id))
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "idempotency_key": r.idempotency_key,
                "state": r.state,
                "request": None if r.request is None else json.loads(r.request),
                "response": None if r.response is None else json.loads(r.response),
                "created_at": r.created_at,
                "finished_at": r.finished_at,
            }
            for r in rows
        ]

    # -- applied events (dedupe) ----------------------------------------------------------
    def claim_event(
        self, event_key: str, *, attempt_id: int | None, inbox_id: int | None, now: datetime
    ) -> bool:
        """Record that ``event_key`` is applied; False if it was before (a duplicate).

        On PostgreSQL and SQLite one ``INSERT … ON CONFLICT (event_key) DO NOTHING``: a
        concurrent claim of the same key waits for the other transaction and then inserts
        nothing. Elsewhere a check, then the insert in a savepoint (a unique violation there
        means another transaction claimed it first)."""
        values = {
            "event_key": event_key,
            "attempt_id": attempt_id,
            "inbox_id": inbox_id,
            "applied_at": now,
        }
        dialect = self.conn.dialect.name
        if dialect == "postgresql":
            claimed = driver.execute(self.conn, self.sql.claim_event[dialect], values)
            return claimed.first() is not None
        if dialect == "sqlite":
            return driver.execute(self.conn, self.sql.claim_event[dialect], values).rowcount == 1
        if self.conn.execute(self.sql.event_claimed, {"b_event_key": event_key}).first():
            return False
        try:
            with self.conn.begin_nested():
                self.conn.execute(self.sql.insert_event, values)
        except IntegrityError:
            return False
        return True

    # -- anomalies ------------------------------------------------------------------------
    def open_anomaly(
        self,
        *,
        kind: AnomalyKind,
        dedupe_key: str,
        evidence: dict[str, Any],
        now: datetime,
        order_id: int | None = None,
        attempt_id: int | None = None,
    ) -> tuple[int, bool]:
        """Open an anomaly unless one with ``dedupe_key`` exists: ``(id, created)``."""
        t = self.tables.anomalies
        existing = self.conn.execute(select(t.c.id).where(t.c.dedupe_key == dedupe_key)).first()
        if existing is not None:
            return int(existing.id), False
        result = self.conn.execute(
            insert(t).values(
                order_id=order_id,
                attempt_id=attempt_id,
                kind=kind.value,
                status=AnomalyStatus.OPEN.value,
                evidence=canonical_json(evidence),
                dedupe_key=dedupe_key,
                created_at=now,
                updated_at=now,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0]), True

    def _anomaly_select(self) -> Any:
        t = self.tables.anomalies
        return select(t, self.o.c.number, self.a.c.out_trade_no).select_from(
            t.outerjoin(self.o, self.o.c.id == t.c.order_id).outerjoin(
                self.a, self.a.c.id == t.c.attempt_id
            )
        )

    @staticmethod
    def _anomaly(row: Row[Any]) -> Anomaly:
        return Anomaly(
            id=row.id,
            kind=AnomalyKind(row.kind),
            status=AnomalyStatus(row.status),
            evidence=json.loads(row.evidence),
            created_at=row.created_at,
            updated_at=row.updated_at,
            order_number=row.number,
            out_trade_no=row.out_trade_no,
            resolved_at=row.resolved_at,
            resolution=row.resolution,
        )

    def anomaly(self, anomaly_id: int, *, lock: bool = False) -> Anomaly:
        t = self.tables.anomalies
        query = self._anomaly_select().where(t.c.id == anomaly_id)
        if lock:
            query = query.with_for_update(of=t)
        row = self.conn.execute(query).first()
        if row is None:
            raise NotFound(f"no anomaly #{anomaly_id}", anomaly_id=anomaly_id)
        return self._anomaly(row)

    def anomalies(
        self,
        *,
        limit: int,
        before_id: int | None = None,
        status: str | None = None,
        kind: str | None = None,
        order_id: int | None = None,
    ) -> builtins.list[Anomaly]:
        t = self.tables.anomalies
        query = self._anomaly_select().order_by(t.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(t.c.id < before_id)
        if status is not None:
            query = query.where(t.c.status == status)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        if order_id is not None:
            query = query.where(t.c.order_id == order_id)
        return [self._anomaly(r) for r in self.conn.execute(query)]

    def update_anomaly(
        self,
        anomaly_id: int,
        *,
        status: AnomalyStatus,
        now: datetime,
        resolution: str | None = None,
    ) -> None:
        t = self.tables.anomalies
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status is AnomalyStatus.RESOLVED:
            values.update(resolved_at=now, resolution=resolution)
        self.conn.execute(update(t).where(t.c.id == anomaly_id).values(**values))

    # -- outbox ---------------------------------------------------------------------------
    def add_outbox(
        self, kind: str, order_number: str | None, payload: dict[str, Any], now: datetime
    ) -> str:
        event_id = str(uuid.uuid4())
        driver.defer(
            self.conn,
            self.sql.insert_outbox,
            {
                "event_id": event_id,
                "kind": kind,
                "order_number": order_number,
                "payload": canonical_json(payload),
                "created_at": now,
                "available_at": now,
                "attempts": 0,
            },
        )
        return event_id

    def claim_outbox(
        self, now: datetime, *, limit: int, lease: timedelta
    ) -> builtins.list[OutboxMessage]:
        """Take due messages for delivery: lock them (skipping other runners' rows), push
        their next availability past the lease, count the attempt."""
        t = self.tables.outbox
        rows = self.conn.execute(
            select(t)
            .where(and_(t.c.delivered_at.is_(None), t.c.available_at <= now))
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            self.conn.execute(
                update(t)
                .where(t.c.id.in_([r.id for r in rows]))
                .values(available_at=now + lease, attempts=t.c.attempts + 1)
            )
        return [
            OutboxMessage(
                id=r.event_id,
                kind=r.kind,
                order_number=r.order_number,
                payload=json.loads(r.payload),
                created_at=r.created_at,
                attempt=r.attempts + 1,
            )
            for r in rows
        ]

    def outbox_done(self, event_id: str, now: datetime) -> None:
        t = self.tables.outbox
        self.conn.execute(
            update(t).where(t.c.event_id == event_id).values(delivered_at=now, last_error=None)
        )

    def outbox_failed(self, event_id: str, error: str, retry_at: datetime) -> None:
        t = self.tables.outbox
        self.conn.execute(
            update(t)
            .where(t.c.event_id == event_id)
            .values(available_at=retry_at, last_error=error[:2000])
        )

    def outbox_messages(
        self, *, order_number: str | None = None, undelivered: bool = False
    ) -> builtins.list[dict[str, Any]]:
        t = self.tables.outbox
        query = select(t).order_by(t.c.id)
        if order_number is not None:
            query = query.where(t.c.order_number == order_number)
        if undelivered:
            query = query.where(t.c.delivered_at.is_(None))
        return [
            {
                "event_id": r.event_id,
                "kind": r.kind,
                "order_number": r.order_number,
                "payload": json.loads(r.payload),
                "attempts": r.attempts,
                "delivered_at": r.delivered_at,
                "last_error": r.last_error,
            }
            for r in self.conn.execute(query)
        ]

    # -- activation -----------------------------------------------------------------------
    def activation(self, order_id: int) -> dict[str, Any]:
        """The order's activation bookkeeping: ``mode``, ``due_at``, ``attempts``,
        ``error`` (read with the order when this unit of work locked its row)."""
        held = None if self.orders is None else self.orders.activation(order_id)
        if held is not None:
            return {k: held[k] for k in ("mode", "due_at", "attempts", "error")}
        row = self.conn.execute(self.sql.activation, {"b_id": order_id}).one()
        return {
            "mode": row.activation_mode,
            "due_at": row.activation_due_at,
            "attempts": row.activation_attempts,
            "error": row.activation_error,
        }

    def set_activation(self, order_id: int, **values: Any) -> None:
        """Change the order's activation bookkeeping; written with the order's own update
        when this unit of work locked the order's row, else at once."""
        unknown = set(values) - set(ACTIVATION_COLUMNS)
        assert not unknown, unknown
        columns = {f"activation_{k}": v for k, v in values.items()}
        if self.orders is not None and self.orders.defer(order_id, columns):
            return
        self.conn.execute(self.sql.update_order, {"b_id": order_id, **columns})

    def claim_activations(
        self, now: datetime, *, limit: int, lease: timedelta
    ) -> builtins.list[tuple[str, int]]:
        """Paid orders whose activation is due and not held by another runner: lease them.
        Returns ``(number, attempt number)`` pairs."""
        o = self.o
        rows = self.conn.execute(
            select(o.c.id, o.c.number, o.c.activation_attempts)
            .where(
                and_(
                    o.c.status == OrderStatus.PAID.value,
                    o.c.activation_due_at <= now,
                    or_(o.c.activation_locked_until.is_(None), o.c.activation_locked_until < now),
                )
            )
            .order_by(o.c.activation_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            self.conn.execute(
                update(o)
                .where(o.c.id.in_([r.id for r in rows]))
                .values(activation_locked_until=now + lease)
            )
        return [(r.number, int(r.activation_attempts) + 1) for r in rows]

    def order_id(self, number: str) -> int:
        value = self.conn.execute(select(self.o.c.id).where(self.o.c.number == number)).scalar()
        if value is None:
            raise NotFound(f"no order {number!r}", order=number)
        return int(value)

    def claim_expired_orders(
        self, now: datetime, *, limit: int, lease: timedelta
    ) -> builtins.list[str]:
        """Pending orders past their payment deadline, leased to this runner for the timeout
        work (skipping rows other runners hold, and orders another runner leased)."""
        o = self.o
        rows = self.conn.execute(
            select(o.c.id, o.c.number)
            .where(
                and_(
                    o.c.status == OrderStatus.PENDING.value,
                    o.c.payment_deadline < now,
                    or_(o.c.timeout_locked_until.is_(None), o.c.timeout_locked_until < now),
                )
            )
            .order_by(o.c.payment_deadline)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            self.conn.execute(
                update(o)
                .where(o.c.id.in_([r.id for r in rows]))
                .values(timeout_locked_until=now + lease)
            )
        return [r.number for r in rows]
