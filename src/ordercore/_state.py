"""Every transition of every ordercore state machine lives in this file.

There are five machines: orders, payment attempts, refunds, anomalies (the seed's "abnormal
order handling": identify, investigate, contact the user, resolve) and after-sales issues.
Each is a table ``{state: {event: next_state}}``; a pair that is not in its table is illegal.
One class, :class:`StateMachine`, reads the tables: :meth:`StateMachine.next_state` answers
the next state or raises :class:`~ordercore.IllegalTransition` (and the caller changes
nothing), and :meth:`StateMachine.transition` also builds the :class:`Transition` record
that the audit trail stores. The state diagrams in ``docs/`` are generated from these tables by
``scripts/gen_state_diagrams.py``; nothing else may decide what a state can become.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Generic, TypeVar

from attrs import frozen

from ._actor import Actor
from ._errors import IllegalTransition, InvalidField

__all__ = [
    "ANOMALY_MACHINE",
    "ISSUE_MACHINE",
    "ORDER_MACHINE",
    "PAYMENT_MACHINE",
    "REFUND_MACHINE",
    "AnomalyEvent",
    "AnomalyStatus",
    "CancelReason",
    "IssueEvent",
    "IssueStatus",
    "OrderEvent",
    "OrderStatus",
    "PaymentEvent",
    "PaymentStatus",
    "RefundEvent",
    "RefundStatus",
    "StateMachine",
    "Transition",
]


class _Value(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


# --------------------------------------------------------------------------------- orders
class OrderStatus(_Value):
    PENDING = "pending"
    PAID = "paid"
    COMPLETED = "completed"
    CANCELED = "canceled"
    REFUNDED = "refunded"


class OrderEvent(_Value):
    PAY = "pay"  #: the payable amount was received
    COMPLETE = "complete"  #: what was bought has been activated
    CANCEL = "cancel"  #: given up before payment (needs a CancelReason)
    REFUND = "refund"  #: refunds reached the paid amount


class CancelReason(_Value):
    USER = "user"
    TIMEOUT = "timeout"
    ADMIN = "admin"
    SYSTEM = "system"
    REJECTED = "rejected"


_S = OrderStatus
_E = OrderEvent
ORDER_TRANSITIONS: Mapping[OrderStatus, Mapping[OrderEvent, OrderStatus]] = {
    _S.PENDING: {_E.PAY: _S.PAID, _E.CANCEL: _S.CANCELED},
    _S.PAID: {_E.COMPLETE: _S.COMPLETED, _E.REFUND: _S.REFUNDED},
    _S.COMPLETED: {_E.REFUND: _S.REFUNDED},
    _S.CANCELED: {},
    _S.REFUNDED: {},
}


# ------------------------------------------------------------------------ payment attempts
class PaymentStatus(_Value):
    CREATED = "created"
    PENDING = "pending"
    AWAITING_REVIEW = "awaiting_review"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


class PaymentEvent(_Value):
    SUBMIT = "submit"  #: the checkout was created at the channel
    SUBMIT_PROOF = "submit_proof"  #: proof of a transfer is waiting for an operator
    SUCCEED = "succeed"  #: the channel (or an operator's review) confirmed the money
    FAIL = "fail"  #: the channel refused, or the review rejected
    CANCEL = "cancel"  #: we closed the attempt
    EXPIRE = "expire"  #: the attempt ran out of time unpaid
    LOSE_TRACK = "lose_track"  #: a call's outcome is unknown (timeout, 5xx)
    RESUME = "resume"  #: a query found the attempt still waiting for the payer


_P = PaymentStatus
_PE = PaymentEvent
PAYMENT_TRANSITIONS: Mapping[PaymentStatus, Mapping[PaymentEvent, PaymentStatus]] = {
    _P.CREATED: {
        _PE.SUBMIT: _P.PENDING,
        _PE.SUBMIT_PROOF: _P.AWAITING_REVIEW,
        _PE.SUCCEED: _P.SUCCEEDED,
        _PE.FAIL: _P.FAILED,
        _PE.CANCEL: _P.CANCELED,
        _PE.EXPIRE: _P.EXPIRED,
        _PE.LOSE_TRACK: _P.UNKNOWN,
    },
    _P.PENDING: {
        _PE.SUBMIT_PROOF: _P.AWAITING_REVIEW,
        _PE.SUCCEED: _P.SUCCEEDED,
        _PE.FAIL: _P.FAILED,
        _PE.CANCEL: _P.CANCELED,
        _PE.EXPIRE: _P.EXPIRED,
        _PE.LOSE_TRACK: _P.UNKNOWN,
    },
    _P.AWAITING_REVIEW: {
        _PE.SUCCEED: _P.SUCCEEDED,
        _PE.FAIL: _P.FAILED,
        _PE.CANCEL: _P.CANCELED,
    },
    _P.UNKNOWN: {
        _PE.SUCCEED: _P.SUCCEEDED,
        _PE.FAIL: _P.FAILED,
        _PE.CANCEL: _P.CANCELED,
        _PE.EXPIRE: _P.EXPIRED,
        _PE.RESUME: _P.PENDING,
    },
    _P.SUCCEEDED: {},
    # Money can still arrive after a failed try (the payer tries again on the same trade) or
    # after we gave an attempt up (a late scan, a slow bank): the platform's fact wins, and
    # the engine records an anomaly if the order was cancelled or paid meanwhile.
    _P.FAILED: {_PE.SUCCEED: _P.SUCCEEDED},
    _P.CANCELED: {_PE.SUCCEED: _P.SUCCEEDED},
    _P.EXPIRED: {_PE.SUCCEED: _P.SUCCEEDED},
}


# --------------------------------------------------------------------------------- refunds
class RefundStatus(_Value):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROCESSING = "processing"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundEvent(_Value):
    APPROVE = "approve"
    REJECT = "reject"
    START = "start"  #: the refund is being paid out (wallet or channel call)
    SUCCEED = "succeed"
    FAIL = "fail"
    LOSE_TRACK = "lose_track"  #: the channel's answer was lost; only a query resolves it
    RETRY = "retry"  #: try again with the same refund id


_R = RefundStatus
_RE = RefundEvent
REFUND_TRANSITIONS: Mapping[RefundStatus, Mapping[RefundEvent, RefundStatus]] = {
    _R.REQUESTED: {_RE.APPROVE: _R.APPROVED, _RE.REJECT: _R.REJECTED},
    _R.APPROVED: {_RE.START: _R.PROCESSING},
    _R.PROCESSING: {_RE.SUCCEED: _R.SUCCEEDED, _RE.FAIL: _R.FAILED, _RE.LOSE_TRACK: _R.UNKNOWN},
    _R.UNKNOWN: {_RE.SUCCEED: _R.SUCCEEDED, _RE.FAIL: _R.FAILED, _RE.RETRY: _R.PROCESSING},
    # A platform that reports the money went out after we recorded a failure wins: the
    # refund happened, and leaving it ``failed`` would let it be paid a second time.
    _R.FAILED: {_RE.RETRY: _R.PROCESSING, _RE.SUCCEED: _R.SUCCEEDED},
    _R.REJECTED: {},
    _R.SUCCEEDED: {},
}


# ------------------------------------------------------------------------------- anomalies
class AnomalyStatus(_Value):
    OPEN = "open"
    INVESTIGATING = "investigating"
    CONTACTING = "contacting"
    RESOLVED = "resolved"


class AnomalyEvent(_Value):
    INVESTIGATE = "investigate"  #: someone is looking into it
    CONTACT = "contact"  #: the customer has been (or is being) contacted
    RESOLVE = "resolve"  #: an action closed it (refund, resend, accept, fraud, dismiss)


_A = AnomalyStatus
_AE = AnomalyEvent
ANOMALY_TRANSITIONS: Mapping[AnomalyStatus, Mapping[AnomalyEvent, AnomalyStatus]] = {
    _A.OPEN: {
        _AE.INVESTIGATE: _A.INVESTIGATING,
        _AE.CONTACT: _A.CONTACTING,
        _AE.RESOLVE: _A.RESOLVED,
    },
    _A.INVESTIGATING: {_AE.CONTACT: _A.CONTACTING, _AE.RESOLVE: _A.RESOLVED},
    _A.CONTACTING: {_AE.INVESTIGATE: _A.INVESTIGATING, _AE.RESOLVE: _A.RESOLVED},
    _A.RESOLVED: {},
}


# ------------------------------------------------------------------------ after-sales issues
class IssueStatus(_Value):
    OPEN = "open"
    INVESTIGATING = "investigating"
    WAITING_FOR_CUSTOMER = "waiting_for_customer"
    RESOLVED = "resolved"


class IssueEvent(_Value):
    INVESTIGATE = "investigate"  #: work on it (also: the customer answered)
    ASK_CUSTOMER = "ask_customer"  #: waiting for the customer's answer
    RESOLVE = "resolve"
    REOPEN = "reopen"  #: the problem came back


_I = IssueStatus
_IE = IssueEvent
ISSUE_TRANSITIONS: Mapping[IssueStatus, Mapping[IssueEvent, IssueStatus]] = {
    _I.OPEN: {
        _IE.INVESTIGATE: _I.INVESTIGATING,
        _IE.ASK_CUSTOMER: _I.WAITING_FOR_CUSTOMER,
        _IE.RESOLVE: _I.RESOLVED,
    },
    _I.INVESTIGATING: {_IE.ASK_CUSTOMER: _I.WAITING_FOR_CUSTOMER, _IE.RESOLVE: _I.RESOLVED},
    _I.WAITING_FOR_CUSTOMER: {_IE.INVESTIGATE: _I.INVESTIGATING, _IE.RESOLVE: _I.RESOLVED},
    _I.RESOLVED: {_IE.REOPEN: _I.INVESTIGATING},
}


# ------------------------------------------------------------------------------- machinery
StateT = TypeVar("StateT", bound=_Value)
EventT = TypeVar("EventT", bound=_Value)


@frozen
class Transition(Generic[StateT, EventT]):
    """One applied transition: what the audit trail and the order history record."""

    machine: str
    entity: str
    source: StateT
    event: EventT
    target: StateT
    actor: Actor
    reason: str | None
    at: datetime


class StateMachine(Generic[StateT, EventT]):
    """Applies one transition table. It holds no state of its own."""

    def __init__(
        self,
        name: str,
        states: type[StateT],
        events: type[EventT],
        table: Mapping[StateT, Mapping[EventT, StateT]],
    ) -> None:
        missing = set(states) - set(table)
        if missing:  # pragma: no cover - guards the tables above
            raise AssertionError(f"{name} table lacks states {missing}")
        self.name = name
        self.states = states
        self.events = events
        self.table: Mapping[StateT, Mapping[EventT, StateT]] = MappingProxyType(
            {s: MappingProxyType(dict(t)) for s, t in table.items()}
        )

    def _coerce(self, kind: type[_Value], value: object, what: str) -> _Value:
        try:
            return kind(value)
        except ValueError:
            names = ", ".join(v.value for v in kind)
            raise InvalidField(
                f"unknown {self.name} {what} {value!r}; one of: {names}", field=what
            ) from None

    def next_state(self, entity: str, state: StateT | str, event: EventT | str) -> StateT:
        """The state ``event`` leads to from ``state``; raise IllegalTransition if none."""
        current = self._coerce(self.states, state, "state")
        ev = self._coerce(self.events, event, "event")
        try:
            return self.table[current][ev]  # type: ignore[index]
        except KeyError:
            allowed = ", ".join(e.value for e in self.table[current]) or "none (final state)"  # type: ignore[index]
            raise IllegalTransition(
                f"{self.name} {entity}: cannot {ev.value} when {current.value} "
                f"(allowed from {current.value}: {allowed})",
                machine=self.name,
                entity=entity,
                state=current,
                event=ev,
            ) from None

    def transition(
        self,
        entity: str,
        state: StateT | str,
        event: EventT | str,
        *,
        actor: Actor,
        at: datetime,
        reason: str | None = None,
    ) -> Transition[StateT, EventT]:
        """Check the move and describe it; the caller stores the new state and the record."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidField("transition times must be timezone-aware", field="at")
        target = self.next_state(entity, state, event)
        return Transition(
            machine=self.name,
            entity=entity,
            source=self.states(state),
            event=self.events(event),
            target=target,
            actor=actor,
            reason=reason,
            at=at,
        )

    def allowed_events(self, state: StateT | str) -> frozenset[EventT]:
        current = self._coerce(self.states, state, "state")
        return frozenset(self.table[current])  # type: ignore[index]

    def is_final(self, state: StateT | str) -> bool:
        return not self.allowed_events(state)


ORDER_MACHINE: StateMachine[OrderStatus, OrderEvent] = StateMachine(
    "order", OrderStatus, OrderEvent, ORDER_TRANSITIONS
)
PAYMENT_MACHINE: StateMachine[PaymentStatus, PaymentEvent] = StateMachine(
    "payment", PaymentStatus, PaymentEvent, PAYMENT_TRANSITIONS
)
REFUND_MACHINE: StateMachine[RefundStatus, RefundEvent] = StateMachine(
    "refund", RefundStatus, RefundEvent, REFUND_TRANSITIONS
)
ANOMALY_MACHINE: StateMachine[AnomalyStatus, AnomalyEvent] = StateMachine(
    "anomaly", AnomalyStatus, AnomalyEvent, ANOMALY_TRANSITIONS
)
ISSUE_MACHINE: StateMachine[IssueStatus, IssueEvent] = StateMachine(
    "issue", IssueStatus, IssueEvent, ISSUE_TRANSITIONS
)
