"""Wallet accounts and their ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ordercore._actor import Actor, ActorKind
from ordercore._errors import IdempotencyConflict, InsufficientFunds
from ordercore._money import Money
from ordercore._orders.wallet import POINTS, LedgerEntry
from ordercore.adapters.sqlalchemy.tables import Tables

__all__ = ["WalletRepository"]


class WalletRepository:
    """Balances change only through :meth:`apply`, which writes the ledger entry and moves the
    balance in the same transaction with one conditional UPDATE (``balance + delta >= 0``):
    concurrent debits queue on the row and the second sees the first's result, so no balance
    is ever overspent."""

    def __init__(self, conn: Connection, tables: Tables) -> None:
        self.conn = conn
        self.accounts = tables.wallet_accounts
        self.ledger = tables.wallet_ledger
        self.orders = tables.orders

    def _entry(self, row: Row[Any]) -> LedgerEntry:
        return LedgerEntry(
            id=row.id,
            customer_id=row.customer_id,
            asset=row.asset,
            delta=int(row.delta),
            balance_after=int(row.balance_after),
            reason=row.reason,
            actor=Actor(ActorKind(row.actor_kind), row.actor_id, row.actor_role),
            at=row.at,
            order_number=row.number,
            refund_id=row.refund_id,
            idempotency_key=row.idempotency_key,
            note=row.note,
        )

    def _select(self) -> Any:
        return select(self.ledger, self.orders.c.number).select_from(
            self.ledger.outerjoin(self.orders, self.orders.c.id == self.ledger.c.order_id)
        )

    def balance(self, customer_id: int, asset: str, *, lock: bool = False) -> int:
        query = select(self.accounts.c.balance).where(
            and_(self.accounts.c.customer_id == customer_id, self.accounts.c.asset == asset)
        )
        if lock:
            query = query.with_for_update()
        value = self.conn.execute(query).scalar()
        return 0 if value is None else int(value)

    def balances(self, customer_id: int) -> dict[str, int]:
        rows = self.conn.execute(
            select(self.accounts.c.asset, self.accounts.c.balance)
            .where(self.accounts.c.customer_id == customer_id)
            .order_by(self.accounts.c.asset)
        )
        return {r.asset: int(r.balance) for r in rows}

    def by_idempotency_key(self, key: str) -> LedgerEntry | None:
        row = self.conn.execute(self._select().where(self.ledger.c.idempotency_key == key)).first()
        return None if row is None else self._entry(row)

    def apply(self, **change: Any) -> LedgerEntry:
        """Move an account by ``delta`` and record why (see :meth:`apply_tracked`)."""
        return self.apply_tracked(**change)[0]

    def apply_tracked(
        self,
        *,
        customer_id: int,
        asset: str,
        delta: int,
        reason: str,
        actor: Actor,
        at: datetime,
        order_id: int | None = None,
        refund_id: int | None = None,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """Move an account by ``delta`` and record why: ``(entry, created)``. A repeated
        idempotency key returns the first entry (``created`` false) if it describes the same
        change, else raises IdempotencyConflict."""
        if idempotency_key is not None:
            existing = self.by_idempotency_key(idempotency_key)
            if existing is not None:
                same = (existing.customer_id, existing.asset, existing.delta, existing.reason) == (
                    customer_id,
                    asset,
                    delta,
                    reason,
                )
                if not same:
                    raise IdempotencyConflict(
                        f"idempotency key {idempotency_key!r} was used for another wallet change",
                        idempotency_key=idempotency_key,
                    )
                return existing, False
        if delta > 0:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(
                        insert(self.accounts).values(
                            customer_id=customer_id, asset=asset, balance=0
                        )
                    )
            except IntegrityError:
                pass  # the account exists
        where = and_(
            self.accounts.c.customer_id == customer_id,
            self.accounts.c.asset == asset,
            self.accounts.c.balance + delta >= 0,
        )
        result = self.conn.execute(
            update(self.accounts).where(where).values(balance=self.accounts.c.balance + delta)
        )
        if result.rowcount != 1:
            if idempotency_key is not None:
                # We may have waited on the row for a concurrent call with the same key: once
                # it committed, its entry is visible, and it is this call's answer.
                repeat = self.by_idempotency_key(idempotency_key)
                if repeat is not None:
                    return self.apply_tracked(
                        customer_id=customer_id,
                        asset=asset,
                        delta=delta,
                        reason=reason,
                        actor=actor,
                        at=at,
                        order_id=order_id,
                        refund_id=refund_id,
                        idempotency_key=idempotency_key,
                        note=note,
                    )
            held = self.balance(customer_id, asset)
            if asset == POINTS:
                what = f"{held} points, {-delta} needed"
            else:
                what = f"{Money.from_minor(held, asset)}, {Money.from_minor(-delta, asset)} needed"
            raise InsufficientFunds(
                f"customer {customer_id} holds {what}", customer_id=customer_id, asset=asset
            )
        after = self.balance(customer_id, asset)
        row_id = self.conn.execute(
            insert(self.ledger).values(
                customer_id=customer_id,
                asset=asset,
                delta=delta,
                balance_after=after,
                reason=reason,
                order_id=order_id,
                refund_id=refund_id,
                actor_kind=actor.kind.value,
                actor_id=actor.id,
                actor_role=actor.role,
                at=at,
                idempotency_key=idempotency_key,
                note=note,
            )
        ).inserted_primary_key
        assert row_id is not None
        row = self.conn.execute(self._select().where(self.ledger.c.id == row_id[0])).one()
        return self._entry(row), True

    def entries(
        self,
        customer_id: int,
        *,
        limit: int,
        before_id: int | None = None,
        asset: str | None = None,
    ) -> list[LedgerEntry]:
        """Newest first."""
        query = (
            self._select()
            .where(self.ledger.c.customer_id == customer_id)
            .order_by(self.ledger.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(self.ledger.c.id < before_id)
        if asset is not None:
            query = query.where(self.ledger.c.asset == asset)
        return [self._entry(r) for r in self.conn.execute(query)]

    def for_order(self, order_id: int) -> list[LedgerEntry]:
        query = self._select().where(self.ledger.c.order_id == order_id).order_by(self.ledger.c.id)
        return [self._entry(r) for r in self.conn.execute(query)]

    def ledger_sum(self, customer_id: int, asset: str) -> int:
        value = self.conn.execute(
            select(func.coalesce(func.sum(self.ledger.c.delta), 0)).where(
                and_(self.ledger.c.customer_id == customer_id, self.ledger.c.asset == asset)
            )
        ).scalar_one()
        return int(value)
