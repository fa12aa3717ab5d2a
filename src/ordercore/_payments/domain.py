"""Payment attempts, anomalies and activation modes (pure domain)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from attrs import define, field

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._money import Money
from ordercore._state import PAYMENT_MACHINE, PaymentEvent, PaymentStatus, Transition

from .coins import CoinQuote

__all__ = [
    "OPEN_ATTEMPT_STATES",
    "ActivationMode",
    "PaymentAttempt",
    "backoff",
]


class ActivationMode(str, enum.Enum):
    """How a paid order is activated: at once, by an operator, or at a set later time."""

    AUTO = "auto"
    MANUAL = "manual"
    DELAYED = "delayed"

    def __str__(self) -> str:
        return self.value


OPEN_ATTEMPT_STATES: Final = frozenset(
    {PaymentStatus.CREATED, PaymentStatus.PENDING, PaymentStatus.UNKNOWN}
)

# Reconciliation backoff (Kill Bill's janitor): minutes, then hours, then days.
_BACKOFF: Final = (
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=8),
    timedelta(days=1),
)


def backoff(attempt: int) -> timedelta:
    """The wait before try number ``attempt + 1`` (0-based attempts so far)."""
    return _BACKOFF[min(max(attempt, 0), len(_BACKOFF) - 1)]


@define
class PaymentAttempt:
    """One try at paying an order through one channel. Its status changes only through
    :data:`PAYMENT_MACHINE`; every change is collected in ``pending_audit``."""

    order_id: int
    order_number: str
    channel: str
    method: str
    out_trade_no: str
    amount: Money
    created_at: datetime
    status: PaymentStatus = PaymentStatus.CREATED
    channel_trade_no: str | None = None
    received: Money | None = None
    checkout: Mapping[str, Any] | None = None
    proof_reference: str | None = None
    proof_file: str | None = None
    failure_reason: str | None = None
    paid_at: datetime | None = None
    expires_at: datetime | None = None
    next_check_at: datetime | None = None
    check_count: int = 0
    #: True for the attempt whose money paid the order (not a duplicate or a late payment)
    settles_order: bool = False
    #: crypto: what the gateway locked (coin amount, rate, expiry); None for fiat channels
    quote: CoinQuote | None = None
    #: crypto: the coin amount the gateway last reported as arrived
    coin_received: Money | None = None
    id: int | None = None
    pending_audit: list[AuditEntry] = field(factory=list, eq=False, repr=False)

    def apply(
        self, event: PaymentEvent, actor: Actor, at: datetime, reason: str | None = None
    ) -> Transition[PaymentStatus, PaymentEvent]:
        transition = PAYMENT_MACHINE.transition(
            self.out_trade_no, self.status, event, actor=actor, at=at, reason=reason
        )
        self.status = transition.target
        self.pending_audit.append(
            AuditEntry(
                entity_kind="order",
                entity_id=self.order_number,
                action=f"payment.{event.value}",
                actor=actor,
                at=at,
                before={"attempt": self.out_trade_no, "status": transition.source.value},
                after={"attempt": self.out_trade_no, "status": transition.target.value},
                reason=reason,
            )
        )
        if transition.target is PaymentStatus.SUCCEEDED:
            self.paid_at = at
        if transition.target not in OPEN_ATTEMPT_STATES:
            self.next_check_at = None
        return transition

    def can(self, event: PaymentEvent) -> bool:
        return event in PAYMENT_MACHINE.allowed_events(self.status)
