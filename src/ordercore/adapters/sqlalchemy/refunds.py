"""Refunds and after-sales issues."""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, select, update

from ordercore._actor import Actor, ActorKind
from ordercore._errors import IssueNotFound, RefundNotFound
from ordercore._money import Money, get_currency
from ordercore._refunds.domain import (
    OPEN_REFUND_STATES,
    RESERVING_REFUND_STATES,
    AfterSalesIssue,
    IssueStep,
    Refund,
    RefundDestination,
    RefundFailure,
)
from ordercore._state import IssueStatus, RefundStatus

from .tables import Tables

__all__ = ["RefundRepository"]


def _actor(row: Row[Any], prefix: str) -> Actor | None:
    kind = getattr(row, f"{prefix}actor_kind")
    if kind is None:
        return None
    return Actor(
        ActorKind(kind), getattr(row, f"{prefix}actor_id"), getattr(row, f"{prefix}actor_role")
    )


def _actor_values(actor: Actor | None, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}actor_kind": None if actor is None else actor.kind.value,
        f"{prefix}actor_id": None if actor is None else actor.id,
        f"{prefix}actor_role": None if actor is None else actor.role,
    }


class RefundRepository:
    """Everything the refund engine stores. Never commits."""

    def __init__(self, conn: Connection, tables: Tables) -> None:
        self.conn = conn
        self.tables = tables
        self.r = tables.refunds
        self.o = tables.orders
        self.a = tables.payment_attempts

    # -- refunds ------------------------------------------------------------------------
    def _select(self) -> Any:
        return select(
            self.r, self.o.c.number, self.o.c.customer_id, self.a.c.out_trade_no
        ).select_from(
            self.r.join(self.o, self.o.c.id == self.r.c.order_id).outerjoin(
                self.a, self.a.c.id == self.r.c.attempt_id
            )
        )

    @staticmethod
    def _refund(row: Row[Any]) -> Refund:
        requested_by = _actor(row, "requested_by_")
        assert requested_by is not None
        return Refund(
            id=row.id,
            refund_no=row.refund_no,
            order_id=row.order_id,
            order_number=row.number,
            customer_id=row.customer_id,
            amount=Money.from_minor(row.amount_minor, get_currency(row.currency)),
            destination=RefundDestination(row.destination),
            reason=row.reason,
            requested_by=requested_by,
            requested_at=row.requested_at,
            out_trade_no=row.out_trade_no,
            channel=row.channel,
            counts_toward_order=bool(row.counts_toward_order),
            status=RefundStatus(row.status),
            decided_by=_actor(row, "decided_by_"),
            decided_at=row.decided_at,
            decision_note=row.decision_note,
            failure=None if row.failure is None else RefundFailure(row.failure),
            failure_message=row.failure_message,
            channel_code=row.channel_code,
            channel_refund_no=row.channel_refund_no,
            completed_at=row.completed_at,
            next_check_at=row.next_check_at,
            check_count=row.check_count,
            tries=row.tries,
            uncertain=bool(row.uncertain),
        )

    @staticmethod
    def _values(refund: Refund, now: datetime) -> dict[str, Any]:
        return {
            "status": refund.status.value,
            **_actor_values(refund.decided_by, "decided_by_"),
            "decided_at": refund.decided_at,
            "decision_note": refund.decision_note,
            "failure": None if refund.failure is None else refund.failure.value,
            "failure_message": refund.failure_message,
            "channel_code": None if refund.channel_code is None else refund.channel_code[:64],
            "channel_refund_no": refund.channel_refund_no,
            "completed_at": refund.completed_at,
            "next_check_at": refund.next_check_at,
            "check_count": refund.check_count,
            "tries": refund.tries,
            "uncertain": refund.uncertain,
            "counts_toward_order": refund.counts_toward_order,
            "updated_at": now,
        }

    def add(self, refund: Refund, *, attempt_id: int | None, now: datetime) -> Refund:
        result = self.conn.execute(
            insert(self.r).values(
                refund_no=refund.refund_no,
                order_id=refund.order_id,
                attempt_id=attempt_id,
                channel=refund.channel,
                currency=refund.amount.currency.code,
                amount_minor=refund.amount.to_minor(),
                destination=refund.destination.value,
                reason=refund.reason,
                **_actor_values(refund.requested_by, "requested_by_"),
                requested_at=refund.requested_at,
                **self._values(refund, now),
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        refund.id = int(pk[0])
        return refund

    def save(self, refund: Refund, now: datetime) -> None:
        self.conn.execute(
            update(self.r).where(self.r.c.id == refund.id).values(**self._values(refund, now))
        )

    def get(self, refund_no: str, *, lock: bool = False) -> Refund:
        query = self._select().where(self.r.c.refund_no == refund_no)
        if lock:
            query = query.with_for_update(of=self.r)
        row = self.conn.execute(query).first()
        if row is None:
            raise RefundNotFound(f"no refund {refund_no!r}", refund=refund_no)
        return self._refund(row)

    def find(self, refund_no: str) -> Refund | None:
        row = self.conn.execute(self._select().where(self.r.c.refund_no == refund_no)).first()
        return None if row is None else self._refund(row)

    def for_order(self, order_id: int) -> builtins.list[Refund]:
        query = self._select().where(self.r.c.order_id == order_id).order_by(self.r.c.id)
        return [self._refund(r) for r in self.conn.execute(query)]

    def count_for_order(self, order_id: int) -> int:
        return int(
            self.conn.execute(
                select(func.count()).select_from(self.r).where(self.r.c.order_id == order_id)
            ).scalar_one()
        )

    def reserved_minor(
        self,
        *,
        attempt_id: int | None = None,
        order_id: int | None = None,
        unfinished: bool = False,
    ) -> int:
        """Minor units held by refunds that are not rejected or failed (``unfinished``: nor
        succeeded): of one payment attempt, or (``order_id``) of the refunds that count
        toward the order."""
        states = RESERVING_REFUND_STATES - ({RefundStatus.SUCCEEDED} if unfinished else set())
        query = select(func.coalesce(func.sum(self.r.c.amount_minor), 0)).where(
            self.r.c.status.in_([s.value for s in states])
        )
        if attempt_id is not None:
            query = query.where(self.r.c.attempt_id == attempt_id)
        if order_id is not None:
            query = query.where(
                and_(self.r.c.order_id == order_id, self.r.c.counts_toward_order.is_(True))
            )
        return int(self.conn.execute(query).scalar_one())

    def list(
        self,
        *,
        limit: int,
        before_id: int | None = None,
        status: str | None = None,
        order_id: int | None = None,
    ) -> builtins.list[Refund]:
        query = self._select().order_by(self.r.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(self.r.c.id < before_id)
        if status is not None:
            query = query.where(self.r.c.status == status)
        if order_id is not None:
            query = query.where(self.r.c.order_id == order_id)
        return [self._refund(r) for r in self.conn.execute(query)]

    def claim_checks(self, now: datetime, *, limit: int, lease: timedelta) -> builtins.list[str]:
        """Refunds whose outcome is to be asked (processing or unknown, check due), leased to
        this runner like payment checks (skipping rows another runner holds on PostgreSQL)."""
        rows = self.conn.execute(
            select(self.r.c.id, self.r.c.refund_no)
            .where(
                and_(
                    self.r.c.next_check_at <= now,
                    self.r.c.status.in_([s.value for s in OPEN_REFUND_STATES]),
                )
            )
            .order_by(self.r.c.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            self.conn.execute(
                update(self.r)
                .where(self.r.c.id.in_([r.id for r in rows]))
                .values(next_check_at=now + lease)
            )
        return [r.refund_no for r in rows]

    # -- after-sales issues -------------------------------------------------------------
    def _issue_select(self) -> Any:
        t = self.tables.issues
        return select(t, self.o.c.number).select_from(t.join(self.o, self.o.c.id == t.c.order_id))

    def _issues(self, rows: builtins.list[Row[Any]]) -> builtins.list[AfterSalesIssue]:
        if not rows:
            return []
        s = self.tables.issue_steps
        steps: dict[int, builtins.list[IssueStep]] = {r.id: [] for r in rows}
        for step in self.conn.execute(
            select(s).where(s.c.issue_id.in_(list(steps))).order_by(s.c.id)
        ):
            actor = _actor(step, "")
            assert actor is not None
            steps[step.issue_id].append(
                IssueStep(IssueStatus(step.status), actor, step.at, step.note)
            )
        out = []
        for r in rows:
            opened_by = _actor(r, "opened_by_")
            assert opened_by is not None
            out.append(
                AfterSalesIssue(
                    id=r.id,
                    order_number=r.number,
                    subject=r.subject,
                    opened_by=opened_by,
                    opened_at=r.opened_at,
                    status=IssueStatus(r.status),
                    steps=steps[r.id],
                    resolved_at=r.resolved_at,
                )
            )
        return out

    def add_issue(self, issue: AfterSalesIssue, *, order_id: int) -> AfterSalesIssue:
        t = self.tables.issues
        result = self.conn.execute(
            insert(t).values(
                order_id=order_id,
                subject=issue.subject,
                status=issue.status.value,
                **_actor_values(issue.opened_by, "opened_by_"),
                opened_at=issue.opened_at,
                resolved_at=issue.resolved_at,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        issue.id = int(pk[0])
        self._add_steps(issue, issue.steps)
        return issue

    def _add_steps(self, issue: AfterSalesIssue, steps: builtins.list[IssueStep]) -> None:
        if steps:
            self.conn.execute(
                insert(self.tables.issue_steps),
                [
                    {
                        "issue_id": issue.id,
                        "status": step.status.value,
                        **_actor_values(step.actor, ""),
                        "at": step.at,
                        "note": step.note,
                    }
                    for step in steps
                ],
            )

    def save_issue(self, issue: AfterSalesIssue, new_steps: builtins.list[IssueStep]) -> None:
        t = self.tables.issues
        self.conn.execute(
            update(t)
            .where(t.c.id == issue.id)
            .values(status=issue.status.value, resolved_at=issue.resolved_at)
        )
        self._add_steps(issue, new_steps)

    def issue(self, issue_id: int, *, lock: bool = False) -> AfterSalesIssue:
        t = self.tables.issues
        query = self._issue_select().where(t.c.id == issue_id)
        if lock:
            query = query.with_for_update(of=t)
        rows = list(self.conn.execute(query).all())
        if not rows:
            raise IssueNotFound(f"no after-sales issue #{issue_id}", issue=issue_id)
        return self._issues(rows)[0]

    def issues_for(self, order_id: int) -> builtins.list[AfterSalesIssue]:
        t = self.tables.issues
        query = self._issue_select().where(t.c.order_id == order_id).order_by(t.c.id)
        return self._issues(list(self.conn.execute(query).all()))
