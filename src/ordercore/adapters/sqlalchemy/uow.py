"""The unit of work: one transaction, rolled back unless committed."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType

from sqlalchemy import Connection, Engine

from ordercore._audit import AuditEntry
from ordercore._payments_domain import PaymentAttempt

from .coupons import CouponRepository
from .payments import PaymentRepository
from .repositories import AuditRepository, CustomerRepository, OrderRepository, ProductRepository
from .tables import Tables
from .wallet import WalletRepository

__all__ = ["UnitOfWork"]


class UnitOfWork:
    """``with UnitOfWork(engine, tables) as uow: ...; uow.commit()``.

    Leaving the block without :meth:`commit` (or with an exception) rolls everything back.
    At commit, every order the repositories saw that has unsaved changes is written back
    (optimistic version check), and all audit entries collected in this unit of work —
    recorded directly with :meth:`record` or by the orders themselves — are appended to the
    hash chain in the same transaction.
    """

    conn: Connection
    customers: CustomerRepository
    products: ProductRepository
    orders: OrderRepository
    audit: AuditRepository
    coupons: CouponRepository
    wallet: WalletRepository
    payments: PaymentRepository

    def __init__(self, engine: Engine, tables: Tables, audit_key: bytes | None = None) -> None:
        self.engine = engine
        self.tables = tables
        self.audit_key = audit_key
        self._entries: list[AuditEntry] = []
        self._attempts: list[PaymentAttempt] = []
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.conn = self.engine.connect()
        self._tx = self.conn.begin()
        self.audit = AuditRepository(self.conn, self.tables, self.audit_key)
        self.customers = CustomerRepository(self.conn, self.tables)
        self.products = ProductRepository(self.conn, self.tables)
        self.orders = OrderRepository(self.conn, self.tables, self.audit)
        self.coupons = CouponRepository(self.conn, self.tables)
        self.wallet = WalletRepository(self.conn, self.tables)
        self.payments = PaymentRepository(self.conn, self.tables)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()

    def record(self, entry: AuditEntry) -> None:
        """Queue an audit entry; it is stored at commit, in this transaction."""
        self._entries.append(entry)

    def save_attempt(self, attempt: PaymentAttempt, now: datetime) -> None:
        """Write a payment attempt back; its audit entries are stored at commit."""
        if attempt.id is None:
            self.payments.add_attempt(attempt, now)
        else:
            self.payments.save_attempt(attempt, now)
        if all(a is not attempt for a in self._attempts):
            self._attempts.append(attempt)

    def commit(self) -> None:
        entries = list(self._entries)
        for order in self.orders.seen.values():
            if order.pending_audit:
                self.orders.save(order)
                entries.extend(order.pending_audit)
        for attempt in self._attempts:
            entries.extend(attempt.pending_audit)
        entries.sort(key=lambda e: e.at)
        self.audit.append(entries)
        self._tx.commit()
        for order in self.orders.seen.values():
            order.pending_audit.clear()
        for attempt in self._attempts:
            attempt.pending_audit.clear()
        self._attempts.clear()
        self._entries.clear()
        self._committed = True

    def rollback(self) -> None:
        self._tx.rollback()
