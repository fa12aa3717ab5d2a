"""After-sales: issues opened on an order and moved through their workflow, and the
after-sales view of an order (its refunds, issues and anomalies together).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._context import Service
from ordercore._errors import (
    InvalidField,
    PermissionDenied,
)
from ordercore._money import Money
from ordercore._orders.domain import Communication
from ordercore._permissions import Permission
from ordercore._state import (
    IssueEvent,
    IssueStatus,
)

from .domain import (
    AfterSalesIssue,
    IssueStep,
    Refund,
    required_text,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


__all__ = ["AfterSales", "AfterSalesService"]

_P = Permission


@frozen
class AfterSales:
    """Everything after the sale of one order: refunds (with their history in the log),
    communications with the customer, and after-sales issues with their progress."""

    order_number: str
    refunds: tuple[Refund, ...]
    communications: tuple[Communication, ...]
    issues: tuple[AfterSalesIssue, ...]
    paid: Money
    refunded: Money
    refundable: Money


class AfterSalesService(Service):
    """After-sales records: issues followed to resolution, and the whole after-sales view."""

    def open(
        self, number: str, *, subject: str, actor: Actor, note: str | None = None
    ) -> AfterSalesIssue:
        """Open an after-sales issue on an order (a customer's problem to follow)."""
        text = required_text(subject, "subject")[:200]

        def work(uow: UnitOfWork, now: datetime) -> AfterSalesIssue:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_EDIT, f"order:{number}")
            assert order.id is not None
            issue = AfterSalesIssue(
                order_number=order.number, subject=text, opened_by=actor, opened_at=now
            )
            issue.steps.append(IssueStep(IssueStatus.OPEN, actor, now, note or text))
            uow.save_issue(issue, order_id=order.id)
            uow.record(
                AuditEntry(
                    entity_kind="order",
                    entity_id=order.number,
                    action="issue.open",
                    actor=actor,
                    at=now,
                    after={"issue": issue.id, "status": issue.status.value, "subject": text},
                    reason=note,
                )
            )
            return issue

        return self._run(work)

    def move(
        self, issue_id: int, event: IssueEvent | str, *, actor: Actor, note: str
    ) -> AfterSalesIssue:
        """Move an issue on (``investigate``, ``ask_customer``, ``resolve``, ``reopen``)."""
        try:
            ev = IssueEvent(event)
        except ValueError:
            names = ", ".join(e.value for e in IssueEvent)
            raise InvalidField(f"issue step must be one of {names}", field="event") from None
        text = required_text(note, "note")

        def work(uow: UnitOfWork, now: datetime) -> AfterSalesIssue:
            found = uow.refunds.issue(issue_id)
            order = uow.orders.get(found.order_number, lock=True)
            self._check(actor, _P.ORDERS_EDIT, f"order:{order.number}")
            issue = uow.refunds.issue(issue_id, lock=True)
            issue.move(ev, actor, now, text)
            assert order.id is not None
            uow.save_issue(issue, order_id=order.id, new_steps=1)
            if ev is IssueEvent.RESOLVE:
                uow.payments.add_outbox(
                    "issue.resolved",
                    order.number,
                    {"issue": issue_id, "order": order.number, "resolution": text},
                    now,
                )
            return issue

        return self._run(work)

    def issue(self, issue_id: int) -> AfterSalesIssue:
        return self._read(lambda uow: uow.refunds.issue(issue_id))

    def show(self, number: str, *, actor: Actor | None = None) -> AfterSales:
        """An order's after-sales record: refunds, communications and issues."""

        def work(uow: UnitOfWork) -> AfterSales:
            order = uow.orders.get(number)
            if actor is not None:
                self._check(actor, _P.ORDERS_VIEW, f"order:{number}", owner_id=order.customer_id)
            assert order.id is not None
            refunds = self._ctx.refunds
            attempt = refunds._target(uow, order, None)
            return AfterSales(
                order_number=order.number,
                refunds=tuple(uow.refunds.for_order(order.id)),
                communications=tuple(order.communications),
                issues=tuple(uow.refunds.issues_for(order.id)),
                paid=order.amounts.paid,
                refunded=order.amounts.refunded,
                refundable=refunds._left(uow, order, attempt),
            )

        try:
            return self._read(work)
        except PermissionDenied as exc:
            self._record_refusal(exc, self._now())
            raise
