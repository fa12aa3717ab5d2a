"""The customer's wallet: a money balance per currency and a points balance.

Every change is a :class:`LedgerEntry`; the stored balance of an account always equals the
sum of its entries and never goes below zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from attrs import frozen

from ordercore._actor import Actor
from ordercore._money import Money, get_currency

__all__ = ["POINTS", "LedgerEntry", "WalletSnapshot"]

#: The asset code of the points account.
POINTS = "POINTS"


@frozen
class LedgerEntry:
    """One change to one account: ``delta`` in minor units (or points), the balance after it,
    why, on behalf of which order or refund, by whom and when."""

    id: int
    customer_id: int
    asset: str
    delta: int
    balance_after: int
    reason: str
    actor: Actor
    at: datetime
    order_number: str | None = None
    refund_id: int | None = None
    idempotency_key: str | None = None
    note: str | None = None

    @property
    def is_points(self) -> bool:
        return self.asset == POINTS

    @property
    def delta_money(self) -> Money:
        """The change as Money (only for currency accounts)."""
        return Money.from_minor(self.delta, get_currency(self.asset))

    @property
    def balance_after_money(self) -> Money:
        return Money.from_minor(self.balance_after, get_currency(self.asset))


@frozen
class WalletSnapshot:
    """A customer's balances (money per currency) and points, with the newest entries."""

    customer_id: int
    balances: Mapping[str, Money]
    points: int
    entries: tuple[LedgerEntry, ...]
