"""Risk control's SQL: list entries, subject locks, velocity counts over the stored order and
attempt contexts, review holds and decisions. Never commits.

Every count runs in the database over indexed columns, so that several processes agree; a
check first locks the rows of the subjects it counts (:meth:`RiskRepository.lock_subjects`),
and under READ COMMITTED each later count sees what the previous holder committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ordercore._actor import Actor
from ordercore._audit.chain import canonical_json
from ordercore._errors import Conflict, NotFound
from ordercore._risk.domain import (
    Decision,
    ListEntry,
    ListKind,
    RiskContext,
    RuleHit,
    Stage,
    Verdict,
    email_domain,
)

from . import _driver as driver
from ._built import built, insert_into
from .tables import Tables

__all__ = ["RiskRepository"]

#: Attempt states that count as failed, and as failed or abandoned.
FAILED = ("failed",)
FAILED_OR_ABANDONED = ("failed", "canceled", "expired")
PAID = ("paid", "completed")


class RiskRepository:
    def __init__(self, conn: Connection, tables: Tables) -> None:
        self.conn = conn
        self.tables = tables
        self.lists = tables.risk_lists
        self.subjects = tables.risk_subjects
        self.ro = tables.risk_orders
        self.ra = tables.risk_attempts
        self.decisions_t = tables.risk_decisions

    # -- locks ------------------------------------------------------------------------------
    def lock_subjects(self, keys: Iterable[tuple[str, str]]) -> None:
        """Lock one row per ``(kind, value)``, creating it when missing, in a fixed order
        (so that two checks sharing subjects cannot deadlock)."""
        t = self.subjects
        for kind, value in sorted(set(keys)):
            where = and_(t.c.kind == kind, t.c.value == value)
            if self.conn.execute(select(t.c.kind).where(where).with_for_update()).first():
                continue
            try:
                with self.conn.begin_nested():
                    self.conn.execute(insert(t).values(kind=kind, value=value))
            except IntegrityError:
                pass  # another check created it first: wait for its lock below
            self.conn.execute(select(t.c.kind).where(where).with_for_update()).first()

    # -- lists ------------------------------------------------------------------------------
    @staticmethod
    def _entry(row: Row[Any]) -> ListEntry:
        return ListEntry(
            kind=ListKind(row.kind),
            value=row.value,
            allow=bool(row.allow),
            reason=row.reason,
            added_by=row.added_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            id=row.id,
        )

    def candidates(self, subjects: Mapping[ListKind, str], now: datetime) -> list[ListEntry]:
        """Active entries naming one of ``subjects``, and every active CIDR entry when an IP
        is among them (CIDR containment is decided in the domain)."""
        t = self.lists
        kinds = tuple(sorted(k.value for k in subjects))
        if not kinds:
            return []

        def make() -> Any:
            wanted = [and_(t.c.kind == k, t.c.value == bindparam(f"b_{k}")) for k in kinds]
            if ListKind.IP.value in kinds:
                wanted.append(t.c.kind == ListKind.CIDR.value)
            return (
                select(t)
                .where(or_(*wanted))
                .where(or_(t.c.expires_at.is_(None), t.c.expires_at > bindparam("b_now")))
                .order_by(t.c.id)
            )

        query = built(t, "candidates:" + ",".join(kinds), make)
        params: dict[str, Any] = {f"b_{k.value}": v for k, v in subjects.items()}
        rows = driver.execute(self.conn, query, {**params, "b_now": now})
        return [self._entry(r) for r in rows]

    def add_entry(self, entry: ListEntry) -> ListEntry:
        try:
            with self.conn.begin_nested():
                result = self.conn.execute(
                    insert(self.lists).values(
                        kind=entry.kind.value,
                        value=entry.value,
                        allow=entry.allow,
                        reason=entry.reason,
                        added_by=entry.added_by,
                        created_at=entry.created_at,
                        expires_at=entry.expires_at,
                    )
                )
        except IntegrityError:
            raise Conflict(
                f"{entry.kind.value} {entry.value} is already on a list; remove it first",
                kind=entry.kind.value,
                value=entry.value,
            ) from None
        pk = result.inserted_primary_key
        assert pk is not None
        return ListEntry(
            kind=entry.kind,
            value=entry.value,
            allow=entry.allow,
            reason=entry.reason,
            added_by=entry.added_by,
            created_at=entry.created_at,
            expires_at=entry.expires_at,
            id=int(pk[0]),
        )

    def entry(self, kind: ListKind, value: str) -> ListEntry:
        t = self.lists
        row = self.conn.execute(
            select(t).where(t.c.kind == kind.value).where(t.c.value == value).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"{kind.value} {value} is on no list", kind=kind.value, value=value)
        return self._entry(row)

    def remove_entry(self, entry_id: int) -> None:
        self.conn.execute(delete(self.lists).where(self.lists.c.id == entry_id))

    def entries(
        self, *, kind: ListKind | None, now: datetime, include_expired: bool, limit: int
    ) -> list[ListEntry]:
        t = self.lists
        query = select(t).order_by(t.c.id).limit(limit)
        if kind is not None:
            query = query.where(t.c.kind == kind.value)
        if not include_expired:
            query = query.where(or_(t.c.expires_at.is_(None), t.c.expires_at > now))
        return [self._entry(r) for r in self.conn.execute(query)]

    # -- counts -----------------------------------------------------------------------------
    def orders_since(self, subject: str, value: str, sinces: list[datetime]) -> list[int]:
        """Orders created since each of ``sinces`` by a customer (``value`` its id) or from
        an ip, device or e-mail domain: one query over the widest window."""
        if subject == "customer":
            o = self.tables.orders
            created, where = o.c.created_at, o.c.customer_id == int(value)
            source: Any = o
        else:
            column = self.ro.c[{"device": "device_id"}.get(subject, subject)]
            created, where, source = self.ro.c.created_at, column == value, self.ro
        row = self.conn.execute(
            select(*[func.sum(case((created >= s, 1), else_=0)) for s in sinces])
            .select_from(source)
            .where(where)
            .where(created >= min(sinces))
        ).one()
        return [int(n or 0) for n in row]

    def spent_minor(self, customer_id: int, currency: str, sinces: list[datetime]) -> list[int]:
        """What the customer's orders in ``currency`` created since each of ``sinces`` are
        to pay (canceled orders aside)."""
        o = self.tables.orders
        row = self.conn.execute(
            select(
                *[func.sum(case((o.c.created_at >= s, o.c.payable_minor), else_=0)) for s in sinces]
            )
            .where(o.c.customer_id == customer_id)
            .where(o.c.currency == currency)
            .where(o.c.created_at >= min(sinces))
            .where(o.c.status != "canceled")
        ).one()
        return [int(n or 0) for n in row]

    def prior_orders(self, customer_id: int, exclude_order_id: int | None) -> int:
        o = self.tables.orders
        query = select(func.count()).select_from(o).where(o.c.customer_id == customer_id)
        if exclude_order_id is not None:
            query = query.where(o.c.id != exclude_order_id)
        return int(self.conn.execute(query).scalar_one())

    def paid_stats(self, customer_id: int, currency: str) -> tuple[int, int]:
        """(how many, total minor units) of the customer's paid orders in ``currency``."""
        o = self.tables.orders
        row = self.conn.execute(
            select(func.count(), func.coalesce(func.sum(o.c.paid_minor), 0))
            .where(o.c.customer_id == customer_id)
            .where(o.c.currency == currency)
            .where(o.c.status.in_(PAID))
        ).one()
        return int(row[0]), int(row[1])

    def customers_on(self, subject: str, value: str, customer_id: int, since: datetime) -> int:
        """Distinct customers whose orders came from this device or ip since ``since``,
        counting ``customer_id``."""
        column = self.ro.c["device_id" if subject == "device" else "ip"]
        others = self.conn.execute(
            select(func.count(func.distinct(self.ro.c.customer_id)))
            .where(column == value)
            .where(self.ro.c.customer_id != customer_id)
            .where(self.ro.c.created_at >= since)
        ).scalar_one()
        return int(others) + 1

    def attempts_since(
        self,
        *,
        since: datetime,
        statuses: tuple[str, ...],
        customer_id: int | None = None,
        ip: str | None = None,
    ) -> int:
        a = self.tables.payment_attempts
        query = (
            select(func.count())
            .select_from(self.ra.join(a, a.c.id == self.ra.c.attempt_id))
            .where(self.ra.c.created_at >= since)
            .where(a.c.status.in_(statuses))
        )
        if customer_id is not None:
            query = query.where(self.ra.c.customer_id == customer_id)
        if ip is not None:
            query = query.where(self.ra.c.ip == ip)
        return int(self.conn.execute(query).scalar_one())

    def payers_of(self, customer_id: int, payer: str) -> int:
        """Distinct payer accounts the customer paid from, counting ``payer``."""
        others = self.conn.execute(
            select(func.count(func.distinct(self.ra.c.payer_account)))
            .where(self.ra.c.customer_id == customer_id)
            .where(self.ra.c.payer_account.is_not(None))
            .where(self.ra.c.payer_account != payer)
        ).scalar_one()
        return int(others) + 1

    def customers_of_payer(self, payer: str, customer_id: int) -> int:
        others = self.conn.execute(
            select(func.count(func.distinct(self.ra.c.customer_id)))
            .where(self.ra.c.payer_account == payer)
            .where(self.ra.c.customer_id != customer_id)
        ).scalar_one()
        return int(others) + 1

    # -- contexts and holds -----------------------------------------------------------------
    def add_order_context(
        self,
        *,
        order_id: int,
        customer_id: int,
        context: RiskContext,
        verdict: Verdict,
        review: bool,
        needs_verification: bool,
        review_due_at: datetime | None,
        now: datetime,
    ) -> None:
        driver.defer(
            self.conn,
            insert_into(self.ro),
            {
                "order_id": order_id,
                "customer_id": customer_id,
                "created_at": now,
                "ip": context.ip,
                "device_id": context.device_id,
                "email": context.email.lower() if context.email else None,
                "email_domain": email_domain(context.email),
                "user_agent": context.user_agent,
                "verdict": verdict.value,
                "needs_verification": needs_verification,
                "review_state": "pending" if review else None,
                "review_due_at": review_due_at,
            },
        )

    def order_context(self, order_id: int, *, lock: bool = False) -> dict[str, Any] | None:
        query = select(self.ro).where(self.ro.c.order_id == order_id)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    def set_review_state(self, order_id: int, state: str) -> None:
        self.conn.execute(
            update(self.ro)
            .where(self.ro.c.order_id == order_id)
            .values(review_state=state, review_due_at=None)
        )

    def pending_reviews(self, *, limit: int, due_before: datetime | None = None) -> list[str]:
        """Numbers of orders waiting for review, oldest first (only overdue ones with
        ``due_before``)."""
        o = self.tables.orders
        query = (
            select(o.c.number)
            .select_from(self.ro.join(o, o.c.id == self.ro.c.order_id))
            .where(self.ro.c.review_state == "pending")
            .where(o.c.status == "pending")
            .order_by(self.ro.c.created_at, self.ro.c.order_id)
            .limit(limit)
        )
        if due_before is not None:
            query = query.where(self.ro.c.review_due_at <= due_before)
        return [r.number for r in self.conn.execute(query)]

    def add_attempt_context(
        self,
        *,
        attempt_id: int,
        order_id: int,
        customer_id: int,
        context: RiskContext,
        now: datetime,
    ) -> None:
        self.conn.execute(
            insert(self.ra).values(
                attempt_id=attempt_id,
                order_id=order_id,
                customer_id=customer_id,
                created_at=now,
                ip=context.ip,
                device_id=context.device_id,
                payer_account=context.payer_account,
                user_agent=context.user_agent,
            )
        )

    # -- decisions --------------------------------------------------------------------------
    def add_decision(self, decision: Decision, actor: Actor) -> int:
        result = driver.execute(
            self.conn,
            insert_into(self.decisions_t),
            {
                "stage": decision.stage.value,
                "verdict": decision.verdict.value,
                "order_number": decision.order_number,
                "out_trade_no": decision.out_trade_no,
                "customer_id": decision.customer_id,
                "rules": canonical_json([h.as_dict() for h in decision.hits]),
                "context": canonical_json(decision.context.as_dict()),
                "actor_kind": actor.kind.value,
                "actor_id": actor.id,
                "actor_role": actor.role,
                "created_at": decision.at,
            },
        )
        return result.inserted_id

    def decisions(
        self,
        *,
        order_number: str | None = None,
        verdict: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[Decision]:
        t = self.decisions_t
        query = select(t).order_by(t.c.id.desc()).limit(limit)
        if order_number is not None:
            query = query.where(t.c.order_number == order_number)
        if verdict is not None:
            query = query.where(t.c.verdict == verdict)
        if before_id is not None:
            query = query.where(t.c.id < before_id)
        return [
            Decision(
                verdict=Verdict(r.verdict),
                stage=Stage(r.stage),
                hits=tuple(RuleHit.from_dict(h) for h in json.loads(r.rules)),
                context=RiskContext.from_dict(json.loads(r.context)),
                at=r.created_at,
                id=r.id,
                order_number=r.order_number,
                out_trade_no=r.out_trade_no,
                customer_id=r.customer_id,
                actor=f"{r.actor_kind}:{r.actor_id}" + (f":{r.actor_role}" if r.actor_role else ""),
            )
            for r in self.conn.execute(query)
        ]

    def counts(self, since: datetime) -> dict[str, dict[str, int]]:
        """Decisions since ``since`` by stage and verdict (the statistics of risk control)."""
        t = self.decisions_t
        rows = self.conn.execute(
            select(t.c.stage, t.c.verdict, func.count())
            .where(t.c.created_at >= since)
            .group_by(t.c.stage, t.c.verdict)
        )
        found: dict[str, dict[str, int]] = {}
        for stage, verdict, n in rows:
            found.setdefault(stage, {})[verdict] = int(n)
        return found
