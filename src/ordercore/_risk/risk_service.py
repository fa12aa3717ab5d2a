"""Risk control's use cases: the checks order creation and payment start run inside their
transaction, the record of a refusal in a transaction of its own, the lists and the decisions.

A check locks the subjects it counts (customer, ip, device, e-mail domain — only those a
configured rule counts), counts in SQL what exists before the order or attempt, evaluates
the built-in rules (:mod:`ordercore._risk.rules`) and the plugin rules
(``ordercore_risk_rules``), and either raises :class:`~ordercore.RiskBlocked` — the caller's
transaction rolls back and :meth:`RiskService.record_refusal` stores the decision alone — or
stores the context and the decision beside the order or attempt.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import evolve

from ordercore._actor import Actor
from ordercore._anomalies.domain import AnomalyKind
from ordercore._audit.chain import AuditEntry
from ordercore._context import check_limit
from ordercore._errors import InvalidField, RiskBlocked
from ordercore._money import Money
from ordercore._permissions import Permission

from .domain import (
    VELOCITY_SETTINGS,
    Decision,
    ListEntry,
    ListKind,
    RiskContext,
    RuleHit,
    Stage,
    Verdict,
    email_domain,
    normalise_value,
    strongest,
)
from .review import ReviewQueue
from .rules import BEHAVIOUR_RULE_NAMES, Facts, evaluate, subjects

if TYPE_CHECKING:
    from ordercore._orders.domain import Customer, Order
    from ordercore._payments.domain import PaymentAttempt
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = ["RiskService"]

_P = Permission
_DAY = timedelta(hours=24)


def _call_rule(rule: Any, facts: Facts, timeout: float) -> tuple[str, Any]:
    """Run one plugin rule in a thread: ``("ok", result)``, ``("error", repr)`` or
    ``("timeout", None)``. A rule that hangs is left behind (daemon thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = rule(facts)
        except BaseException as exc:  # a plugin bug: recorded, policy applies
            box["error"] = f"{type(exc).__name__}: {exc}"[:300]

    thread = threading.Thread(target=run, daemon=True, name=f"risk-rule-{_rule_name(rule)}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "timeout", None
    if "error" in box:
        return "error", box["error"]
    return "ok", box.get("result")


def _rule_name(rule: Any) -> str:
    return str(getattr(rule, "name", None) or getattr(rule, "__name__", type(rule).__name__))


class RiskService(ReviewQueue):
    """Risk checks, their decisions, the block- and allow-lists and the review queue."""

    # -- the checks -------------------------------------------------------------------------
    def check_order(
        self,
        uow: UnitOfWork,
        *,
        order: Order,
        customer: Customer,
        context: RiskContext | None,
        actor: Actor,
        now: datetime,
    ) -> Decision:
        """Judge a new order (inserted, not committed). Raises :class:`RiskBlocked` on a
        ``block``; otherwise stores its context and decision (a ``review`` holds it)."""
        settings = self._ctx.settings.risk
        assert order.id is not None
        assert customer.id is not None
        ctx = context or RiskContext()
        if ctx.email is None and customer.email:
            ctx = RiskContext(
                ip=ctx.ip,
                device_id=ctx.device_id,
                user_agent=ctx.user_agent,
                email=customer.email,
                payer_account=ctx.payer_account,
            )
        repo = uow.risk
        values = {
            "customer": str(customer.id),
            "ip": ctx.ip,
            "device": ctx.device_id,
            "email_domain": email_domain(ctx.email),
        }
        limit = settings.limit
        counted = {
            subject
            for name, subject, _ in _velocity()
            if limit(name) is not None and values[subject] is not None
        }
        if settings.amount("max_customer_daily_amount") or settings.amount(
            "max_customer_monthly_amount"
        ):
            counted.add("customer")
        if limit("max_customers_per_device") is not None and ctx.device_id:
            counted.add("device")
        if limit("max_customers_per_ip") is not None and ctx.ip:
            counted.add("ip")
        repo.lock_subjects((s, str(values[s])) for s in counted)
        counts: dict[str, int] = {}
        for subject in ("customer", "ip", "device", "email_domain"):
            value = values[subject]
            wanted = [
                (name, hours)
                for name, of, hours in _velocity()
                if of == subject and limit(name) is not None
            ]
            if value is None or not wanted:
                continue
            seen = repo.orders_since(
                subject, value, [now - timedelta(hours=hours) for _, hours in wanted]
            )
            for (name, _), n in zip(wanted, seen, strict=True):
                counts[name] = n - (1 if subject == "customer" else 0)  # not this order
        currency = order.currency.code
        payable = order.amounts.payable
        day_limit = settings.amount("max_customer_daily_amount")
        month_limit = settings.amount("max_customer_monthly_amount")
        spent_day = spent_month = None
        if day_limit or month_limit:
            day, month = repo.spent_minor(
                customer.id, currency, [now - timedelta(days=1), now - timedelta(days=30)]
            )
            # not this order
            spent_day = Money.from_minor(day, currency) - payable
            spent_month = Money.from_minor(month, currency) - payable

        window = timedelta(days=settings.limit("customers_window_days") or 30)
        paid_count, paid_total = (
            repo.paid_stats(customer.id, currency)
            if settings.unusual_amount_factor is not None
            else (0, 0)
        )
        facts = Facts(
            stage=Stage.ORDER,
            customer_id=customer.id,
            verified=customer.identity_verified,
            amount=payable,
            context=ctx,
            lists=tuple(repo.candidates(subjects(customer.id, ctx), now)),
            counts=counts,
            spent_day=spent_day if day_limit else None,
            spent_month=spent_month if month_limit else None,
            prior_orders=repo.prior_orders(customer.id, order.id)
            if settings.require_verification_first_order
            else 1,
            customers_device=repo.customers_on("device", ctx.device_id, customer.id, now - window)
            if ctx.device_id and limit("max_customers_per_device") is not None
            else 0,
            customers_ip=repo.customers_on("ip", ctx.ip, customer.id, now - window)
            if ctx.ip and limit("max_customers_per_ip") is not None
            else 0,
            paid_count=paid_count,
            average_paid=Money.from_minor(paid_total // paid_count, currency)
            if paid_count
            else None,
            order_number=order.number,
        )
        decision = self._decide(facts, actor, now, order_number=None)
        if decision.verdict is Verdict.BLOCK:
            raise RiskBlocked(decision.sentence(), decision=decision, actor=actor)
        decision = _with(decision, order_number=order.number)
        sla = settings.limit("review_sla_hours")
        review = any(h.verdict is Verdict.REVIEW for h in decision.hits)
        repo.add_order_context(
            order_id=order.id,
            customer_id=customer.id,
            context=ctx,
            verdict=decision.verdict,
            review=review,
            needs_verification=any(h.verdict is Verdict.VERIFY for h in decision.hits),
            review_due_at=now + timedelta(hours=sla) if sla and review else None,
            now=now,
        )
        self._store(uow, decision, actor, order_id=order.id)
        return decision

    def check_payment(
        self,
        uow: UnitOfWork,
        *,
        order: Order,
        attempt: PaymentAttempt,
        context: RiskContext | None,
        actor: Actor,
        now: datetime,
    ) -> Decision:
        """Judge a payment attempt (inserted, not committed). Anything but ``allow`` raises
        :class:`RiskBlocked`: a held, unverified or blocked order is not paid."""
        settings = self._ctx.settings.risk
        assert order.id is not None
        assert attempt.id is not None
        ctx = context or RiskContext()
        repo = uow.risk
        customer = uow.customers.get(order.customer_id)
        held = repo.order_context(order.id) or {}
        limit = settings.limit
        keys = []
        if limit("max_failed_payments_per_customer_per_day") or limit("review_failed_attempts"):
            keys.append(("customer", str(order.customer_id)))
        if limit("max_failed_payments_per_ip_per_day") and ctx.ip:
            keys.append(("ip", ctx.ip))
        repo.lock_subjects(keys)
        since = now - _DAY
        payer = ctx.payer_account
        facts = Facts(
            stage=Stage.PAYMENT,
            customer_id=order.customer_id,
            verified=customer.identity_verified,
            amount=attempt.amount,
            context=ctx,
            lists=tuple(repo.candidates(subjects(order.customer_id, ctx), now)),
            failed_customer=repo.attempts_since(
                since=since, statuses=("failed",), customer_id=order.customer_id
            )
            if limit("max_failed_payments_per_customer_per_day")
            else 0,
            failed_ip=repo.attempts_since(since=since, statuses=("failed",), ip=ctx.ip)
            if ctx.ip and limit("max_failed_payments_per_ip_per_day")
            else 0,
            failed_or_abandoned=repo.attempts_since(
                since=since,
                statuses=("failed", "canceled", "expired"),
                customer_id=order.customer_id,
            )
            if limit("review_failed_attempts")
            else 0,
            payers_customer=repo.payers_of(order.customer_id, payer)
            if payer and limit("max_payers_per_customer")
            else 0,
            customers_payer=repo.customers_of_payer(payer, order.customer_id)
            if payer and limit("max_customers_per_payer")
            else 0,
            review_state=held.get("review_state"),
            needs_verification=bool(held.get("needs_verification")),
            order_number=order.number,
        )
        decision = self._decide(
            facts, actor, now, order_number=order.number, customer_id=order.customer_id
        )
        if decision.verdict is not Verdict.ALLOW:
            raise RiskBlocked(decision.sentence(), decision=decision, actor=actor)
        decision = _with(decision, out_trade_no=attempt.out_trade_no)
        repo.add_attempt_context(
            attempt_id=attempt.id,
            order_id=order.id,
            customer_id=order.customer_id,
            context=ctx,
            now=now,
        )
        self._store(uow, decision, actor, order_id=order.id)
        return decision

    def _decide(
        self,
        facts: Facts,
        actor: Actor,
        now: datetime,
        *,
        order_number: str | None,
        customer_id: int | None = None,
    ) -> Decision:
        hits = evaluate(facts, self._ctx.settings.risk) + self._plugin_hits(facts)
        return Decision(
            verdict=strongest(hits),
            stage=facts.stage,
            hits=tuple(hits),
            context=facts.context,
            at=now,
            order_number=order_number,
            customer_id=customer_id if customer_id is not None else facts.customer_id,
            actor=str(actor),
        )

    def rules(self) -> builtins.list[Any]:
        """The plugin rules (``ordercore_risk_rules``), in registration order."""
        found: builtins.list[Any] = []
        for rules in self._ctx.plugins.hook.ordercore_risk_rules(settings=self._ctx.settings):
            found.extend(rules or ())
        return found

    def _plugin_hits(self, facts: Facts) -> builtins.list[RuleHit]:
        settings = self._ctx.settings.risk
        hits: builtins.list[RuleHit] = []
        for rule in self.rules():
            stages = getattr(rule, "stages", None)
            if stages is not None and facts.stage.value not in {str(s) for s in stages}:
                continue
            name = _rule_name(rule)
            status, result = _call_rule(rule, facts, settings.plugin_timeout_seconds)
            if status == "ok":
                if result is None:
                    continue
                if isinstance(result, RuleHit):
                    hits.append(result)
                    continue
                status, result = "error", f"returned {type(result).__name__}, not a RuleHit"
            closed = settings.plugin_policy == "fail_closed"
            what = "timed out" if status == "timeout" else f"failed ({result})"
            hits.append(
                RuleHit(
                    name,
                    Verdict.BLOCK if closed else Verdict.ALLOW,
                    f"plugin rule {name} {what}; {settings.plugin_policy}",
                    {
                        "error": status,
                        "detail": result,
                        "policy": settings.plugin_policy,
                        "timeout_seconds": str(settings.plugin_timeout_seconds),
                    },
                )
            )
        return hits

    # -- storing ----------------------------------------------------------------------------
    def _store(
        self, uow: UnitOfWork, decision: Decision, actor: Actor, *, order_id: int | None
    ) -> int:
        """Store a decision; audit it when a rule fired (a bare ``allow`` is kept in the
        decisions table only: the order's or the attempt's own record covers it)."""
        decision_id = uow.risk.add_decision(decision, actor)
        if decision.hits:
            self._audit(uow, decision, decision_id, actor)
        self._open_anomaly(uow, decision, decision_id, order_id)
        return decision_id

    @staticmethod
    def _audit(uow: UnitOfWork, decision: Decision, decision_id: int, actor: Actor) -> None:
        uow.record(
            AuditEntry(
                entity_kind="risk_decision",
                entity_id=str(decision_id),
                action=f"risk.{decision.stage.value}.{decision.verdict.value}",
                actor=actor,
                at=decision.at,
                after={
                    "order": decision.order_number,
                    "out_trade_no": decision.out_trade_no,
                    "customer_id": decision.customer_id,
                    "rules": [h.rule for h in decision.hits],
                },
                reason=decision.sentence(),
            )
        )

    @staticmethod
    def _open_anomaly(
        uow: UnitOfWork, decision: Decision, decision_id: int, order_id: int | None
    ) -> None:
        behaviour = [h for h in decision.hits if h.rule in BEHAVIOUR_RULE_NAMES]
        if behaviour and order_id is not None:
            evidence = {
                "decision": decision_id,
                "rules": [h.as_dict() for h in behaviour],
                "customer_id": decision.customer_id,
            }
            anomaly_id, created = uow.payments.open_anomaly(
                kind=AnomalyKind.FRAUD,
                dedupe_key=f"fraud:risk:{decision_id}",
                evidence=evidence,
                now=decision.at,
                order_id=order_id,
            )
            if created:
                uow.payments.add_outbox(
                    "anomaly.opened",
                    decision.order_number,
                    {"anomaly": anomaly_id, "kind": AnomalyKind.FRAUD.value, **evidence},
                    decision.at,
                )

    def record_refusal(self, exc: RiskBlocked, now: datetime) -> None:
        """Store a refused check's decision (and, for behaviour rules at payment, the hold
        and the fraud anomaly) in a transaction of its own."""
        decision: Decision = exc.context["decision"]
        actor: Actor = exc.context["actor"]
        with self._uow() as uow:
            order_id = None
            if decision.order_number is not None:
                order = uow.orders.get(decision.order_number)
                order_id = order.id
                behaviour = any(h.rule in BEHAVIOUR_RULE_NAMES for h in decision.hits)
                held = uow.risk.order_context(order.id or 0, lock=True)
                if behaviour and held is not None and held["review_state"] is None:
                    uow.risk.set_review_state(order.id or 0, "pending")
            self._store(uow, decision, actor, order_id=order_id)
            uow.commit()

    # -- lists ------------------------------------------------------------------------------
    def add_to_list(
        self,
        kind: ListKind | str,
        value: str,
        *,
        actor: Actor,
        reason: str = "",
        allow: bool = False,
        expires_at: datetime | None = None,
    ) -> ListEntry:
        """Put ``value`` on the block list (or the allow list), optionally until
        ``expires_at``."""
        which = _kind(kind)
        normal = normalise_value(which, value)

        def work(uow: UnitOfWork, now: datetime) -> ListEntry:
            self._check(actor, _P.RISK_LISTS, f"risk:{which.value}")
            if expires_at is not None and expires_at <= now:
                raise InvalidField("expires must be in the future", field="expires")
            entry = uow.risk.add_entry(
                ListEntry(
                    kind=which,
                    value=normal,
                    allow=allow,
                    reason=(reason or "").strip(),
                    added_by=str(actor),
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            uow.record(_list_audit(entry, "risk.list.add", actor, now))
            return entry

        return self._run(work)

    def remove_from_list(
        self, kind: ListKind | str, value: str, *, actor: Actor, reason: str | None = None
    ) -> ListEntry:
        which = _kind(kind)
        normal = normalise_value(which, value)

        def work(uow: UnitOfWork, now: datetime) -> ListEntry:
            self._check(actor, _P.RISK_LISTS, f"risk:{which.value}")
            entry = uow.risk.entry(which, normal)
            assert entry.id is not None
            uow.risk.remove_entry(entry.id)
            uow.record(_list_audit(entry, "risk.list.remove", actor, now, reason))
            return entry

        return self._run(work)

    def list_entries(
        self,
        *,
        kind: ListKind | str | None = None,
        include_expired: bool = False,
        limit: int = 100,
        actor: Actor | None = None,
    ) -> builtins.list[ListEntry]:
        which = None if kind is None else _kind(kind)

        def work(uow: UnitOfWork) -> builtins.list[ListEntry]:
            if actor is not None:
                self._check(actor, _P.RISK_LISTS, "risk:lists")
            return uow.risk.entries(
                kind=which,
                now=self._now(),
                include_expired=include_expired,
                limit=check_limit(limit),
            )

        return self._read(work)

    def decisions(
        self,
        *,
        order: str | None = None,
        verdict: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> builtins.list[Decision]:
        """Stored decisions, newest first."""
        if verdict is not None:
            verdict = Verdict(verdict).value
        return self._read(
            lambda uow: uow.risk.decisions(
                order_number=order, verdict=verdict, limit=check_limit(limit), before_id=before_id
            )
        )

    def statistics(self, since: datetime) -> dict[str, dict[str, int]]:
        """Decisions since ``since`` by stage and verdict: a refused payment counts here as
        ``payment``/``block``, never as a failed payment (no attempt was kept)."""
        return self._read(lambda uow: uow.risk.counts(since))


def _velocity() -> Sequence[tuple[str, str, int]]:
    return VELOCITY_SETTINGS


def _with(decision: Decision, **changes: Any) -> Decision:
    return evolve(decision, **changes)


def _kind(kind: ListKind | str) -> ListKind:
    try:
        return ListKind(kind)
    except ValueError:
        kinds = ", ".join(k.value for k in ListKind)
        raise InvalidField(
            f"list type must be one of {kinds}, not {kind!r}", field="type"
        ) from None


def _list_audit(
    entry: ListEntry, action: str, actor: Actor, now: datetime, reason: str | None = None
) -> AuditEntry:
    return AuditEntry(
        entity_kind="risk_list",
        entity_id=f"{entry.kind.value}:{entry.value}"[:64],
        action=action,
        actor=actor,
        at=now,
        after=entry.as_dict(),
        reason=reason or entry.reason or None,
    )
