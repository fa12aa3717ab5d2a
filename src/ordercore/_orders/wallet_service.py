"""Wallets: balance and points ledgers, credits and debits, and giving deductions back.

Each public method is one unit of work: it commits everything or nothing. Every call that
changes something takes an :class:`~ordercore.Actor`, checks its permission, validates its
input before it writes, and leaves an audit record of the change.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from ordercore._actor import Actor
from ordercore._audit.chain import (
    AuditEntry,
)
from ordercore._context import Service, check_id, check_limit
from ordercore._errors import (
    InvalidAmount,
    InvalidField,
)
from ordercore._money import Money, as_money, get_currency
from ordercore._permissions import Permission

from .domain import (
    Order,
)
from .wallet import POINTS, LedgerEntry, WalletSnapshot

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


_P = Permission


# -------------------------------------------------------------------------------- wallet
class WalletService(Service):
    """Balances and points. Every change is a ledger entry and an audit record."""

    def _apply(
        self,
        customer_id: int,
        asset: str,
        delta: int,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None,
        note: str | None,
    ) -> LedgerEntry:
        check_id(customer_id, "customer_id")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 64:
            raise InvalidField("a wallet change needs a reason (1-64 characters)", field="reason")

        def work(uow: UnitOfWork, now: datetime) -> LedgerEntry:
            self._check(actor, _P.WALLET_ADJUST, f"customer:{customer_id}")
            uow.customers.get(customer_id)
            entry, created = uow.wallet.apply_tracked(
                customer_id=customer_id,
                asset=asset,
                delta=delta,
                reason=reason,
                actor=actor,
                at=now,
                idempotency_key=idempotency_key,
                note=note,
            )
            if created:  # an idempotent repeat changed nothing and is not audited again
                uow.record(wallet_audit(entry))
            return entry

        try:
            return self._run(work)
        except IntegrityError:
            # Two calls with one idempotency key raced; the first won. Answer as it did.
            if idempotency_key is None:
                raise
            existing = self._read(lambda uow: uow.wallet.by_idempotency_key(idempotency_key))
            if existing is None:  # pragma: no cover - the key's row must exist now
                raise
            return self._apply(
                customer_id,
                asset,
                delta,
                reason=reason,
                actor=actor,
                idempotency_key=idempotency_key,
                note=note,
            )

    def credit(
        self,
        customer_id: int,
        amount: Money | Decimal | str,
        *,
        currency: str | None = None,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        """Add ``amount`` to the customer's balance in its currency: a ``Money``, or a
        Decimal or decimal text with ``currency``."""
        amount = as_money(amount, currency)
        if not amount.is_positive():
            raise InvalidAmount(f"a credit must be positive, not {amount}", field="amount")
        return self._apply(
            customer_id,
            amount.currency.code,
            amount.to_minor(),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def debit(
        self,
        customer_id: int,
        amount: Money | Decimal | str,
        *,
        currency: str | None = None,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        """Take ``amount`` from the balance; never below zero (InsufficientFunds). Like
        :meth:`credit`, a ``Money`` or a decimal amount with ``currency``."""
        amount = as_money(amount, currency)
        if not amount.is_positive():
            raise InvalidAmount(f"a debit must be positive, not {amount}", field="amount")
        return self._apply(
            customer_id,
            amount.currency.code,
            -amount.to_minor(),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def credit_points(
        self,
        customer_id: int,
        points: int,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        return self._apply(
            customer_id,
            POINTS,
            _points(points),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def debit_points(
        self,
        customer_id: int,
        points: int,
        *,
        reason: str,
        actor: Actor,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        return self._apply(
            customer_id,
            POINTS,
            -_points(points),
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            note=note,
        )

    def balance(self, customer_id: int, currency: str) -> Money:
        check_id(customer_id, "customer_id")
        cur = get_currency(currency)
        return self._read(
            lambda uow: Money.from_minor(uow.wallet.balance(customer_id, cur.code), cur)
        )

    def points(self, customer_id: int) -> int:
        check_id(customer_id, "customer_id")
        return self._read(lambda uow: uow.wallet.balance(customer_id, POINTS))

    def show(self, customer_id: int, *, limit: int = 20) -> WalletSnapshot:
        check_id(customer_id, "customer_id")

        def work(uow: UnitOfWork) -> WalletSnapshot:
            uow.customers.get(customer_id)
            raw = uow.wallet.balances(customer_id)
            return WalletSnapshot(
                customer_id=customer_id,
                balances={a: Money.from_minor(v, a) for a, v in raw.items() if a != POINTS},
                points=raw.get(POINTS, 0),
                entries=tuple(uow.wallet.entries(customer_id, limit=check_limit(limit))),
            )

        return self._read(work)

    def ledger(
        self, customer_id: int, *, limit: int = 50, before_id: int | None = None
    ) -> list[LedgerEntry]:
        return self._read(
            lambda uow: uow.wallet.entries(
                customer_id, limit=check_limit(limit), before_id=before_id
            )
        )

    def ledger_sum(self, customer_id: int, asset: str) -> int:
        """Sum of the account's ledger entries (equals its stored balance)."""
        return self._read(lambda uow: uow.wallet.ledger_sum(customer_id, asset))


def _points(points: int) -> int:
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidField(f"points must be a whole number ≥ 1, not {points!r}", field="points")
    return points


def wallet_audit(entry: LedgerEntry) -> AuditEntry:
    return AuditEntry(
        entity_kind="wallet",
        entity_id=f"{entry.customer_id}:{entry.asset}",
        action="wallet.credit" if entry.delta > 0 else "wallet.debit",
        actor=entry.actor,
        at=entry.at,
        before={"balance": entry.balance_after - entry.delta},
        after={"balance": entry.balance_after, "order": entry.order_number},
        reason=entry.reason,
    )


# ------------------------------------------------------------------------------- coupons
def return_deductions(uow: UnitOfWork, order: Order, actor: Actor, now: datetime, why: str) -> None:
    """Give back the balance and points deducted when ``order`` was priced (a cancellation,
    ``why="cancel"``, or a full refund, ``why="refund"``): ledger reason
    ``order.<why>_return``, idempotent per deduction entry. Part of the caller's transaction."""
    assert order.id is not None
    for entry in uow.wallet.for_order(order.id):
        if entry.reason in ("order.balance_deduction", "order.points_deduction"):
            back = uow.wallet.apply(
                customer_id=entry.customer_id,
                asset=entry.asset,
                delta=-entry.delta,
                reason=f"order.{why}_return",
                actor=actor,
                at=now,
                order_id=order.id,
                idempotency_key=f"{why}-return:{entry.id}",
            )
            uow.record(wallet_audit(back))
