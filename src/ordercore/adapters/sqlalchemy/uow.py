"""The unit of work: one transaction, rolled back unless committed."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from types import TracebackType

from sqlalchemy import Connection, Engine, text

from ordercore._audit.chain import AuditEntry
from ordercore._orders.listing import OrderFilter, Page
from ordercore._payments.domain import PaymentAttempt
from ordercore._refunds.domain import AfterSalesIssue, Refund

from . import _driver as driver
from .audit import AuditRepository
from .backup import BackupStore
from .coupons import CouponRepository
from .listing import list_orders
from .orders import OrderRepository
from .payments import PaymentRepository
from .refunds import RefundRepository
from .repositories import CustomerRepository, ProductRepository
from .risk import RiskRepository
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

    def __init__(self, engine: Engine, tables: Tables, audit_key: bytes | None = None) -> None:
        self.engine = engine
        self.tables = tables
        self.audit_key = audit_key
        self._entries: list[AuditEntry] = []
        self._attempts: list[PaymentAttempt | Refund | AfterSalesIssue] = []
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.conn = self.engine.connect()
        self._tx = self.conn.begin()
        return self

    # The repositories, made when first used (most units of work use three or four).
    @cached_property
    def audit(self) -> AuditRepository:
        return AuditRepository(self.conn, self.tables, self.audit_key)

    @cached_property
    def customers(self) -> CustomerRepository:
        return CustomerRepository(self.conn, self.tables)

    @cached_property
    def products(self) -> ProductRepository:
        return ProductRepository(self.conn, self.tables)

    @cached_property
    def orders(self) -> OrderRepository:
        return OrderRepository(self.conn, self.tables, self.audit)

    @cached_property
    def coupons(self) -> CouponRepository:
        return CouponRepository(self.conn, self.tables)

    @cached_property
    def wallet(self) -> WalletRepository:
        return WalletRepository(self.conn, self.tables)

    @cached_property
    def payments(self) -> PaymentRepository:
        return PaymentRepository(self.conn, self.tables, self.orders)

    @cached_property
    def refunds(self) -> RefundRepository:
        return RefundRepository(self.conn, self.tables)

    @cached_property
    def risk(self) -> RiskRepository:
        return RiskRepository(self.conn, self.tables)

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

    def list_orders(self, flt: OrderFilter, *, limit: int, cursor: str | None) -> Page:
        """One page of the order list (:func:`.listing.list_orders`)."""
        return list_orders(self.conn, self.tables, flt, limit=limit, cursor=cursor)

    def snapshot(self) -> None:
        """Make this unit of work's reads one consistent snapshot (REPEATABLE READ on
        PostgreSQL and MariaDB; call it before the first query). SQLite reads each statement
        on its own unless the host opened a transaction."""
        if self.conn.dialect.name in ("postgresql", "mysql", "mariadb"):
            self.conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))

    def backup_store(self) -> BackupStore:
        """Every table, for a backup or a restore (:class:`.backup.BackupStore`)."""
        return BackupStore(self.conn, self.tables)

    def record(self, entry: AuditEntry) -> None:
        """Queue an audit entry; it is stored at commit, in this transaction."""
        self._entries.append(entry)

    def save_attempt(self, attempt: PaymentAttempt, now: datetime) -> None:
        """Write a payment attempt back; its audit entries are stored at commit."""
        if attempt.id is None:
            self.payments.add_attempt(attempt, now)
        else:
            self.payments.save_attempt(attempt, now)
        self._collect(attempt)

    def save_refund(self, refund: Refund, now: datetime) -> None:
        """Write a refund back (insert it when new); its audit entries are stored at commit."""
        if refund.id is None:
            attempt_id = None
            if refund.out_trade_no is not None:
                attempt_id = self.payments.attempt(refund.out_trade_no).id
            self.refunds.add(refund, attempt_id=attempt_id, now=now)
        else:
            self.refunds.save(refund, now)
        self._collect(refund)

    def save_issue(self, issue: AfterSalesIssue, *, order_id: int, new_steps: int = 0) -> None:
        """Write an after-sales issue back with its ``new_steps`` last steps."""
        if issue.id is None:
            self.refunds.add_issue(issue, order_id=order_id)
        else:
            self.refunds.save_issue(issue, issue.steps[len(issue.steps) - new_steps :])
        self._collect(issue)

    def _collect(self, item: PaymentAttempt | Refund | AfterSalesIssue) -> None:
        if all(a is not item for a in self._attempts):
            self._attempts.append(item)

    def commit(self) -> None:
        entries = list(self._entries)
        orders: OrderRepository | None = self.__dict__.get("orders")  # None: never used
        seen = () if orders is None else tuple(orders.seen.values())
        for order in seen:
            if order.pending_audit:
                assert orders is not None
                orders.save(order)
                entries.extend(order.pending_audit)
        if orders is not None:
            orders.write_deferred()
        for attempt in self._attempts:
            entries.extend(attempt.pending_audit)
        if entries:
            entries.sort(key=lambda e: e.at)
            self.audit.append(entries)
        # the writes still waiting (PostgreSQL, see _driver.defer), with their checks, while
        # the transaction can still be rolled back as usual
        driver.flush(self.conn)
        self._tx.commit()
        for order in seen:
            order.pending_audit.clear()
        for attempt in self._attempts:
            attempt.pending_audit.clear()
        self._attempts.clear()
        self._entries.clear()
        self._committed = True

    def rollback(self) -> None:
        self._tx.rollback()
