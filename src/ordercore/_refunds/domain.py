"""Refunds, automatic-approval rules and after-sales issues (pure domain: no I/O, no clock).

A :class:`Refund` gives money back for one payment: to the customer's wallet (``balance``) or
back through the channel it came from (``original``). Its status changes only through
:data:`~ordercore._state.REFUND_MACHINE`; its ``refund_no`` is the idempotency key the channel
knows (Alipay ``out_request_no``, WeChat ``out_refund_no``), fixed when the refund is requested
and reused by every retry, so a refund is paid out at most once.

Why a refund failed is data, not prose: :class:`RefundFailure` names each item of the
"refund failed" checklist and says whether trying again can help.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from attrs import define, field, frozen

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._errors import ConfigurationError, InvalidField
from ordercore._money import Money, to_decimal
from ordercore._state import (
    ISSUE_MACHINE,
    REFUND_MACHINE,
    IssueEvent,
    IssueStatus,
    RefundEvent,
    RefundStatus,
    Transition,
)

__all__ = [
    "OPEN_REFUND_STATES",
    "RESERVING_REFUND_STATES",
    "AfterSalesIssue",
    "AutoApproval",
    "IssueStep",
    "Refund",
    "RefundDestination",
    "RefundFailure",
    "required_text",
]


class RefundDestination(str, enum.Enum):
    """Where refunded money goes."""

    BALANCE = "balance"  #: credited to the customer's wallet, in one transaction
    ORIGINAL = "original"  #: back through the channel the payment came from

    def __str__(self) -> str:
        return self.value


class RefundFailure(str, enum.Enum):
    """Why a refund could not be made: the seed's "refund failed" checklist as codes.

    :attr:`retryable` says whether ``refunds retry`` (same refund id) can succeed later
    without anything else changing.
    """

    #: the payment's channel is not configured (or disabled) here
    CHANNEL_NOT_CONFIGURED = "channel_not_configured"
    #: the channel cannot refund (or not partially)
    REFUND_UNSUPPORTED = "refund_unsupported"
    #: the merchant account at the platform lacks the funds (e.g. Alipay
    #: ``ACQ.SELLER_BALANCE_NOT_ENOUGH``, WeChat ``NOT_ENOUGH``)
    MERCHANT_BALANCE_INSUFFICIENT = "merchant_balance_insufficient"
    #: something the refund needs is missing (the platform's trade number, a key, the
    #: buyer's account)
    MISSING_INFORMATION = "missing_information"
    #: past the channel's refund window (``refund_deadline_days``): refund to balance instead
    DEADLINE_PASSED = "deadline_passed"
    #: the platform refused for another business reason (see ``channel_code``)
    CHANNEL_REFUSED = "channel_refused"
    #: the platform had a system error; trying again later may work
    CHANNEL_ERROR = "channel_error"

    def __str__(self) -> str:
        return self.value

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE: Final = frozenset(
    {RefundFailure.MERCHANT_BALANCE_INSUFFICIENT, RefundFailure.CHANNEL_ERROR}
)

#: Refunds that hold part of a payment's refundable amount: everything but a rejection and a
#: failure (a failed refund gives its amount back; a retry checks it again).
RESERVING_REFUND_STATES: Final = frozenset(
    {
        RefundStatus.REQUESTED,
        RefundStatus.APPROVED,
        RefundStatus.PROCESSING,
        RefundStatus.UNKNOWN,
        RefundStatus.SUCCEEDED,
    }
)
#: Refunds whose outcome the platform has yet to tell (queried by the job runner).
OPEN_REFUND_STATES: Final = frozenset({RefundStatus.PROCESSING, RefundStatus.UNKNOWN})


@define
class Refund:
    """One refund of (part of) one payment.

    ``out_trade_no`` names the payment attempt; it is None for an order paid by hand (then
    only ``balance`` is possible). ``counts_toward_order`` is false for the refund of a
    payment the order never took (a duplicate payment, a payment after cancellation): such a
    refund does not change the order's refunded amount.
    """

    refund_no: str
    order_id: int
    order_number: str
    customer_id: int
    amount: Money
    destination: RefundDestination
    reason: str
    requested_by: Actor
    requested_at: datetime
    out_trade_no: str | None = None
    channel: str | None = None
    counts_toward_order: bool = True
    status: RefundStatus = RefundStatus.REQUESTED
    decided_by: Actor | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None
    failure: RefundFailure | None = None
    failure_message: str | None = None
    channel_code: str | None = None
    channel_refund_no: str | None = None
    completed_at: datetime | None = None
    next_check_at: datetime | None = None
    check_count: int = 0
    tries: int = 0
    #: an earlier call's outcome was lost, so the money may be out: only a query or a
    #: notification can fail this refund now, never the error answer of a later call
    uncertain: bool = False
    id: int | None = None
    pending_audit: list[AuditEntry] = field(factory=list, eq=False, repr=False)

    @property
    def retryable(self) -> bool:
        """A failed refund that ``retry`` may turn into money (an unknown one always may)."""
        if self.status is RefundStatus.UNKNOWN:
            return True
        return self.status is RefundStatus.FAILED and (
            self.failure is None or self.failure.retryable
        )

    def apply(
        self, event: RefundEvent, actor: Actor, at: datetime, reason: str | None = None
    ) -> Transition[RefundStatus, RefundEvent]:
        transition = REFUND_MACHINE.transition(
            self.refund_no, self.status, event, actor=actor, at=at, reason=reason
        )
        self.status = transition.target
        self.pending_audit.append(
            AuditEntry(
                entity_kind="order",
                entity_id=self.order_number,
                action=f"refund.{event.value}",
                actor=actor,
                at=at,
                before={"refund": self.refund_no, "status": transition.source.value},
                after={
                    "refund": self.refund_no,
                    "status": transition.target.value,
                    "amount": str(self.amount),
                    "destination": self.destination.value,
                },
                reason=reason,
            )
        )
        if event in (RefundEvent.APPROVE, RefundEvent.REJECT):
            self.decided_by, self.decided_at, self.decision_note = actor, at, reason
        if transition.target is RefundStatus.SUCCEEDED:
            self.completed_at = at
            self.failure = self.failure_message = None
        if transition.target is RefundStatus.UNKNOWN:
            self.uncertain = True
        if transition.target not in OPEN_REFUND_STATES:
            self.next_check_at = None
        return transition

    def fail(
        self,
        failure: RefundFailure,
        actor: Actor,
        at: datetime,
        message: str | None,
        *,
        channel_code: str | None = None,
    ) -> Transition[RefundStatus, RefundEvent]:
        self.failure = failure
        self.failure_message = message
        self.channel_code = channel_code
        return self.apply(RefundEvent.FAIL, actor, at, f"{failure.value}: {message or '-'}")

    def can(self, event: RefundEvent) -> bool:
        return event in REFUND_MACHINE.allowed_events(self.status)


@frozen
class AutoApproval:
    """Rules under which a refund request is approved without an operator (off unless
    configured). Every rule given must hold:

    * ``max_amount`` — the refund is at most this much (in the order's currency);
    * ``within_hours`` — the payment was made at most this many hours ago;
    * ``never_activated`` — the order was never activated (it is still ``paid``);
    * ``destinations`` — the refund goes to one of these (default: both).

    In TOML::

        [refunds.auto_approve]
        max_amount = "50.00"
        within_hours = 24
        never_activated = true
        destinations = ["balance"]
    """

    max_amount: Decimal | None = None
    within_hours: int | None = None
    never_activated: bool = False
    destinations: frozenset[RefundDestination] = frozenset(RefundDestination)

    @classmethod
    def from_table(cls, table: object) -> AutoApproval:
        if not isinstance(table, dict):
            raise ConfigurationError("[refunds.auto_approve] must be a table")
        unknown = set(table) - {"max_amount", "within_hours", "never_activated", "destinations"}
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) in [refunds.auto_approve]: {', '.join(sorted(unknown))}"
            )
        max_amount = None
        if table.get("max_amount") is not None:
            try:
                max_amount = to_decimal(table["max_amount"], what="max_amount")
            except Exception as exc:
                raise ConfigurationError(
                    f'[refunds.auto_approve] max_amount: {exc} (write it as a string, "50.00")'
                ) from None
        hours = table.get("within_hours")
        if hours is not None and (
            not isinstance(hours, int) or isinstance(hours, bool) or hours < 0
        ):
            raise ConfigurationError("[refunds.auto_approve] within_hours must be hours ≥ 0")
        never = table.get("never_activated", False)
        if not isinstance(never, bool):
            raise ConfigurationError("[refunds.auto_approve] never_activated must be true/false")
        try:
            destinations = frozenset(
                RefundDestination(d) for d in table.get("destinations", ["balance", "original"])
            )
        except (ValueError, TypeError):
            raise ConfigurationError(
                "[refunds.auto_approve] destinations must list balance and/or original"
            ) from None
        return cls(max_amount, hours, never, destinations)

    def allows(
        self,
        *,
        amount: Money,
        destination: RefundDestination,
        paid_at: datetime | None,
        activated: bool,
        now: datetime,
    ) -> bool:
        if destination not in self.destinations:
            return False
        if self.max_amount is not None and amount.amount > self.max_amount:
            return False
        if self.within_hours is not None and (
            paid_at is None or now - paid_at > timedelta(hours=self.within_hours)
        ):
            return False
        return not (self.never_activated and activated)


@frozen
class IssueStep:
    """One step of an after-sales issue: a status change, with who, when and why."""

    status: IssueStatus
    actor: Actor
    at: datetime
    note: str


@define
class AfterSalesIssue:
    """A customer's problem with an order, followed until it is resolved
    (open → investigating → waiting for customer → resolved)."""

    order_number: str
    subject: str
    opened_by: Actor
    opened_at: datetime
    status: IssueStatus = IssueStatus.OPEN
    steps: list[IssueStep] = field(factory=list)
    resolved_at: datetime | None = None
    id: int | None = None
    pending_audit: list[AuditEntry] = field(factory=list, eq=False, repr=False)

    def move(
        self, event: IssueEvent, actor: Actor, at: datetime, note: str
    ) -> Transition[IssueStatus, IssueEvent]:
        transition = ISSUE_MACHINE.transition(
            f"#{self.id}", self.status, event, actor=actor, at=at, reason=note
        )
        self.status = transition.target
        self.steps.append(IssueStep(transition.target, actor, at, note))
        self.resolved_at = at if transition.target is IssueStatus.RESOLVED else None
        self.pending_audit.append(
            AuditEntry(
                entity_kind="order",
                entity_id=self.order_number,
                action=f"issue.{event.value}",
                actor=actor,
                at=at,
                before={"issue": self.id, "status": transition.source.value},
                after={"issue": self.id, "status": transition.target.value},
                reason=note,
            )
        )
        return transition


def required_text(text: str | None, what: str) -> str:
    """``text`` stripped; InvalidField naming ``what`` when it is missing or blank."""
    if text is None or not str(text).strip():
        raise InvalidField(f"a refund {what} is required", field=what)
    return str(text).strip()
