"""Due jobs: payment timeouts, reconciliation of attempts in doubt, activation, refunds to
settle and outbox delivery — what ``run_due_jobs`` (``ordercore jobs run``) does each pass.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from attrs import frozen

from ordercore._actor import Actor
from ordercore._audit.audit_service import SEAL_BATCH
from ordercore._audit.chain import AuditEntry
from ordercore._errors import AuditChainError, ChannelError, ConfigurationError, InvalidField
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
    def run_due_jobs(self, now: datetime | None = None, *, batch: int = 100) -> JobReport:
        """One pass of every background job: timeout cancellation (querying first),
        reconciliation of pending/unknown attempts, due activations, refunds waiting for
        their outcome (queried) and outbox delivery (notifications, revocations).
        Safe in several processes at once on PostgreSQL (``FOR UPDATE SKIP LOCKED`` and
        leases); on SQLite run one."""
        moment = now or self._now()
        canceled: list[str] = []
        settled: list[str] = []
        lease = timedelta(minutes=5)
        expired = self._run(
            lambda uow, _now: uow.payments.claim_expired_orders(moment, limit=batch, lease=lease)
        )
        skipped: list[str] = []
        for number in expired:
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
        checks = self._run(
            lambda uow, _now: uow.payments.claim_checks(moment, limit=batch, lease=lease)
        )
        for out_trade_no in checks:
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
        claims = self._run(
            lambda uow, _now: uow.payments.claim_activations(
                moment, limit=batch, lease=timedelta(minutes=5)
            )
        )
        for number, attempt_no in claims:
            (activated if self._activate_one(number, attempt_no, moment) else failures).append(
                number
            )
        refunds = self._ctx.refunds.check_due(moment, batch=batch)
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
        )

    def _seal_audit(self) -> tuple[int, str | None]:
        """Link what this pass (and every writer since the last one) recorded into the audit
        chain. A chain that shows tampering is not extended: the pass reports it and goes on."""
        total = 0
        try:
            while True:
                sealed = self._run(lambda uow, _now: uow.audit.seal(limit=SEAL_BATCH))
                total += sealed
                if sealed < SEAL_BATCH:
                    return total, None
        except AuditChainError as exc:
            logger.error("%s", exc)
            return total, str(exc)

    def deliver_outbox(self, now: datetime | None = None, *, batch: int = 100) -> tuple[int, int]:
        """Deliver due outbox messages through ``ordercore_notify``: ``(delivered, failed)``."""
        moment = now or self._now()
        messages = self._run(
            lambda uow, _now: uow.payments.claim_outbox(
                moment, limit=batch, lease=timedelta(minutes=5)
            )
        )
        delivered = failed = 0
        for message in messages:
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
