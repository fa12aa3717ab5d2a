"""The anomaly workflow (the seed's "abnormal order handling"): identify → investigate →
contact the user → resolve → record.

Anomalies move through :data:`~ordercore._state.ANOMALY_MACHINE` with a note at every step,
each step an audit record on the order. Resolving is an *action*, not just a word:

* ``refund`` — give back a payment the order never took (a duplicate payment, a payment
  after cancellation), through the refund engine;
* ``resend`` — ask the channel again (and replay what it sent) for a payment the customer
  says they made;
* ``accept`` — an operator accepts a payment of the wrong amount: the order is paid with it;
* ``fraud`` — the order is flagged ``fraud`` (blacklists belong to risk control);
* ``dismiss`` — nothing to do, say why.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._context import Service, check_limit
from ordercore._errors import InvalidField, PermissionDenied, RefundError
from ordercore._money import Money
from ordercore._payments.applying import paid_key
from ordercore._permissions import Permission
from ordercore._refunds.domain import RefundDestination
from ordercore._state import ANOMALY_MACHINE, AnomalyEvent, OrderStatus, PaymentEvent, PaymentStatus

from .domain import ACTION_FITS, Anomaly, AnomalyKind, AnomalyStatus, ResolutionAction

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = ["AnomalyService"]

_P = Permission


def _note(note: str | None) -> str:
    if note is None or not note.strip():
        raise InvalidField("say what was done (a note is required)", field="note")
    return note.strip()


class AnomalyService(Service):
    """Anomalies: list, show, open by hand, investigate, contact, resolve by an action."""

    def list(
        self,
        *,
        limit: int = 50,
        before_id: int | None = None,
        status: str | None = None,
        kind: str | None = None,
        order_number: str | None = None,
    ) -> builtins.list[Anomaly]:
        def work(uow: UnitOfWork) -> builtins.list[Anomaly]:
            order_id = uow.payments.order_id(order_number) if order_number else None
            return uow.payments.anomalies(
                limit=check_limit(limit),
                before_id=before_id,
                status=status,
                kind=kind,
                order_id=order_id,
            )

        return self._read(work)

    def get(self, anomaly_id: int) -> Anomaly:
        return self._read(lambda uow: uow.payments.anomaly(anomaly_id))

    def open(
        self,
        number: str,
        *,
        kind: AnomalyKind | str,
        actor: Actor,
        note: str,
        out_trade_no: str | None = None,
    ) -> Anomaly:
        """Record an anomaly by hand (identify): a customer says they paid and the order is
        unpaid (``payment_not_received``), a suspicion of fraud..."""
        try:
            what = AnomalyKind(kind)
        except ValueError:
            names = ", ".join(k.value for k in AnomalyKind)
            raise InvalidField(f"anomaly kind must be one of {names}", field="kind") from None
        text = _note(note)

        def work(uow: UnitOfWork, now: datetime) -> Anomaly:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.PAYMENTS_REVIEW, f"order:{number}")
            assert order.id is not None
            attempt_id = None
            if out_trade_no is not None:
                attempt = uow.payments.attempt(out_trade_no)
                if attempt.order_id != order.id:
                    raise InvalidField(
                        f"payment {out_trade_no} is not order {number}'s", field="payment"
                    )
                attempt_id = attempt.id
            anomaly_id, _created = uow.payments.open_anomaly(
                kind=what,
                dedupe_key=f"{what.value}:manual:{number}:{now.isoformat()}",
                evidence={"reported_by": str(actor), "note": text, "out_trade_no": out_trade_no},
                now=now,
                order_id=order.id,
                attempt_id=attempt_id,
            )
            uow.record(
                AuditEntry(
                    entity_kind="order",
                    entity_id=number,
                    action="anomaly.open",
                    actor=actor,
                    at=now,
                    after={"anomaly": anomaly_id, "kind": what.value, "status": "open"},
                    reason=text,
                )
            )
            uow.payments.add_outbox(
                "anomaly.opened", number, {"anomaly": anomaly_id, "kind": what.value}, now
            )
            return uow.payments.anomaly(anomaly_id)

        return self._run(work)

    # -- steps ------------------------------------------------------------------------------
    def _step(
        self,
        uow: UnitOfWork,
        anomaly_id: int,
        event: AnomalyEvent,
        actor: Actor,
        now: datetime,
        note: str,
        **extra: Any,
    ) -> Anomaly:
        """Apply one step under the order's then the anomaly's lock, with its audit record."""
        found = uow.payments.anomaly(anomaly_id)
        if found.order_number is not None:
            uow.orders.get(found.order_number, lock=True)
        self._check(actor, _P.PAYMENTS_REVIEW, f"anomaly:{anomaly_id}")
        anomaly = uow.payments.anomaly(anomaly_id, lock=True)
        transition = ANOMALY_MACHINE.transition(
            f"#{anomaly_id}", anomaly.status, event, actor=actor, at=now, reason=note
        )
        uow.payments.update_anomaly(
            anomaly_id, status=AnomalyStatus(transition.target), now=now, resolution=note
        )
        uow.record(
            AuditEntry(
                entity_kind="order" if anomaly.order_number else "anomaly",
                entity_id=anomaly.order_number or str(anomaly_id),
                action=f"anomaly.{event.value}",
                actor=actor,
                at=now,
                before={"anomaly": anomaly_id, "status": anomaly.status.value},
                after={"anomaly": anomaly_id, "status": transition.target.value, **extra},
                reason=note,
            )
        )
        return uow.payments.anomaly(anomaly_id)

    def investigate(self, anomaly_id: int, *, actor: Actor, note: str) -> Anomaly:
        """Someone is looking into it; say what was found so far."""
        text = _note(note)
        return self._run(
            lambda uow, now: self._step(uow, anomaly_id, AnomalyEvent.INVESTIGATE, actor, now, text)
        )

    def contact(
        self, anomaly_id: int, *, actor: Actor, note: str, channel: str = "email"
    ) -> Anomaly:
        """The customer was contacted: the step, and a communication on the order."""
        text = _note(note)

        def work(uow: UnitOfWork, now: datetime) -> Anomaly:
            anomaly = self._step(
                uow, anomaly_id, AnomalyEvent.CONTACT, actor, now, text, channel=channel
            )
            if anomaly.order_number is not None:
                order = uow.orders.get(anomaly.order_number, lock=True)
                order.add_communication(channel, text, actor, now)
            return anomaly

        return self._run(work)

    def set_status(
        self, anomaly_id: int, status: AnomalyStatus | str, *, actor: Actor, note: str
    ) -> Anomaly:
        """Move an anomaly to ``investigating``, ``contacting`` or ``resolved`` (dismissed)."""
        try:
            target = AnomalyStatus(status)
        except ValueError:
            names = ", ".join(s.value for s in AnomalyStatus)
            raise InvalidField(f"anomaly status must be one of {names}", field="status") from None
        if target is AnomalyStatus.INVESTIGATING:
            return self.investigate(anomaly_id, actor=actor, note=note)
        if target is AnomalyStatus.CONTACTING:
            return self.contact(anomaly_id, actor=actor, note=note)
        if target is AnomalyStatus.RESOLVED:
            return self.resolve(anomaly_id, actor=actor, note=note)
        raise InvalidField("an anomaly cannot be moved back to open", field="status")

    # -- resolving ----------------------------------------------------------------------
    def resolve(
        self,
        anomaly_id: int,
        *,
        actor: Actor,
        note: str | None = None,
        action: ResolutionAction | str = ResolutionAction.DISMISS,
        destination: RefundDestination | str = RefundDestination.ORIGINAL,
        resolution: str | None = None,
    ) -> Anomaly:
        """Resolve an anomaly by ``action`` (see the module's doc), recording ``note``."""
        text = _note(note if note is not None else resolution)
        try:
            act = ResolutionAction(action)
        except ValueError:
            names = ", ".join(a.value for a in ResolutionAction)
            raise InvalidField(
                f"resolution action must be one of {names}", field="action"
            ) from None
        anomaly = self.get(anomaly_id)
        if not ANOMALY_MACHINE.allowed_events(anomaly.status):
            raise InvalidField(f"anomaly #{anomaly_id} is resolved already", field="status")
        fits = ACTION_FITS.get(act)
        if fits is not None and anomaly.kind not in fits:
            raise InvalidField(
                f"anomaly #{anomaly_id} is a {anomaly.kind.value}: {act.value} resolves "
                f"{', '.join(sorted(k.value for k in fits))} only",
                field="action",
            )
        if act is not ResolutionAction.DISMISS and anomaly.order_number is None:
            raise InvalidField(f"anomaly #{anomaly_id} has no order to act on", field="action")
        self._check_early(actor, anomaly_id)
        extra: dict[str, Any] = {"action": act.value}
        if act is ResolutionAction.REFUND:
            extra["refund"] = self._refund(anomaly, actor, text, destination)
        elif act is ResolutionAction.RESEND:
            self._resend(anomaly, actor)
        elif act is ResolutionAction.ACCEPT:
            return self._run(lambda uow, now: self._accept(uow, anomaly, actor, now, text))
        elif act is ResolutionAction.FRAUD:

            def fraud(uow: UnitOfWork, now: datetime) -> Anomaly:
                assert anomaly.order_number is not None
                order = uow.orders.get(anomaly.order_number, lock=True)
                order.add_tag("fraud", actor, now)
                uow.payments.add_outbox(
                    "anomaly.fraud",
                    order.number,
                    {"anomaly": anomaly_id, "customer_id": order.customer_id, "note": text},
                    now,
                )
                return self._step(
                    uow, anomaly_id, AnomalyEvent.RESOLVE, actor, now, f"fraud: {text}", **extra
                )

            return self._run(fraud)
        resolution_text = text if act is ResolutionAction.DISMISS else f"{act.value}: {text}"
        if "refund" in extra:
            resolution_text = f"refund {extra['refund']}: {text}"
        return self._run(
            lambda uow, now: self._step(
                uow, anomaly_id, AnomalyEvent.RESOLVE, actor, now, resolution_text, **extra
            )
        )

    def _check_early(self, actor: Actor, anomaly_id: int) -> None:
        """Refuse before any action runs (a refused step must not leave a refund behind)."""
        try:
            self._check(actor, _P.PAYMENTS_REVIEW, f"anomaly:{anomaly_id}")
        except PermissionDenied as exc:
            self._record_refusal(exc, self._now())
            raise

    def _refund(
        self, anomaly: Anomaly, actor: Actor, note: str, destination: RefundDestination | str
    ) -> str:
        assert anomaly.order_number is not None
        if anomaly.out_trade_no is None:
            raise InvalidField(f"anomaly #{anomaly.id} names no payment to refund", field="action")
        if anomaly.kind is AnomalyKind.AMOUNT_MISMATCH:
            # The money of the wrong amount arrived but was never taken: record it as received
            # on its attempt (not settling the order), so that it can be given back in full.
            self._run(lambda uow, now: self._take_mismatched(uow, anomaly, actor, now))
        refunds = self._ctx.refunds
        refund = refunds.request(
            anomaly.order_number,
            out_trade_no=anomaly.out_trade_no,
            destination=destination,
            reason=f"anomaly #{anomaly.id}: {note}",
            actor=actor,
        )
        if refund.status.value == "requested":
            refund = refunds.approve(refund.refund_no, actor=actor, note=f"anomaly #{anomaly.id}")
        if refund.status.value == "failed":
            raise RefundError(
                f"refund {refund.refund_no} failed ({refund.failure}: {refund.failure_message}); "
                f"anomaly #{anomaly.id} stays open: retry the refund, then resolve it",
                code=str(refund.failure),
                retryable=refund.retryable,
                refund=refund.refund_no,
            )
        return refund.refund_no

    def _take_mismatched(
        self, uow: UnitOfWork, anomaly: Anomaly, actor: Actor, now: datetime
    ) -> None:
        assert anomaly.order_number is not None
        assert anomaly.out_trade_no is not None
        uow.orders.get(anomaly.order_number, lock=True)
        attempt = uow.payments.attempt(anomaly.out_trade_no, lock=True)
        if attempt.status is PaymentStatus.SUCCEEDED:
            return  # taken already (an earlier try of this action)
        attempt.received = self._received(anomaly)
        attempt.settles_order = False
        attempt.apply(PaymentEvent.SUCCEED, actor, now, f"anomaly #{anomaly.id}: to refund")
        uow.payments.claim_event(paid_key(attempt), attempt_id=attempt.id, inbox_id=None, now=now)
        uow.save_attempt(attempt, now)

    @staticmethod
    def _received(anomaly: Anomaly) -> Money:
        received_text = str(anomaly.evidence.get("received") or "")
        try:
            value, code = received_text.split()
            return Money.of(Decimal(value), code)
        except (ValueError, ArithmeticError):
            raise InvalidField(
                f"anomaly #{anomaly.id} records no amount received", field="action"
            ) from None

    def _resend(self, anomaly: Anomaly, actor: Actor) -> None:
        """Ask each channel again about the order's unpaid attempts and replay what was
        refused or failed in the inbox; the order must be paid afterwards."""
        assert anomaly.order_number is not None
        number = anomaly.order_number
        payments = self._ctx.payments
        for attempt in payments.attempts(number):
            if attempt.status is PaymentStatus.SUCCEEDED or attempt.channel == "balance":
                continue
            if payments.channel(attempt.channel).capabilities.query:
                payments.reconcile(attempt.out_trade_no, source="resend")
        for entry in payments.notifications(order_number=number, limit=100):
            if entry["status"] in ("error", "rejected") and entry.get("replay_of") is None:
                payments.replay(entry["id"], actor=actor)
        order = self._ctx.orders.get(number)
        if order.status is OrderStatus.PENDING or order.status is OrderStatus.CANCELED:
            raise InvalidField(
                f"order {number} is still {order.status.value}: its channels report no payment "
                "(the queries are recorded in the payment's operations)",
                field="action",
            )

    def _accept(
        self, uow: UnitOfWork, anomaly: Anomaly, actor: Actor, now: datetime, note: str
    ) -> Anomaly:
        """An operator accepts the amount that arrived: the attempt succeeds with it and the
        order is paid (a smaller amount becomes what was paid)."""
        assert anomaly.order_number is not None
        assert anomaly.out_trade_no is not None
        order = uow.orders.get(anomaly.order_number, lock=True)
        attempt = uow.payments.attempt(anomaly.out_trade_no, lock=True)
        received = self._received(anomaly)
        if received.currency == order.currency and received > order.amounts.payable:
            raise InvalidField(
                f"{received} arrived for {order.amounts.payable} payable: accepting would keep "
                "the difference; refund the payment (action refund) and ask for a new one",
                field="action",
            )
        if order.status is not OrderStatus.PENDING:
            raise InvalidField(
                f"order {order.number} is {order.status.value}: there is no payment to accept; "
                "refund the money instead",
                field="action",
            )
        if received.currency != order.currency or not received.is_positive():
            raise InvalidField(
                f"cannot accept {received} for an order in {order.currency.code}", field="action"
            )
        payments = self._ctx.payments
        attempt.received = received
        if attempt.status is not PaymentStatus.SUCCEEDED:
            attempt.apply(PaymentEvent.SUCCEED, actor, now, f"amount accepted: {note}")
        uow.payments.claim_event(
            paid_key(attempt),
            attempt_id=attempt.id,
            inbox_id=None,
            now=now,
        )
        paid = min(received, order.amounts.payable)
        order.mark_paid(paid, actor, now, f"amount accepted: {note}", accept_short=True)
        attempt.settles_order = True
        uow.save_attempt(attempt, now)
        payments.after_paid(
            uow, order, now, channel=attempt.channel, out_trade_no=attempt.out_trade_no
        )
        return self._step(
            uow,
            anomaly.id,
            AnomalyEvent.RESOLVE,
            actor,
            now,
            f"accept: {note}",
            action=ResolutionAction.ACCEPT.value,
            paid=str(paid),
        )
