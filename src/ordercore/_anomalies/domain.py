"""The anomaly: something about money that needs a person (a duplicate payment, an amount
that does not match, a payment after cancellation, ...), its kinds, and the actions that
resolve it. Pure: its workflow's transitions are in :mod:`ordercore._state`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import frozen

from ordercore._state import AnomalyStatus

__all__ = ["ACTION_FITS", "Anomaly", "AnomalyKind", "AnomalyStatus", "ResolutionAction"]


class AnomalyKind(str, enum.Enum):
    DUPLICATE_PAYMENT = "duplicate_payment"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    PAYMENT_AFTER_CANCEL = "payment_after_cancel"
    PAYMENT_NOT_RECEIVED = "payment_not_received"
    FRAUD = "fraud"
    #: a refund the platform made that no longer fits the order (it had failed and the
    #: amount was refunded again): money went out twice
    OVER_REFUND = "over_refund"
    #: crypto: fewer coins arrived than the gateway locked: the order is not paid
    UNDERPAYMENT = "underpayment"
    #: crypto: more coins arrived than locked: the order is paid, the excess is recorded
    OVERPAYMENT = "overpayment"
    #: crypto: the coins arrived after the invoice expired: not applied until an operator
    #: accepts (or dismisses) it
    LATE_PAYMENT = "late_payment"

    def __str__(self) -> str:
        return self.value


@frozen
class Anomaly:
    """Something about money that needs a person: kind, evidence, where it stands."""

    id: int
    kind: AnomalyKind
    status: AnomalyStatus
    evidence: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    order_number: str | None = None
    out_trade_no: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None


class ResolutionAction(str, enum.Enum):
    """What resolving an anomaly does."""

    DISMISS = "dismiss"
    REFUND = "refund"
    RESEND = "resend"
    ACCEPT = "accept"
    FRAUD = "fraud"

    def __str__(self) -> str:
        return self.value


#: Which actions fit which anomalies (dismiss and fraud fit every kind).
ACTION_FITS: dict[ResolutionAction, frozenset[AnomalyKind]] = {
    ResolutionAction.REFUND: frozenset(
        {
            AnomalyKind.DUPLICATE_PAYMENT,
            AnomalyKind.PAYMENT_AFTER_CANCEL,
            AnomalyKind.AMOUNT_MISMATCH,
        }
    ),
    ResolutionAction.RESEND: frozenset({AnomalyKind.PAYMENT_NOT_RECEIVED}),
    ResolutionAction.ACCEPT: frozenset(
        {AnomalyKind.AMOUNT_MISMATCH, AnomalyKind.UNDERPAYMENT, AnomalyKind.LATE_PAYMENT}
    ),
}
