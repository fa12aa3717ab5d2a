"""Due jobs: payment timeouts, reconciliation of attempts in doubt, activation, refunds to
settle and outbox delivery — what ``run_due_jobs`` (``ordercore jobs run``) does each pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from attrs import frozen

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._errors import ChannelError, ConfigurationError, InvalidField
from ordercore._outbox import ActivationContext, OutboxMessage
from ordercore._permissions import Permission
from ordercore._state import OrderStatus

from .domain import (
    backoff,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

from .reconciliation import Reconciliation

logger = logging.getLogger("ordercore.jobs")

__all__ = ["JobReport", "JobRunner"]

_P = Permission
T = TypeVar("T")


@frozen
class JobReport:
    """What one :meth:`PaymentService.run_due_jobs` pass did."""

    canceled: tuple[str, ...] = ()
    settled: tuple[str, ...] = ()
    reconciled: tuple[str, ...] = ()
    activated: tuple[str, ...] = ()
    activation_failures: tuple[str, ...] = ()
    refunds: tuple[str, ...] = ()
    delivered: int = 0
    delivery_failures: int = 0
    #: audit entries linked into the chain this pass
    sealed: int = 0
    #: why the audit chain could not be sealed (it shows tampering), when it could not
    audit_problem: str | None = None
    #: work left for a later pass, with why (``NUMBER: reason``): an order or attempt whose
    #: channel is not available now (unconfigured, disabled) is never given up on blindly
    skipped: tuple[str, ...] = ()
    #: orders rejected because their risk review passed ``review_sla_hours``
    review_expired: tuple[str, ...] = ()
    #: inbox ids of notifications left ``received`` by a stopped process, replayed
    replayed_callbacks: tuple[int, ...] = ()
    #: inbox ids flagged ``stalled`` for an operator (a replay left unfinished)
    stalled_callbacks: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return (
            len(self.canceled)
            + len(self.settled)
            + len(self.reconciled)
            + len(self.activated)
            + len(self.activation_failures)
            + len(self.refunds)
            + self.delivered
            + self.delivery_failures
            + len(self.review_expired)
            + len(self.replayed_callbacks)
            + len(self.stalled_callbacks)
        )


class JobRunner(Reconciliation):
    """The job runner and the activation queue."""

    # -- activation ------------------------------------------------------------------------
    def schedule_activation(self, number: str, *, actor: Actor, at: datetime | None = None) -> None:
        """Activate a paid order now (``at`` None) or at a set time (``orders activate``)."""

        def work(uow: UnitOfWork, now: datetime) -> None:
            order = uow.orders.get(number, lock=True)
            self._check(actor, _P.ORDERS_ACTIVATE, f"order:{number}")
            if order.status is not OrderStatus.PAID:
                raise InvalidField(
                    f"order {number} is {order.status.value}; only paid orders are activated",
                    field="order",
                )
            if at is not None and (at.tzinfo is None or at.utcoffset() is None):
                raise InvalidField("the activation time must be timezone-aware", field="at")
            assert order.id is not None
            uow.payments.set_activation(order.id, due_at=at or now, error=None, locked_until=None)
            uow.record(
                AuditEntry(
                    entity_kind="order",
                    entity_id=number,
                    action="order.activation_scheduled",
                    actor=actor,
                    at=now,
                    after={"due_at": at or now},
                )
            )

        self._run(work)

    def _activate_one(self, number: str, attempt_no: int, now: datetime) -> bool:
        order = self._ctx.orders.get(number)
        ctx = ActivationContext(
            activation_id=f"activate:{number}",
            attempt=attempt_no,
            actor=Actor.system("activation"),
            at=now,
        )
        try:
            self._ctx.plugins.hook.ordercore_activate_order(order=order, ctx=ctx)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]

            def failed(uow: UnitOfWork, at: datetime) -> None:
                current = uow.orders.get(number, lock=True)
                if current.status is not OrderStatus.PAID:
                    return
                assert current.id is not None
                uow.payments.set_activation(
                    current.id,
                    attempts=attempt_no,
                    error=error,
                    due_at=at + backoff(attempt_no - 1),
                    locked_until=None,
                )
                uow.payments.add_outbox(
                    "order.activation_failed",
                    number,
                    {"order": number, "attempt": attempt_no, "error": error},
                    at,
                )

            self._run(failed)
            return False

        def done(uow: UnitOfWork, at: datetime) -> None:
            current = uow.orders.get(number, lock=True)
            if current.status is not OrderStatus.PAID:
                return
            assert current.id is not None
            current.complete(Actor.system("activation"), at, "activated")
            uow.payments.set_activation(
                current.id, attempts=attempt_no, error=None, due_at=None, locked_until=None
            )
            uow.payments.add_outbox("order.completed", number, {"order": number}, at)

        self._run(done)
        return True

    # -- the job runner --------------------------------------------------------------------
    def _claims(
        self,
        claim: Callable[[UnitOfWork, datetime, int, timedelta], list[T]],
        moment: datetime,
        batch: int,
    ) -> Iterator[T]:
        """Up to ``batch`` items of one queue, claimed ``job_claim_size`` at a time under a
        lease of ``job_lease_seconds``: the next few are claimed only when the last few are
        done, so that a runner that dies holds a handful of items for one short lease, not
        the whole batch. The lease runs from the claim (the clock), or from ``moment`` when
        that is later."""
        settings = self._ctx.settings
        lease = timedelta(seconds=settings.job_lease_seconds)
        taken = 0
        while taken < batch:
            size = min(settings.job_claim_size, batch - taken)

            def work(uow: UnitOfWork, at: datetime, size: int = size) -> list[T]:
                return claim(uow, moment, size, lease + max(at - moment, timedelta(0)))

            items = self._run(work)
            yield from items
            taken += len(items)
            if len(items) < size:
                return

    def run_due_jobs(self, now: datetime | None = None, *, batch: int = 100) -> JobReport:
        """One pass of every background job: the notifications a stopped process left
        unfinished (replayed, or flagged), timeout cancellation (querying first),
        reconciliation of pending/unknown attempts, due activations, refunds waiting for
        their outcome (queried) and outbox delivery (notifications, revocations).
        Safe in several processes at once on PostgreSQL (``FOR UPDATE SKIP LOCKED`` and
        short leases: see :meth:`_claims`); on SQLite run one. ``batch`` bounds each queue."""
        moment = now or self._now()
        # First what is already here (no platform call): notifications left unfinished.
        replayed, stalled = self._ctx.payments.recover_stalled(moment, batch=batch)
        canceled: list[str] = []
        settled: list[str] = []
        skipped: list[str] = []
        for number in self._claims(
            lambda uow, at, size, lease: uow.payments.claim_expired_orders(
                at, limit=size, lease=lease
            ),
            moment,
            batch,
        ):
            try:
                outcome = self.close_and_cancel(number, now=moment)
            except (ChannelError, ConfigurationError) as exc:
                logger.warning("order %s past its deadline left pending: %s", number, exc)
                skipped.append(f"{number}: {exc}")
                continue
            if outcome == "canceled":
                canceled.append(number)
            elif outcome == "settled":
                settled.append(number)
        reconciled = []
        for out_trade_no in self._claims(
            lambda uow, at, size, lease: uow.payments.claim_checks(at, limit=size, lease=lease),
            moment,
            batch,
        ):
            try:
                result = self.reconcile(out_trade_no)
            except (ChannelError, ConfigurationError) as exc:
                logger.warning("payment %s not reconciled: %s", out_trade_no, exc)
                skipped.append(f"{out_trade_no}: {exc}")
                continue
            if result.status in ("applied", "anomaly"):
                reconciled.append(out_trade_no)
        activated: list[str] = []
        failures: list[str] = []
        for number, attempt_no in self._claims(
            lambda uow, at, size, lease: uow.payments.claim_activations(
                at, limit=size, lease=lease
            ),
            moment,
            batch,
        ):
            (activated if self._activate_one(number, attempt_no, moment) else failures).append(
                number
            )
        refunds = self._ctx.refunds.check_due(moment, batch=batch)
        review_expired = self._ctx.risk.expire_reviews(moment, batch=batch)
        delivered, delivery_failures = self.deliver_outbox(moment, batch=batch)
        sealed, audit_problem = self._seal_audit()
        return JobReport(
            refunds=tuple(refunds),
            canceled=tuple(canceled),
            settled=tuple(settled),
            reconciled=tuple(reconciled),
            activated=tuple(activated),
            activation_failures=tuple(failures),
            delivered=delivered,
            delivery_failures=delivery_failures,
            sealed=sealed,
            audit_problem=audit_problem,
            skipped=tuple(skipped),
            review_expired=tuple(review_expired),
            replayed_callbacks=tuple(replayed),
            stalled_callbacks=tuple(stalled),
        )

    def _seal_audit(self) -> tuple[int, str | None]:
        """Link what this pass (and every writer since the last one) recorded into the audit
        chain. A chain that shows tampering is not extended: the pass reports it and goes on."""
        sealed, problem = self._ctx.audit.seal_pending()
        if problem is not None:
            logger.error("%s", problem)
        return sealed, problem

    def deliver_outbox(self, now: datetime | None = None, *, batch: int = 100) -> tuple[int, int]:
        """Deliver due outbox messages through ``ordercore_notify``: ``(delivered, failed)``."""
        moment = now or self._now()
        delivered = failed = 0
        for message in self._claims(
            lambda uow, at, size, lease: uow.payments.claim_outbox(at, limit=size, lease=lease),
            moment,
            batch,
        ):
            try:
                if message.kind == "order.revoke":
                    self._revoke(message, moment)
                else:
                    self._ctx.plugins.hook.ordercore_notify(event=message)
            except Exception as exc:
                failed += 1
                error = f"{type(exc).__name__}: {exc}"
                self._run(
                    lambda uow, _now, m=message, e=error: uow.payments.outbox_failed(  # type: ignore[misc]
                        m.id, e, moment + timedelta(minutes=1)
                    )
                )
            else:
                delivered += 1
                self._run(lambda uow, at, m=message: uow.payments.outbox_done(m.id, at))  # type: ignore[misc]
        return delivered, failed

    def _revoke(self, message: OutboxMessage, now: datetime) -> None:
        """Deliver an ``order.revoke`` message to ``ordercore_revoke_order`` (at least once;
        ``ctx.activation_id`` is stable across retries)."""
        assert message.order_number is not None
        refund_no = str(message.payload["refund"])
        ctx = ActivationContext(
            activation_id=f"revoke:{refund_no}",
            attempt=message.attempt,
            actor=Actor.system("refunds"),
            at=now,
        )
        self._ctx.plugins.hook.ordercore_revoke_order(
            order=self._ctx.orders.get(message.order_number),
            refund=self._ctx.refunds.get(refund_no),
            ctx=ctx,
        )
