"""The manual review queue: orders a ``review`` decision holds, approved or rejected by an
operator with ``risk.review``, or rejected by the job runner once ``review_sla_hours`` pass.

A held order can be created but not paid; approving it lets payment start; rejecting it
cancels it with reason ``rejected`` (stock, coupon use, balance and points go back).
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING

from ordercore._actor import Actor
from ordercore._context import Service, check_limit
from ordercore._errors import InvalidField, OrderCoreError
from ordercore._permissions import Permission
from ordercore._state import CancelReason

from .domain import Decision, RiskContext, RuleHit, Stage, Verdict

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = ["ReviewQueue"]

_P = Permission


class ReviewQueue(Service):
    """Approve or reject orders held for review."""

    def _store(
        self, uow: UnitOfWork, decision: Decision, actor: Actor, *, order_id: int | None
    ) -> int:
        raise NotImplementedError  # pragma: no cover - RiskService provides it

    def review_queue(
        self, *, limit: int = 50, actor: Actor | None = None
    ) -> builtins.list[Decision]:
        """The creation decisions of the orders waiting for review, oldest first."""

        def work(uow: UnitOfWork) -> builtins.list[Decision]:
            if actor is not None:
                self._check(actor, _P.RISK_REVIEW, "risk:review")
            found = []
            for number in uow.risk.pending_reviews(limit=check_limit(limit)):
                decisions = uow.risk.decisions(order_number=number, limit=50)
                held = [d for d in decisions if d.stage is Stage.ORDER]
                if held:
                    found.append(held[-1])
            return found

        return self._read(work)

    def approve(self, number: str, *, actor: Actor, note: str | None = None) -> Decision:
        """Release a held order: it can be paid."""
        return self._decide_review(number, actor, approve=True, note=note)

    def reject(self, number: str, *, actor: Actor, reason: str) -> Decision:
        """Refuse a held order: it is cancelled with reason ``rejected``."""
        if not (reason and reason.strip()):
            raise InvalidField("a rejection needs a reason", field="reason")
        return self._decide_review(number, actor, approve=False, note=reason.strip())

    def _decide_review(
        self, number: str, actor: Actor, *, approve: bool, note: str | None, sla: bool = False
    ) -> Decision:
        def work(uow: UnitOfWork, now: datetime) -> Decision:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.RISK_REVIEW, f"order:{number}")
            assert order.id is not None
            held = uow.risk.order_context(order.id, lock=True)
            if held is None or held["review_state"] != "pending":
                state = None if held is None else held["review_state"]
                raise InvalidField(
                    f"order {number} is not waiting for a risk review"
                    + (f" (review {state})" if state else ""),
                    field="order",
                    order=number,
                )
            uow.risk.set_review_state(order.id, "approved" if approve else "rejected")
            if not approve:
                self._ctx.orders._cancel_in(uow, order, CancelReason.REJECTED, actor, now, note)
            rule = "review_sla" if sla else "manual_review"
            word = "approved" if approve else "rejected"
            decision = Decision(
                verdict=Verdict.ALLOW if approve else Verdict.BLOCK,
                stage=Stage.REVIEW,
                hits=(
                    RuleHit(
                        rule,
                        Verdict.ALLOW if approve else Verdict.BLOCK,
                        f"order {number} {word} by {actor}" + (f": {note}" if note else ""),
                        {"order": number, "note": note},
                    ),
                ),
                context=RiskContext(),
                at=now,
                order_number=number,
                customer_id=order.customer_id,
                actor=str(actor),
            )
            self._store(uow, decision, actor, order_id=order.id)
            return decision

        return self._run(work)

    def expire_reviews(
        self, now: datetime | None = None, *, batch: int = 100
    ) -> builtins.list[str]:
        """Reject the orders whose review has waited past ``review_sla_hours`` (the job
        runner calls this). Returns their numbers."""
        moment = now or self._now()
        hours = self._ctx.settings.risk.limit("review_sla_hours")
        if hours is None:
            return []
        numbers = self._read(
            lambda uow: uow.risk.pending_reviews(limit=check_limit(batch), due_before=moment)
        )
        done = []
        for number in numbers:
            try:
                self._decide_review(
                    number,
                    Actor.system("risk-review-sla"),
                    approve=False,
                    note=f"not reviewed within review_sla_hours ({hours})",
                    sla=True,
                )
            except OrderCoreError:
                continue  # reviewed (or paid) meanwhile
            done.append(number)
        return done
